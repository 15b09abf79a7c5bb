"""Request bodies through the body-handoff protocol, on a real uvicorn server on loopback.

The application gets every byte, in order, as `bytes`: a fast body in messages of at least
`coalesce_bytes`, a body that trickles in within `coalesce_seconds` of each read, a read
that makes a message alone as the very object the parser made (no copy); chunked bodies,
pipelined requests and a client gone mid-body too.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import uvicorn

from api.http.bodyhandoff import COALESCE_BYTES, COALESCE_SECONDS, BodyHandoffHttpToolsProtocol

pytestmark = pytest.mark.timeout(60)


class _Recording(BodyHandoffHttpToolsProtocol):
    pieces: list[bytes] = []  # what the parser reported, every request
    latest: _Recording | None = None  # the connection whose parser reported last
    parsed = asyncio.Event()  # set once the parser reported body bytes

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        _Recording.latest = self
        self.parsed.set()
        super().on_body(body)


class _App:
    def __init__(self) -> None:
        self.bodies: list[list[Any]] = []  # per request: the body of each message
        self.lag = 0.0  # seconds to wait before each receive
        self.got_some = asyncio.Event()  # set once a request's first body bytes came
        self.disconnected = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        parts: list[Any] = []
        self.bodies.append(parts)
        while True:
            if self.lag:
                await asyncio.sleep(self.lag)
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected.set()
                return
            parts.append(message.get("body", b""))
            if message.get("body"):
                self.got_some.set()
            if not message.get("more_body"):
                break
        size = str(sum(len(p) for p in parts)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(size)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": size})


@pytest_asyncio.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[_App, int]]:
    """A server; `@pytest.mark.coalesce(bytes, seconds)` sets the protocol's bounds."""
    marker = request.node.get_closest_marker("coalesce")
    _Recording.coalesce_bytes, _Recording.coalesce_seconds = (
        marker.args if marker else (COALESCE_BYTES, COALESCE_SECONDS)
    )
    app = _App()
    _Recording.pieces = []
    _Recording.parsed = asyncio.Event()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http=_Recording, lifespan="off", log_level="error", loop="none", access_log=False
    )
    config.load()
    server = uvicorn.Server(config)
    # The steps of uvicorn's serve(), without its main loop: started when startup returns.
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    try:
        yield app, sock.getsockname()[1]
    finally:
        await server.shutdown(sockets=[sock])


async def _exchange(
    port: int, writes: list[bytes], answers: int, pause: float = 0.0
) -> list[bytes]:
    """Send `writes` one after another (each drained, `pause` seconds apart), then read
    `answers` responses; the body of each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for w in writes:
            writer.write(w)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        out = []
        for _ in range(answers):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            out.append(await reader.readexactly(length))
        return out
    finally:
        writer.close()


def _put(body_size: int) -> bytes:
    return f"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: {body_size}\r\n\r\n".encode()


# Reads are handed over one by one: each message is the very object the parser made.
@pytest.mark.coalesce(1, 10.0)
async def test_a_read_that_makes_a_message_alone_is_handed_over_without_a_copy(
    served: tuple[_App, int],
) -> None:
    app, port = served
    body = os.urandom(4 * 1024 * 1024)
    writes = [_put(len(body))] + [body[i : i + 65536] for i in range(0, len(body), 65536)]
    assert await _exchange(port, writes, 1) == [str(len(body)).encode()]
    (parts,) = app.bodies
    assert b"".join(parts) == body
    assert all(type(p) is bytes for p in parts)
    # Most reads reach the application as the very objects the parser made (with plain
    # uvicorn none does: each is copied into a bytearray and out again).
    handed = [p for p in parts if p and any(p is q for q in _Recording.pieces)]
    assert len(handed) >= len([p for p in parts if p]) // 2


# No time bound to speak of: only the size bound and the body's end hand reads over.
@pytest.mark.coalesce(256 * 1024, 30.0)
async def test_a_fast_body_comes_in_messages_of_at_least_the_bound(
    served: tuple[_App, int],
) -> None:
    app, port = served
    body = os.urandom(4 * 1024 * 1024 + 1000)
    writes = [_put(len(body))] + [body[i : i + 65536] for i in range(0, len(body), 65536)]
    assert await _exchange(port, writes, 1) == [str(len(body)).encode()]
    (parts,) = app.bodies
    assert b"".join(parts) == body
    assert all(type(p) is bytes for p in parts)
    full = [p for p in parts if p]
    assert all(len(p) >= 256 * 1024 for p in full[:-1])
    assert len(full) <= len(body) // (256 * 1024) + 1
    assert len(full) < len(_Recording.pieces)  # reads were joined


async def test_a_trickling_body_reaches_the_application_before_it_ends(
    served: tuple[_App, int],
) -> None:
    app, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_put(2000) + b"x" * 1000)
        await writer.drain()
        # 1000 bytes are far below the size bound: only the time bound hands them over.
        await asyncio.wait_for(app.got_some.wait(), 10)
        got = b"".join(app.bodies[0])
        assert got and got == b"x" * len(got)  # the first bytes, before the rest was sent
        writer.write(b"y" * 1000)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(4) == b"2000"
    finally:
        writer.close()
    assert b"".join(app.bodies[0]) == b"x" * 1000 + b"y" * 1000


async def _cut_off(app: _App, port: int, sent: bytes) -> None:
    """A PUT announcing 10 MB that sends `sent` and goes; until the app sees it go."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_put(10_000_000) + sent)
    await writer.drain()
    writer.close()
    await asyncio.wait_for(app.disconnected.wait(), 10)


