"""A bound on how long a live event stream's writes may wait for a client that takes nothing.

A live stream (an SSE response, an events WebSocket) writes whenever an event comes. A
client that stops reading fills its TCP receive window, then the server's kernel buffer,
then the transport's own buffer up to its high-water mark, where uvicorn pauses the app's
sends: the stream's task waits in `send` and its bounded queue (api/events/fanout.py) fills
until the fan-out drops it as `slow_consumer`. Nothing else bounded the wait. The stream
could not end (its last message is a write too), so it held its stream slot
(api/events/stream_slots.py), its socket and its task for as long as the TCP connection
lived: a peer whose kernel answers zero-window probes but whose application never reads
keeps it forever, and uvicorn's WebSocket ping timeout closed the transport only after 40 s.

So the protocol watches its writes for the app: a stream that asks (the scope extension
`cairn.send_timeout`, called with the seconds) has its connection aborted once its writes
have been paused, the client taking nothing, for that long (CAIRN_EVENTS_SEND_TIMEOUT).
Abort, not close: a close waits for the buffer to drain, which this client never lets
happen. The app then sees the client gone (its send returns, its receive gets the
disconnect), ends the stream and gives its slot back; the client, if it ever reads again,
finds the connection cut and resumes from its last position like after any cut. Only
time spent paused counts: a client that reads slowly but steadily resumes the writes.
Other responses (downloads) are not watched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from bus.config import metrics
from bus.config.logs import get_logger

log = get_logger(__name__)

SEND_TIMEOUT_EXTENSION = "cairn.send_timeout"
SEND_TIMEOUTS = metrics.EVENT_STREAM_SEND_TIMEOUTS


def bound_sends(scope: Any, seconds: float) -> None:
    """Ask the server to cut this connection once its writes have waited `seconds` for the
    client (a no-op under a server without the extension, such as a test client)."""
    extensions = scope.get("extensions") or {}
    bound: Callable[[float], None] | None = extensions.get(SEND_TIMEOUT_EXTENSION)
    if bound is not None:
        bound(seconds)


class SendWatch:
    """One connection's watch: told when its transport pauses and resumes writing, aborts
    it after `seconds` paused once `arm`ed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: str) -> None:
        self.loop = loop
        self.transport_kind = transport  # the metric's label: sse or ws
        self.seconds: float | None = None
        self.paused = False
        # Cuts the connection; False if the stream that asked is no longer there.
        self._abort: Callable[[], bool] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, seconds: float, abort: Callable[[], bool]) -> None:
        self.seconds = seconds
        self._abort = abort
        if self.paused:
            self._start()

    def disarm(self) -> None:
        self.seconds = None
        self._abort = None
        self._stop()

    def pause_writing(self) -> None:
        self.paused = True
        self._start()

    def resume_writing(self) -> None:
        self.paused = False
        self._stop()

    def _start(self) -> None:
        if self.seconds is not None and self._timer is None:
            self._timer = self.loop.call_later(self.seconds, self._expired)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        abort = self._abort
        seconds = self.seconds
        self.disarm()
        if not self.paused or abort is None or not abort():
            return
        log.info(
            "live stream: the client took nothing for the send timeout; connection cut",
            transport=self.transport_kind,
            seconds=seconds,
        )
        SEND_TIMEOUTS.labels(self.transport_kind).inc()


class WatchedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (the one it picks itself), plus the send watch: the
    events WebSocket asks for it once accepted (api/events/websocket.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.send_watch = SendWatch(self.loop, "ws")

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:  # None: the handshake was refused
            scope["extensions"][SEND_TIMEOUT_EXTENSION] = self._bound_sends

    def _bound_sends(self, seconds: float) -> None:
        self.send_watch.arm(seconds, self._abort)

    def _abort(self) -> bool:
        self.transport.abort()
        return True

    def pause_writing(self) -> None:
        super().pause_writing()
        self.send_watch.pause_writing()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.send_watch.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.send_watch.disarm()
        super().connection_lost(exc)
