"""Request bodies through the body-handoff protocol, on a real uvicorn server on loopback.

The application gets every byte, in order, as `bytes`, whether it takes each read at once
(then it gets the very object the parser made: no copy) or lags behind (then reads are
gathered, as uvicorn does); chunked bodies and pipelined requests too.
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

from api.http.bodyhandoff import BodyHandoffHttpToolsProtocol

pytestmark = pytest.mark.timeout(60)


class _Recording(BodyHandoffHttpToolsProtocol):
    pieces: list[bytes] = []  # what the parser reported, every request

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        super().on_body(body)


class _App:
    def __init__(self) -> None:
        self.bodies: list[list[Any]] = []  # per request: the body of each message
        self.lag = 0.0  # seconds to wait before each receive

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        parts: list[Any] = []
        self.bodies.append(parts)
        while True:
            if self.lag:
                await asyncio.sleep(self.lag)
            message = await receive()
            parts.append(message.get("body", b""))
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
async def served() -> AsyncIterator[tuple[_App, int]]:
    app = _App()
    _Recording.pieces = []
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


async def test_a_body_taken_as_it_comes_is_handed_over_without_a_copy(
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
