"""Live event streams whose client stops reading: the server's writes stall once the kernel
buffers are full, and within CAIRN_EVENTS_SEND_TIMEOUT of that the connection is cut and
its stream slot given back, for SSE and WebSocket alike. Before, an SSE client held its
slot (and its socket) for as long as the TCP connection lived (a peer that answers the
kernel's zero-window probes but never reads: forever), and a WebSocket until uvicorn's
ping timeout, 40 s, which no setting changed.

Real sockets with a tiny receive buffer, a whole running system, events appended to the
store until the server gives up; every wait polls its condition with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.eventstore import PostgresEventStore
from domain.events import EventMeta, NewEvent
from tests.api.answers import user
from tests.api.sse import Message, SSEClient
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEND_TIMEOUT = 1.0
# To fill a few MB of kernel buffers (about 2 s here) and time out; well under the 40 s
# after which uvicorn's WebSocket ping timeout cut a silent WebSocket before.
DEADLINE = 30.0
PAD = 32 * 1024  # characters of padding per event appended


async def append(s: System, owner: str, n: int) -> list[int]:
    """Append n events straight to the store (as an actor would), each padded with random
    text: the WebSocket compresses its messages, and a repeated character would shrink to
    nothing, filling no buffer."""
    store = PostgresEventStore(s.pool)
    stream = f"upload-{uuid.uuid4()}"
    events = [
        NewEvent("UploadChunkStored", {"index": i, "pad": secrets.token_urlsafe(PAD * 3 // 4)})
        for i in range(n)
    ]
    recorded = await store.append(
        stream, 0, events, EventMeta(occurred_at=datetime.now(UTC), owner=owner)
    )
    return [e.position for e in recorded]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stall_system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    """One live stream per user, a 1 s send timeout, and no relay (events go straight to
    the store; streams read the store)."""
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        events_max_streams_per_user=1,
        events_send_timeout=SEND_TIMEOUT,
    ) as s:
        await s.stop("relay")
        yield s


async def send_timeouts(s: System, transport: str) -> float:
    """The API's count of live streams cut for a stalled write (from /metrics)."""
    async with s.client(None) as c:
        text = (await c.get("/metrics")).text
    prefix = f'cairn_event_stream_send_timeouts_total{{transport="{transport}"}}'
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


async def read_to_the_end(c: SSEClient) -> list[Message]:
    """Everything the server still gets to the client, up to the connection's end (a cut
    stream ends mid-body: no chunked terminator, maybe half a chunk)."""
    got: list[Message] = []
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ValueError):
        while (msg := await c.next()) is not None:
            got.append(msg)
    return got


async def test_an_sse_client_that_stops_reading_is_cut_and_its_slot_given_back(
    stall_system: System,
) -> None:
    s, me = stall_system, user()
    before = await send_timeouts(s, "sse")
    slow = await SSEClient.open(s.url, "/v1/events", s.token(me), rcvbuf=4096)
    assert slow.status == 200
    appended: list[int] = []

    async def admitted() -> SSEClient | None:
        """A second stream of the same user, once the slow one's slot is free; until then
        more events for the slow one (which takes none of them)."""
        c = await SSEClient.open(s.url, "/v1/events", s.token(me))
        if c.status == 200:
            return c
        assert c.status == 429, c.body  # the slow stream still holds the user's one slot
        await c.close()
        appended.extend(await append(s, me, 10))
        return None

    assert await admitted() is None
    again = await wait_until(admitted, timeout=DEADLINE, interval=0.1)
    try:
        assert await send_timeouts(s, "sse") == before + 1
        # The slow client's connection is over: reading now gets what was already on its
        # way (a prefix of the events, in order) and then the end, not a hang.
        got = await asyncio.wait_for(read_to_the_end(slow), 30)
        ids = [int(m.id) for m in got if m.id is not None and m.event is not None]
        assert ids == appended[: len(ids)] and len(ids) < len(appended)
        # The new stream is a working one.
        await append(s, me, 1)
        (msg,) = await again.events(1)
        assert msg.event == "UploadChunkStored"
    finally:
        await slow.close()
        await again.close()


def ws_url(s: System) -> str:
    return s.url.replace("http://", "ws://") + "/v1/events/ws"


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def test_a_websocket_client_that_stops_reading_is_cut_and_its_slot_given_back(
    stall_system: System,
) -> None:
    s, me = stall_system, user()
    protocols: Any = ["cairn.events.v1", f"bearer.{s.token(me)}"]
    before = await send_timeouts(s, "ws")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (s.settings.host, s.settings.port))
    # max_queue=1: the client library stops reading its socket as soon as one message
    # waits unread; no pings of its own, so only the server can end the connection.
    slow = await connect(
        ws_url(s), sock=sock, subprotocols=protocols, max_queue=1, ping_interval=None
    )
    assert (await recv(slow))["type"] == "authenticated"
    await slow.send(json.dumps({"type": "subscribe", "id": "all"}))
    assert (await recv(slow))["type"] == "subscribed"
    assert (await recv(slow))["type"] == "caught_up"  # no `from`: at once
    appended: list[int] = []

    async def admitted() -> ClientConnection | None:
        ws = await connect(ws_url(s), subprotocols=protocols, ping_interval=None)
        try:
            if (await recv(ws))["type"] == "authenticated":
                return ws
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4429, closed
        await ws.close()
        appended.extend(await append(s, me, 10))
        return None

    assert await admitted() is None
    again = await wait_until(admitted, timeout=DEADLINE, interval=0.1)
    try:
        assert await send_timeouts(s, "ws") == before + 1
        # The slow client's connection is over: it reads what was on its way, then the
        # connection ends (cut: no close frame could get past the data it never read).
        got: list[int] = []

        async def to_the_end() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    got.append((await recv(slow))["event"]["position"])

        await asyncio.wait_for(to_the_end(), 30)
        assert got == appended[: len(got)] and len(got) < len(appended)
        await again.send(json.dumps({"type": "subscribe", "id": "new"}))
        assert (await recv(again))["type"] == "subscribed"
        assert (await recv(again))["type"] == "caught_up"
        (position,) = await append(s, me, 1)
        event = await recv(again)
        assert event["type"] == "event" and event["event"]["position"] == position
    finally:
        await slow.close()
        await again.close()
