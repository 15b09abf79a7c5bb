"""Bounds on the request head: line length, header count and size, and time to send it.

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
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from api.http.rawerror import error_response_bytes
from api.http.trailers import TrailerAwareHttpToolsProtocol


@dataclass(frozen=True)
class HeadLimits:
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0


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

    # -------------------------------------------------------------- connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that opens and sends nothing is a slow head too.
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

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

    def _max_head(self) -> int:
        # Line + headers + their CRLFs: a head within both limits never exceeds this.
        return self.limits.max_request_line + self.limits.max_header_bytes + 4 * 1024

    # -------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        self._header_bytes = 0

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
