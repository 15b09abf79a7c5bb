"""A small Server-Sent Events client on raw asyncio streams, for the event-stream tests.

Raw sockets rather than httpx so a test can open a thousand streams cheaply, and can also
stop reading altogether (a slow consumer) with a tiny receive buffer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class SSEClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""  # an error answer's body
        self._buf = b""
        self._done = False
        # The stream's `caught_up` message (api/events/sse.py) is not returned by next():
        # it sets `caught_up_after` to the last id that came before it (the first
        # message's included).
        self.caught_up_after: str | None = None
        self.caught_up = False
        self._last_id: str | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        path: str,
        token: str | None,
        last_event_id: str | None = None,
        rcvbuf: int | None = None,
    ) -> SSEClient:
        u = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (u.hostname, u.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        lines = [f"GET {path} HTTP/1.1", f"Host: {u.netloc}", "Accept: text/event-stream"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        c = cls(reader, writer)
        status = await reader.readline()
        c.status = int(status.split()[1])
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            c.headers[k.strip().lower()] = v.strip()
        if c.status != 200:
            c.body = await c._read_all()
        return c

    async def _chunk(self) -> bytes:
        """The next piece of the chunked body (b"" at its end)."""
        size_line = await self.reader.readline()
        if not size_line:
            return b""
        size = int(size_line.strip() or b"0", 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def _read_all(self) -> bytes:
        if "content-length" in self.headers:
            return await self.reader.readexactly(int(self.headers["content-length"]))
        out = b""
        while chunk := await self._chunk():
            out += chunk
        return out

    async def next(self) -> Message | None:
        """The next message (comments-only messages included, `caught_up` set aside);
        None at the stream's end."""
        while (msg := await self._read()) is not None and msg.event == "caught_up":
            pass
        return msg

    async def until_caught_up(self) -> list[Message]:
        """The messages before the stream's `caught_up` (read, not returned)."""
        out = []
        while (msg := await self._read()) is not None:
            if msg.event == "caught_up":
                return out
            out.append(msg)
        raise AssertionError(f"the stream ended before caught_up, after {out}")

    async def _read(self) -> Message | None:
        msg = await self._next()
        if msg is not None and msg.event == "caught_up":
            assert not self.caught_up, "caught_up came twice"
            assert msg.id is None and msg.data is None, msg
            self.caught_up, self.caught_up_after = True, self._last_id
        elif msg is not None and msg.id is not None:
            self._last_id = msg.id
        return msg

    async def _next(self) -> Message | None:
        while True:
            if b"\n\n" in self._buf:
                raw, _, self._buf = self._buf.partition(b"\n\n")
                msg = Message()
                for line in raw.decode().split("\n"):
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "":
                        msg.comments.append(value)
                    elif name == "id":
                        msg.id = value
                    elif name == "event":
                        msg.event = value
                    elif name == "data":
                        msg.data = value if msg.data is None else msg.data + "\n" + value
                    elif name == "retry":
                        msg.retry = int(value)
                return msg
            if self._done:
                return None
            chunk = await self._chunk()
            if not chunk:
                self._done = True
            self._buf += chunk

    async def next_event(self) -> Message | None:
        """The next message that is not only comments (an event, or `end`)."""
        while (msg := await self.next()) is not None:
            if msg.event is not None:
                return msg
        return None

    async def events(self, n: int) -> list[Message]:
        out = []
        while len(out) < n:
            msg = await self.next_event()
            assert msg is not None, f"stream ended after {len(out)} of {n} events"
            out.append(msg)
        return out

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
