"""uvicorn's httptools protocol, handing the body to the application in big messages.

Two costs of uvicorn's own body path, both paid per byte or per socket read of every
request body, on the event loop (issue 13):

- Copies. uvicorn gathers the body bytes the parser reports into a `bytearray`
  (`cycle.body += body`) and hands the application `bytes(cycle.body)`: two copies of every
  byte, on top of the two that the socket read and the parser make. Here a message's body
  is the parser's own `bytes` when one read makes it, and one join when several do.
- Messages. uvicorn wakes the application after every socket read, and a socket read of a
  fast upload is as small as what arrived since the last one: about 70 KiB on loopback, so
  some 15,000 `http.request` messages per GiB. Each costs a task switch, a pause and a
  resume of the transport (two `epoll_ctl` calls), and a pass through every middleware's
  `receive` wrapper, the framework's body stream and the handler. A minimal tus server
  under plain uvicorn that hashed each body twice took 2.6 s per GiB from tus-js-client;
  with the reads gathered into 1 MiB messages, 1.9 s, as fast as the same server written
  straight on the transport. Cairn's tus upload of 1 GiB: 3.1 s from 3.4 s (three
  alternating runs each, tests/bench/JOURNAL.md).

So body reads are gathered (`_parts`) and handed over once they reach `coalesce_bytes`,
when the body ends, or `coalesce_seconds` after the first socket read that left some
waiting, whichever comes first: a body that trickles in reaches the application within a
few milliseconds, and a small body (one read, then its end) at once, with no timer.
Reading goes on while reads gather; once a handed-over message waits for the application
with more than uvicorn's `HIGH_WATER_LIMIT` in it, reading pauses as in uvicorn, so a
connection holds at most about two messages (2 MiB) of body in memory besides the
kernel's socket buffer.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

COALESCE_BYTES = 1 << 20
# At 500 MB/s (a fast loopback upload) 2 ms bring 1 MB: the byte bound is what a fast body
# meets, the time bound only a slow one.
COALESCE_SECONDS = 0.002


class _DrainingCycle(RequestResponseCycle):
    """uvicorn's request cycle, except that body bytes the client sent before it went
    reach the application before the disconnect. uvicorn answers every `receive` after a
    disconnect with `http.disconnect` at once, dropping what it still held for the
    application: up to two handed-over messages (2 MiB here) when the application was busy
    elsewhere (a tus body hashing and storing its last piece under load) as the client went.
    A tus PATCH cut off keeps every byte the server got; those were lost.

    Checked again after uvicorn's wait too: one loop step can read the socket's end (the
    transport schedules its loss), then hand gathered reads over on the timer (waking the
    application), then run the loss before the application wakes; uvicorn's receive, woken,
    sees the disconnect first and would drop the message."""

    async def receive(self) -> Any:
        if not self._holds_body_past_disconnect():
            message = await super().receive()
            if message["type"] != "http.disconnect" or not self._holds_body_past_disconnect():
                return message
        body, self.body = bytes(self.body), bytearray()
        return {"type": "http.request", "body": body, "more_body": True}

    def _holds_body_past_disconnect(self) -> bool:
        return bool(self.disconnected and self.body and not self.response_complete)


class BodyHandoffHttpToolsProtocol(HttpToolsProtocol):
    coalesce_bytes: ClassVar[int] = COALESCE_BYTES
    coalesce_seconds: ClassVar[float] = COALESCE_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parts: list[bytes] = []  # body reads not yet handed over, in order
        self._parted = 0
        self._handover_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # The parser has seen this whole read: reads still gathered wait for more, but
        # not for long. (A small body, whose end came in the same read, set no timer.)
        if self._parts and self._handover_timer is None:
            self._handover_timer = self.loop.call_later(self.coalesce_seconds, self._hand_over)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The request's application task, created just now, has not run yet: it reads
        # `receive` off the cycle when it starts, so this class's is the one it gets.
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = _DrainingCycle

    def on_body(self, body: bytes) -> None:
        # uvicorn's own guard: an upgrade's bytes, or a body past the response, go nowhere.
        if (
            self.parser.should_upgrade() and self._should_upgrade()
        ) or self.cycle.response_complete:
            return
        self._parts.append(body)
        self._parted += len(body)
        if self._parted >= self.coalesce_bytes:
            self._hand_over()

    def on_message_complete(self) -> None:
        # The body's last reads go first, so the application sees every byte before
        # `more_body` turns False.
        self._hand_over()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._parts:
            super().connection_lost(exc)
            return
        # Reads still gathered when the client went: hand them over, and let uvicorn mark
        # the request disconnected one loop step later. An application waiting in
        # `receive` was woken first (callbacks run in order), so it takes those bytes
        # before it learns the client is gone, as it did with uvicorn's read-by-read
        # handover: a tus body cut off keeps what arrived.
        self._hand_over()
        self.loop.call_soon(super().connection_lost, exc)

    def _hand_over(self) -> None:
        """Make the gathered reads the application's next message (after whatever of the
        body it has not taken yet), and wake it."""
        if self._handover_timer is not None:
            self._handover_timer.cancel()
            self._handover_timer = None
        parts, self._parts, self._parted = self._parts, [], 0
        cycle = self.cycle
        if not parts or cycle is None or cycle.response_complete:
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        held: bytes | bytearray = cycle.body
        # uvicorn's receive() hands over `bytes(cycle.body)`: of a `bytes`, no copy.
        cycle.body = data if not held else bytes(held) + data  # type: ignore[assignment]
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()
