"""Bounds on the request head (line length, header count and size, time to send it) and on
a request body's silences.

uvicorn's httptools protocol accepts a request head of any size and waits for it forever:
one 128 MiB header made the API process grow by 500 MiB and stalled everybody else's
requests for seconds (httptools assembles a header value by repeated concatenation before
the protocol sees any of it), and a client dribbling header bytes holds its connection
indefinitely. This protocol subclass refuses such heads before any work is done, with the
one error shape, and closes the connection, the way nginx does with its
`large_client_header_buffers` and `client_header_timeout`:

- request line longer than `max_request_line` bytes: 414;
- more than `max_headers` header fields, or more than `max_header_bytes` of them: 431;
- a head not complete `header_timeout` seconds after its first byte (or after the
  connection opened): 408 (a connection that never sent anything is just closed);
- a malformed head: 400 in the one error shape (uvicorn would answer text/plain).

Raw bytes are counted as they arrive, before httptools buffers them, so the memory one
oversized head can take is bounded by one socket read plus the limits. Idle keep-alive
connections are closed by uvicorn's own `timeout_keep_alive` (set from the settings).

A body is bounded in time the way nginx's `client_body_timeout` and tusd's network timeout
bound it: a request whose body stays silent for `body_timeout` seconds (nothing arrives
although the server is reading) has its connection closed. The handler sees a client gone
mid-body: a tus PATCH keeps what arrived (its offset moves), a chunk PUT keeps nothing.
Before, a body that stopped arriving held its connection, and its upload slot
(api/limits.py), for as long as the client kept the socket open. Time the server itself
is not reading (flow control paused reading while the handler catches up, or a client
waiting for its `100 Continue`) never counts as silence.

The other direction, for live event streams only: a response that asks (the scope
extension `cairn.send_timeout`) has its connection cut once its writes have waited that long
for a client that takes nothing (api/http/sendwatch.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from api.http.rawerror import error_response_bytes
from api.http.sendwatch import SEND_TIMEOUT_EXTENSION, SendWatch
from api.http.trailers import TrailerAwareHttpToolsProtocol
from bus.config.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class HeadLimits:
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 60.0  # 0: none


# After a refusal the client may still be sending the rest of its head (or a body). Closing
# at once would make the kernel answer those bytes with a reset, and the client could lose
# our answer with it; so, like nginx's lingering close, we stop writing, read and discard
# for a moment, then close.
LINGER_SECONDS = 2.0


class _Refused(Exception):
    """Raised inside a parser callback to stop httptools; the answer is already chosen."""


class LimitedHttpToolsProtocol(TrailerAwareHttpToolsProtocol):
    """Cairn's HTTP protocol: request trailers (the base class) plus bounded request heads."""

    limits: ClassVar[HeadLimits] = HeadLimits()

    @classmethod
    def with_limits(cls, limits: HeadLimits) -> type[LimitedHttpToolsProtocol]:
        """A subclass bound to `limits` (uvicorn instantiates the protocol class itself)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal: tuple[int, str, str, dict[str, Any]] | None = None
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        # A body being read: when its last bytes came, and the timer that looks at that.
        self._body_heard = 0.0
        self._body_timer: asyncio.TimerHandle | None = None
        # Writes stalled by a client that takes nothing, for the live streams that ask
        # (api/http/sendwatch.py).
        self._send_watch = SendWatch(self.loop, "sse")

    # -------------------------------------------------------------- connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that opens and sends nothing is a slow head too.
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_body_timer()
        self._send_watch.disarm()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._send_watch.pause_writing()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._send_watch.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self.transport.is_closing():
            return  # refused: whatever else arrives is discarded unparsed
        if self._in_head:
            self._arm_head_timer()
            self._head_bytes += len(data)
        super().data_received(data)
        # A head still incomplete after this read may be one huge header that httptools is
        # buffering without calling us back: judge it by the raw bytes.
        if self._refusal is None and self._in_head and self._head_bytes > self._max_head():
            self._refuse(431, "headers_too_large", "the request headers are too large")
        elif not self._in_head and self.limits.body_timeout > 0:
            # Mid-body (the head is in, the message is not complete): heard from now.
            self._body_heard = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_silent)

    def _max_head(self) -> int:
        # Line + headers + their CRLFs: a head within both limits never exceeds this.
        return self.limits.max_request_line + self.limits.max_header_bytes + 4 * 1024

    # -------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        self._header_bytes = 0
        scope: Any = self.scope

        def bound_sends(seconds: float) -> None:
            self._send_watch.arm(seconds, lambda: self._abort_stream(scope))

        extensions: Any = scope["extensions"]  # a dict of our own (api/http/trailers.py)
        extensions[SEND_TIMEOUT_EXTENSION] = bound_sends

    def _abort_stream(self, scope: Any) -> bool:
        """Cut the connection if the response that asked for the send watch is still the
        one being written (not one later on the same connection)."""
        cycle = self.cycle
        if cycle is None or cycle.scope is not scope or cycle.response_complete:
            return False
        self.transport.abort()
        return True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_request_line:
            self._stop(
                414,
                "request_line_too_long",
                "the request line is too long",
                {"limit_bytes": self.limits.max_request_line},
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._header_count > self.limits.max_headers:
            self._stop(
                431,
                "too_many_headers",
                "the request has too many header fields",
                {"limit": self.limits.max_headers},
            )
        if self._header_bytes > self.limits.max_header_bytes:
            self._stop(
                431,
                "headers_too_large",
                "the request headers are too large",
                {"limit_bytes": self.limits.max_header_bytes},
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm_body_timer()
        super().on_message_complete()
        # The next bytes on this connection start a new head (pipelined or keep-alive).
        self._in_head = True
        self._head_bytes = 0

    # -------------------------------------------------------------- refusals

    def _stop(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        """Refuse from inside a parser callback: raising stops httptools, and uvicorn then
        calls send_400_response, which answers with this refusal instead."""
        self._refusal = (status, code, message, details)
        raise _Refused(code)

    def send_400_response(self, msg: str) -> None:
        status, code, message, details = self._refusal or (
            400,
            "bad_request",
            "invalid HTTP request",
            {},
        )
        self._refusal = None
        self._refuse(status, code, message, details)

    def _refuse(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        self._refusal = (status, code, message, details or {})
        self._disarm_head_timer()
        if self.transport.is_closing():
            return
        self.transport.write(error_response_bytes(status, code, message, details))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    # -------------------------------------------------------------- head timeout

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout, self._head_timed_out
            )

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # opened and never used: nothing to answer
            return
        self._refuse(
            408,
            "request_timeout",
            "the request head was not received in time",
            {"timeout_seconds": self.limits.header_timeout},
        )

    # -------------------------------------------------------------- body timeout

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_silent(self) -> None:
        """`body_timeout` after a body's first bytes: closes the connection if nothing more
        came for that long while the server was reading; else looks again later. One timer
        per silence, not one per socket read."""
        self._body_timer = None
        if self._in_head or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._body_heard = now  # the server is not reading: not the client's silence
        quiet = now - self._body_heard
        if quiet < self.limits.body_timeout:
            self._body_timer = self.loop.call_later(
                self.limits.body_timeout - quiet, self._body_silent
            )
            return
        log.info("request body silent: connection closed", seconds=round(quiet, 1))
        self.transport.close()
