"""Live events over WebSocket: auth by subprotocol or first message, subscribe / ack / event /
caught_up / unsubscribe, resume from a position, and every close with its reason, with the
`websockets` client against a whole running system."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.answers import user
from tests.system import System, isolated_system

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHUNK = 4 * 1024


class _AnyInt:
    """Equal to any int (not a bool): a position whose value the test cannot know."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and not isinstance(other, bool)

    def __repr__(self) -> str:
        return "ANY_INT"


ANY_INT: Any = _AnyInt()


def ws_url(s: System) -> str:
    return s.url.replace("http://", "ws://") + "/v1/events/ws"


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes; (code, reason) of its close frame."""
    with pytest.raises(ConnectionClosed) as e:
        while True:
            await ws.recv()
    assert e.value.rcvd is not None
    return e.value.rcvd.code, e.value.rcvd.reason


async def new_upload(c: httpx.AsyncClient) -> str:
    r = await c.post(
        "/v1/uploads", json={"file_name": "f.bin", "file_size": 2 * CHUNK, "chunk_size": CHUNK}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def put_chunk(c: httpx.AsyncClient, uid: str, i: int) -> None:
    r = await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=bytes([i]) * CHUNK)
    assert r.status_code == 201, r.text


async def test_auth_by_subprotocol_subscribe_event_unsubscribe(shared_system: System) -> None:
    me = user()
    token = shared_system.token(me)
    async with connect(
        ws_url(shared_system), subprotocols=["cairn.events.v1", f"bearer.{token}"]
    ) as ws:
        # The server selects the protocol name, never echoes the token.
        assert ws.subprotocol == "cairn.events.v1"
        assert await recv(ws) == {"type": "authenticated", "user": me, "admin": False}
        await ws.send(json.dumps({"type": "subscribe", "id": "mine", "filters": {}}))
        ack = await recv(ws)
        assert ack["type"] == "subscribed" and ack["id"] == "mine" and ack["from"] >= 0
        # Without `from` there is no history: caught up at once, right after the ack.
        assert await recv(ws) == {"type": "caught_up", "id": "mine", "position": ack["from"]}
        await ws.send(
            json.dumps(
                {"type": "subscribe", "id": "chunks", "filters": {"type": "UploadChunkStored"}}
            )
        )
        assert (await recv(ws))["type"] == "subscribed"
        assert (await recv(ws))["type"] == "caught_up"
        async with shared_system.client(me) as c:
            uid = await new_upload(c)
            await put_chunk(c, uid, 0)
            got = [await recv(ws) for _ in range(3)]
            by_sub: dict[str, list[dict[str, Any]]] = {}
            for m in got:
                assert m["type"] == "event"
                by_sub.setdefault(m["subscription"], []).append(m["event"])
            assert [e["type"] for e in by_sub["mine"]] == ["UploadInitiated", "UploadChunkStored"]
            assert [e["type"] for e in by_sub["chunks"]] == ["UploadChunkStored"]
            assert {e["stream_id"] for e in got[0:1] for e in [e["event"]]} == {f"upload-{uid}"}
            await ws.send(json.dumps({"type": "unsubscribe", "id": "chunks"}))
            assert await recv(ws) == {"type": "unsubscribed", "id": "chunks"}
            await put_chunk(c, uid, 1)
            m = await recv(ws)
            assert m["subscription"] == "mine" and m["event"]["version"] == 3
            await ws.send(json.dumps({"type": "ping", "id": "p"}))
            assert await recv(ws) == {"type": "pong", "id": "p"}  # nothing of "chunks" came


async def test_auth_by_first_message_and_resume_from_a_position(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        uid = await new_upload(c)
        await put_chunk(c, uid, 0)
        await put_chunk(c, uid, 1)
    async with connect(ws_url(shared_system)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": shared_system.token(me)}))
        assert (await recv(ws))["type"] == "authenticated"
        await ws.send(
            json.dumps({"type": "subscribe", "id": "s", "filters": {"stream": uid}, "from": 0})
        )
        assert await recv(ws) == {"type": "subscribed", "id": "s", "from": 0}
        events = [(await recv(ws))["event"] for _ in range(3)]
        assert [e["version"] for e in events] == [1, 2, 3]
        assert (await recv(ws))["type"] == "caught_up"
        # Resume after the second: only the third again.
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "again",
                    "filters": {"stream": f"upload-{uid}"},
                    "from": events[1]["position"],
                }
            )
        )
        assert (await recv(ws))["type"] == "subscribed"
        m = await recv(ws)
        assert m["subscription"] == "again" and m["event"]["id"] == events[2]["id"]


async def recv_within(ws: ClientConnection, seconds: float = 30.0) -> dict[str, Any]:
    """The next message, failing the test (not hanging it) if none comes."""
    return await asyncio.wait_for(recv(ws), seconds)


async def test_caught_up_follows_the_last_replayed_event_then_live_ones(
    shared_system: System,
) -> None:
    """A replay ends with `caught_up` right after its last event (never before it), even
    when the newest events in the store match no filter of the subscription (no live event
    or wait is needed for it); live events follow it; a new subscription with a resume
    position says it again, once its own replay is done."""
    me = user()
    async with shared_system.client(me) as c:
        uid = await new_upload(c)
        await put_chunk(c, uid, 0)  # the stream's events: v1 initiated, v2 chunk 0
        later = await new_upload(c)  # newer events of the same user, on another stream
        await put_chunk(c, later, 0)
        protos = ["cairn.events.v1", f"bearer.{shared_system.token(me)}"]
        async with connect(ws_url(shared_system), subprotocols=protos) as ws:
            assert (await recv(ws))["type"] == "authenticated"
            # The other stream first: its positions say where the store's head was.
            await ws.send(
                json.dumps(
                    {"type": "subscribe", "id": "later", "filters": {"stream": later}, "from": 0}
                )
            )
            assert (await recv_within(ws))["type"] == "subscribed"
            noise = [await recv_within(ws) for _ in range(2)]
            assert [m["type"] for m in noise] == ["event", "event"], noise
            done = await recv_within(ws)
            assert done == {"type": "caught_up", "id": "later", "position": ANY_INT}, done
            assert done["position"] >= noise[-1]["event"]["position"]
            await ws.send(json.dumps({"type": "unsubscribe", "id": "later"}))
            assert await recv_within(ws) == {"type": "unsubscribed", "id": "later"}

            await ws.send(
                json.dumps({"type": "subscribe", "id": "s", "filters": {"stream": uid}, "from": 0})
            )
            assert await recv_within(ws) == {"type": "subscribed", "id": "s", "from": 0}
            replay = [await recv_within(ws) for _ in range(3)]
            assert [m["type"] for m in replay] == ["event", "event", "caught_up"], replay
            assert [m["event"]["version"] for m in replay[:2]] == [1, 2]
            # Past this stream's last event: the other stream's events (newer, not matching
            # the filter) were scanned too, so resuming from it misses nothing.
            assert replay[2] == {"type": "caught_up", "id": "s", "position": ANY_INT}
            assert replay[2]["position"] >= noise[-1]["event"]["position"]

            # A type filter: the events it leaves out do not hold caught_up back either.
            await ws.send(
                json.dumps(
                    {
                        "type": "subscribe",
                        "id": "chunks",
                        "filters": {"stream": uid, "type": "UploadChunkStored"},
                        "from": 0,
                    }
                )
            )
            assert (await recv_within(ws))["type"] == "subscribed"
            got = [await recv_within(ws) for _ in range(2)]
            assert [m["type"] for m in got] == ["event", "caught_up"], got
            assert got[0]["event"]["version"] == 2 and got[1]["id"] == "chunks"

            # Live events come after it, and no second caught_up.
            await put_chunk(c, uid, 1)
            live = [await recv_within(ws) for _ in range(2)]
            assert sorted((m["type"], m["subscription"]) for m in live) == [
                ("event", "chunks"),
                ("event", "s"),
            ], live
            assert {m["event"]["version"] for m in live} == {3}
            await ws.send(json.dumps({"type": "ping", "id": "p"}))
            assert await recv_within(ws) == {"type": "pong", "id": "p"}

            # Subscribed again, resuming after the first event: its own replay, its own
            # caught_up after the last event of it.
            await ws.send(json.dumps({"type": "unsubscribe", "id": "s"}))
            assert await recv_within(ws) == {"type": "unsubscribed", "id": "s"}
            first = replay[0]["event"]["position"]
            await ws.send(
                json.dumps(
                    {"type": "subscribe", "id": "s", "filters": {"stream": uid}, "from": first}
                )
            )
            assert await recv_within(ws) == {"type": "subscribed", "id": "s", "from": first}
            again = [await recv_within(ws) for _ in range(3)]
            assert [m["type"] for m in again] == ["event", "event", "caught_up"], again
            assert [m["event"]["version"] for m in again[:2]] == [2, 3]
            assert again[2]["position"] >= live[0]["event"]["position"]


async def test_another_users_stream_gives_nothing(shared_system: System) -> None:
    alice, bob = user(), user()
    async with shared_system.client(alice) as c:
        ua = await new_upload(c)
    async with connect(ws_url(shared_system)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": shared_system.token(bob)}))
        await recv(ws)
        await ws.send(
            json.dumps({"type": "subscribe", "id": "x", "filters": {"stream": ua}, "from": 0})
        )
        assert (await recv(ws))["type"] == "subscribed"  # same ack as for an unknown id
        # Alice's events are no history of bob's: caught up with no event before it.
        assert (await recv(ws))["type"] == "caught_up"
        await ws.send(json.dumps({"type": "subscribe", "id": "all", "filters": {}, "from": 0}))
        assert (await recv(ws))["type"] == "subscribed"
        assert (await recv(ws))["type"] == "caught_up"  # bob has no events yet
        async with shared_system.client(bob) as c:
            ub = await new_upload(c)
        m = await recv(ws)  # bob's own event comes; alice's replay never did
        assert m["subscription"] == "all" and m["event"]["stream_id"] == f"upload-{ub}"


async def test_auth_failures_close_with_a_reason(shared_system: System) -> None:
    forged = jwt.encode({"sub": "alice"}, "not-the-secret-" + "x" * 32, algorithm="HS256")
    async with connect(
        ws_url(shared_system), subprotocols=["cairn.events.v1", f"bearer.{forged}"]
    ) as ws:
        code, reason = await closed_with(ws)
        assert code == 4401 and reason.startswith("invalid_token")
    async with connect(ws_url(shared_system)) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": "s"}))
        code, reason = await closed_with(ws)
        assert code == 4401 and "first message must be auth" in reason
    # Two users' tokens offered at once: the first used to count; now neither does.
    tokens = [shared_system.token(user()) for _ in range(2)]
    protos = ["cairn.events.v1", *(f"bearer.{t}" for t in tokens)]
    async with connect(ws_url(shared_system), subprotocols=protos) as ws:
        code, reason = await closed_with(ws)
        assert code == 4401 and "more than once" in reason
    async with connect(ws_url(shared_system)) as ws:
        await ws.send(json.dumps({"type": "auth", "api_key": "nope"}))
        code, reason = await closed_with(ws)
        assert code == 4401 and reason.startswith("unauthorized")
    expiring = jwt.encode(
        {"sub": user(), "exp": int(time.time()) + 2},
        shared_system.settings.resolved_jwt_secret(),
        algorithm="HS256",
    )
    async with connect(ws_url(shared_system)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": expiring}))
        assert (await recv(ws))["type"] == "authenticated"
        code, reason = await closed_with(ws)  # the server ends it when the token expires
        assert code == 4401 and reason.startswith("token_expired")


async def test_bad_messages(shared_system: System) -> None:
    token = shared_system.token(user())
    protos = ["cairn.events.v1", f"bearer.{token}"]
    async with connect(ws_url(shared_system), subprotocols=protos) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "subscribe", "id": "a", "filters": {"aggregate": "x"}}))
        err = await recv(ws)
        assert err["type"] == "error" and err["id"] == "a"
        assert (
            err["error"]["code"] == "invalid_query"
            and err["error"]["details"]["field"] == "aggregate"
        )
        await ws.send(json.dumps({"type": "subscribe", "id": "b", "filters": {"colour": 1}}))
        assert (await recv(ws))["error"]["details"]["filter"] == "colour"
        await ws.send(json.dumps({"type": "subscribe", "id": "c", "from": "yesterday"}))
        assert (await recv(ws))["error"]["code"] == "invalid_last_event_id"
        await ws.send(json.dumps({"type": "subscribe", "id": "d", "from": 10**15}))
        assert (await recv(ws))["error"]["code"] == "last_event_id_beyond_head"
        await ws.send(json.dumps({"type": "unsubscribe", "id": "nope"}))
        assert (await recv(ws))["error"]["code"] == "unknown_subscription"
        await ws.send(json.dumps({"type": "dance"}))
        assert (await recv(ws))["error"]["code"] == "unknown_message_type"
        await ws.send(json.dumps({"type": "subscribe", "id": "e"}))
        assert (await recv(ws))["type"] == "subscribed"
        assert (await recv(ws))["type"] == "caught_up"
        await ws.send(json.dumps({"type": "subscribe", "id": "e"}))
        assert (await recv(ws))["error"]["code"] == "subscription_exists"
        await ws.send("this is not json")
        code, reason = await closed_with(ws)
        assert code == 1007 and "not JSON" in reason
    async with connect(ws_url(shared_system), subprotocols=protos) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 70_000}))
        code, reason = await closed_with(ws)
        assert code == 1009 and "too big" in reason
    async with connect(ws_url(shared_system), subprotocols=protos, max_size=None) as ws:
        await recv(ws)
        await ws.send(b"\x00\x01")
        code, _ = await closed_with(ws)
        assert code == 1003
    # The process is unharmed.
    async with shared_system.client(None) as c:
        assert (await c.get("/health")).status_code == 200


async def test_filters_that_are_no_object_are_refused_even_when_empty(
    shared_system: System,
) -> None:
    """`filters: []` (or "", 0, false) subscribed with no filter at all, to every event the
    caller may see, while `filters: "uploads"` was refused: an empty value was read as
    none. Only an absent or null `filters` means none."""
    token = shared_system.token(user())
    protos = ["cairn.events.v1", f"bearer.{token}"]
    async with connect(ws_url(shared_system), subprotocols=protos) as ws:
        await recv(ws)
        for n, filters in enumerate(([], "", 0, False, ["uploads"])):
            await ws.send(json.dumps({"type": "subscribe", "id": f"s{n}", "filters": filters}))
            err = await recv(ws)
            assert err["type"] == "error" and err["id"] == f"s{n}", (filters, err)
            assert err["error"]["code"] == "invalid_filter", (filters, err)
        for n, filters in enumerate(({}, None)):
            await ws.send(json.dumps({"type": "subscribe", "id": f"ok{n}", "filters": filters}))
            ok = await recv(ws)
            assert (ok["type"], ok["id"]) == ("subscribed", f"ok{n}"), (filters, ok)
            assert (await recv(ws))["type"] == "caught_up"


async def test_too_many_subscriptions(shared_system: System) -> None:
    limit = shared_system.settings.ws_max_subscriptions
    async with connect(
        ws_url(shared_system),
        subprotocols=["cairn.events.v1", f"bearer.{shared_system.token(user())}"],
    ) as ws:
        await recv(ws)
        for i in range(limit):
            await ws.send(json.dumps({"type": "subscribe", "id": f"s{i}"}))
        for i in range(limit):  # each ack followed by its caught_up (no `from`)
            assert [await recv(ws) for _ in range(2)] == [
                {"type": "subscribed", "id": f"s{i}", "from": ANY_INT},
                {"type": "caught_up", "id": f"s{i}", "position": ANY_INT},
            ]
        await ws.send(json.dumps({"type": "subscribe", "id": "one-too-many"}))
        err = await recv(ws)
        assert err["error"]["code"] == "too_many_subscriptions"
        assert err["error"]["details"]["limit"] == limit
        code, reason = await closed_with(ws)
        assert code == 1008 and reason.startswith("too_many_subscriptions")


async def test_stopping_the_api_closes_every_socket_with_going_away(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    # A socket with a subscription was closed 1001 `shutting_down` at once; one without
    # (just authenticated, or between subscriptions) stayed open through the drain and
    # was then cut by the server with 1012, not the documented close.
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as s:
        protos = ["cairn.events.v1", f"bearer.{s.token(user())}"]
        async with (
            connect(ws_url(s), subprotocols=protos) as idle,
            connect(ws_url(s), subprotocols=protos) as busy,
        ):
            await recv(idle)
            await recv(busy)
            await busy.send(json.dumps({"type": "subscribe", "id": "s"}))
            assert (await recv(busy))["type"] == "subscribed"
            stopping = asyncio.create_task(s.stop("api"))
            try:
                for ws in (idle, busy):
                    code, reason = await asyncio.wait_for(closed_with(ws), 30)
                    assert code == 1001 and reason.startswith("shutting_down"), (code, reason)
            finally:
                await stopping


async def test_messages_are_as_strict_as_http_bodies(shared_system: System) -> None:
    """An unknown top-level field was ignored (`{"type": "subscribe", "id": "s", "form": 0}`
    subscribed to new events only, the typo unseen) and `"from": "0"` was read as 0, while
    an HTTP body with either is 400. Both are now an error message naming the field; the
    connection stays open, as for every refused message."""
    protos = ["cairn.events.v1", f"bearer.{shared_system.token(user())}"]
    async with connect(ws_url(shared_system), subprotocols=protos) as ws:
        await recv(ws)
        refused: list[tuple[dict[str, Any], str, str]] = [
            ({"type": "subscribe", "id": "a", "form": 0}, "unknown_field", "form"),
            (
                {"type": "subscribe", "id": "b", "filter": {"stream": "x"}},
                "unknown_field",
                "filter",
            ),
            ({"type": "unsubscribe", "id": "c", "filters": {}}, "unknown_field", "filters"),
            ({"type": "ping", "id": "d", "extra": True}, "unknown_field", "extra"),
            ({"type": "subscribe", "id": "e", "from": "0"}, "invalid_last_event_id", "from"),
            ({"type": "subscribe", "id": "f", "from": ""}, "invalid_last_event_id", "from"),
            ({"type": "subscribe", "id": "g", "from": True}, "invalid_last_event_id", "from"),
            ({"type": "subscribe", "id": "h", "from": 1.0}, "invalid_last_event_id", "from"),
            ({"type": "subscribe", "id": "i", "from": -1}, "invalid_last_event_id", "from"),
        ]
        for msg, code, field in refused:
            await ws.send(json.dumps(msg))
            err = await recv(ws)
            assert err["type"] == "error" and err["id"] == msg["id"], (msg, err)
            assert err["error"]["code"] == code, (msg, err)
            assert err["error"]["details"]["field"] == field, (msg, err)
        # A key twice in one message (JSON text: a dict cannot say it): orjson kept the
        # last, so the first of these subscribed with a filter the client may not have
        # meant, and the second was a ping to the server, a subscribe to a proxy reading
        # the first value.
        for text, field in [
            (
                '{"type": "subscribe", "id": "t1", "filters": {"stream": "a", "stream": "b"}}',
                "filters.stream",
            ),
            ('{"type": "subscribe", "type": "ping", "id": "t2"}', "type"),
        ]:
            await ws.send(text)
            err = await recv(ws)
            assert err["type"] == "error", (text, err)
            assert err["error"]["code"] == "duplicate_key", (text, err)
            assert err["error"]["details"]["field"] == field, (text, err)
        # Nothing was subscribed by the refused messages, and the socket still works.
        await ws.send(json.dumps({"type": "unsubscribe", "id": "a"}))
        assert (await recv(ws))["error"]["code"] == "unknown_subscription"
        await ws.send(json.dumps({"type": "subscribe", "id": "e", "from": None, "filters": None}))
        ok = await recv(ws)
        assert (ok["type"], ok["id"]) == ("subscribed", "e"), ok
        assert (await recv(ws))["type"] == "caught_up"
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert await recv(ws) == {"type": "pong", "id": "p"}
    # The auth message too: a bad one closes the connection, as it always did.
    async with connect(ws_url(shared_system)) as ws:
        token = shared_system.token(user())
        await ws.send(json.dumps({"type": "auth", "token": token, "remember": True}))
        code, reason = await closed_with(ws)
        assert code == 4401 and reason.startswith("unauthorized") and "remember" in reason
    async with connect(ws_url(shared_system)) as ws:
        token = shared_system.token(user())
        await ws.send(f'{{"type": "auth", "token": "{token}", "token": "x"}}')
        code, reason = await closed_with(ws)
        assert code == 4401 and "twice" in reason, (code, reason)