@pytest.mark.coalesce(1 << 20, 30.0)
async def test_a_client_gone_mid_body_leaves_what_arrived_then_a_disconnect(
    served: tuple[_App, int],
) -> None:
    app, port = served
    sent = os.urandom(300_000)  # gathered, below both bounds: only the loss hands it over
    await _cut_off(app, port, sent)
    assert b"".join(app.bodies[0]) == sent
    # The server goes on.
    body = os.urandom(5000)
    assert await _exchange(port, [_put(len(body)) + body], 1) == [b"5000"]
    assert app.bodies[-1] == [body]


@pytest.mark.coalesce(1, 10.0)
async def test_a_client_gone_while_the_application_is_busy_leaves_what_arrived(
    served: tuple[_App, int],
) -> None:
    # The application is not waiting in receive() when the client goes (busy storing
    # what came before): uvicorn's cycle answered its next receive with the disconnect and
    # dropped the bytes it held, which a tus PATCH cut off under load lost.
    app, port = served
    app.lag = 0.3
    sent = os.urandom(50_000)  # one handed-over message, below HIGH_WATER_LIMIT
    await _cut_off(app, port, sent)
    assert b"".join(app.bodies[0]) == sent


@pytest.mark.coalesce(1 << 20, 30.0)
async def test_bytes_handed_over_as_the_client_goes_reach_a_waiting_application(
    served: tuple[_App, int],
) -> None:
    # The order one loop step can bring: the socket's end is read (the transport schedules
    # its loss), then the timer hands the gathered reads over and wakes the application,
    # then the loss runs before the application does. Woken, uvicorn's receive() saw the
    # disconnect and dropped the message: a tus PATCH cut off under load lost its last
    # reads. Here the hand-over and the loss run back to back, in that order.
    app, port = served
    sent = os.urandom(200_000)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_put(10_000_000) + sent)
        await writer.drain()
        await asyncio.wait_for(_Recording.parsed.wait(), 10)
        while sum(map(len, _Recording.pieces)) < len(sent):  # the rest of the reads
            _Recording.parsed.clear()
            await asyncio.wait_for(_Recording.parsed.wait(), 10)
        connection = _Recording.latest
        assert connection is not None and not app.bodies[0]  # the application waits
        connection._hand_over()
        uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.connection_lost(connection, None)
        await asyncio.wait_for(app.disconnected.wait(), 10)
    finally:
        writer.close()
    assert b"".join(app.bodies[0]) == sent


async def test_reads_gather_while_the_application_lags(served: tuple[_App, int]) -> None:
    app, port = served
    app.lag = 0.03
    body = os.urandom(64 * 1024)
    # Small writes a little apart, so that several arrive before each receive.
    writes = [_put(len(body))] + [body[i : i + 2048] for i in range(0, len(body), 2048)]
    assert await _exchange(port, writes, 1, pause=0.003) == [str(len(body)).encode()]
    (parts,) = app.bodies
    assert b"".join(parts) == body
    assert all(type(p) is bytes for p in parts)
    assert len([p for p in parts if p]) < len(_Recording.pieces)  # some were gathered


async def test_chunked_and_pipelined_requests_keep_their_bytes(served: tuple[_App, int]) -> None:
    app, port = served
    a, b, c = os.urandom(70_000), os.urandom(300), os.urandom(200_000)
    chunked = (
        b"PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(a):x}\r\n".encode()
        + a
        + b"\r\n"
        + f"{len(b):x}\r\n".encode()
        + b
        + b"\r\n0\r\n\r\n"
    )
    # Both requests in one write: the second's head follows the first's body.
    pipelined = chunked + _put(len(c)) + c
    got = await _exchange(
        port, [pipelined[i : i + 50_000] for i in range(0, len(pipelined), 50_000)], 2
    )
    assert got == [str(len(a) + len(b)).encode(), str(len(c)).encode()]
    assert [b"".join(parts) for parts in app.bodies] == [a + b, c]
    assert all(type(p) is bytes for parts in app.bodies for p in parts)
