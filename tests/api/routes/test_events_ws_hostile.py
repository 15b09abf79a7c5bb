"""The WebSocket's subscribe under attack: resume positions that are negative, not a
number, past the head or past 64 bits; ids that are no string (a list is unhashable),
lone surrogates (JSON `\\ud800`); a subscribe/unsubscribe flood. Each bad message is an
`error` for its id (the one error shape's fields) or a close with a reason, never a
`caught_up` for what was not subscribed; the connection and the process stay sound and
every flooded subscription is released."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from tests.api.answers import user
from tests.api.routes.test_events_ws import closed_with, recv, ws_url
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

BAD_FROM = [-1, "0", 1.5, True, [0], {"p": 0}, 10**15, 2**63, "-0", ""]


async def open_subscriptions(s: System) -> float:
    async with s.client(None) as c:
        text = (await c.get("/metrics")).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('cairn_event_subscriptions{transport="ws"}')
    )


async def test_bad_resume_positions_are_errors_and_never_caught_up(
    shared_system: System,
) -> None:
    protos = ["cairn.events.v1", f"bearer.{shared_system.token(user())}"]
    async with connect(ws_url(shared_system), subprotocols=protos) as ws:
        assert (await recv(ws))["type"] == "authenticated"
        for i, bad in enumerate(BAD_FROM):
            await ws.send(json.dumps({"type": "subscribe", "id": f"s{i}", "from": bad}))
            got = await recv(ws)
            assert got["type"] == "error" and got["id"] == f"s{i}", (bad, got)
            assert set(got["error"]) == {"code", "message", "details"}
            assert got["error"]["code"] in {
                "invalid_last_event_id",
                "last_event_id_beyond_head",
            }, (bad, got)
        # Nothing else was said for them (no caught_up, no subscribed): the next answer
        # is the pong.
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert await recv(ws) == {"type": "pong", "id": "p"}
        # A subscription at the head of a filter matching nothing: caught up at once.
        await ws.send(
            json.dumps(
                {"type": "subscribe", "id": "none", "filters": {"type": "TaskFailed"}, "from": 0}
            )
        )
        assert (await recv(ws))["type"] == "subscribed"
        done = await recv(ws)
        assert done["type"] == "caught_up" and done["id"] == "none", done


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "subscribe", "id": ["a"]}',
        '{"type": "subscribe", "id": {"a": 1}}',
        '{"type": "unsubscribe", "id": ["a"]}',
        '{"type": "subscribe", "id": 7}',
        '{"type": "subscribe", "id": null}',
    ],
)
async def test_ids_that_are_no_string_are_errors(shared_system: System, raw: str) -> None:
    protos = ["cairn.events.v1", f"bearer.{shared_system.token(user())}"]
    async with connect(ws_url(shared_system), subprotocols=protos) as ws:
        await recv(ws)
        await ws.send(raw)
        got = await recv(ws)
        assert got["type"] == "error" and got["error"]["code"] == "invalid_id", got
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert await recv(ws) == {"type": "pong", "id": "p"}


async def test_a_lone_surrogate_closes_as_not_json_or_is_an_error(
    shared_system: System,
) -> None:
    protos = ["cairn.events.v1", f"bearer.{shared_system.token(user())}"]
    async with connect(ws_url(shared_system), subprotocols=protos) as ws:
        await recv(ws)
        await ws.send('{"type": "subscribe", "id": "\\ud800"}')
        code, reason = await closed_with(ws)
        assert code == 1007 and "JSON" in reason, (code, reason)
    async with shared_system.client(None) as c:
        assert (await c.get("/health")).status_code == 200


async def test_a_subscribe_flood_releases_every_subscription(shared_system: System) -> None:
    before = await open_subscriptions(shared_system)
    protos = ["cairn.events.v1", f"bearer.{shared_system.token(user())}"]
    async with connect(ws_url(shared_system), subprotocols=protos) as ws:
        await recv(ws)
        n = 300
        for _ in range(n):  # sent without waiting: the server reads them in order
            await ws.send(json.dumps({"type": "subscribe", "id": "s", "from": 0}))
            await ws.send(json.dumps({"type": "unsubscribe", "id": "s"}))
        await ws.send(json.dumps({"type": "ping", "id": "end"}))
        kinds: dict[str, int] = {}
        while True:
            m = await recv(ws)
            if m["type"] == "pong":
                break
            kinds[m["type"]] = kinds.get(m["type"], 0) + 1
        assert kinds.get("subscribed") == n and kinds.get("unsubscribed") == n, kinds
        assert "error" not in kinds, kinds
        # One kept open is counted (the gauge this test reads is the right one).
        await ws.send(json.dumps({"type": "subscribe", "id": "keep", "from": 0}))

        async def counted() -> bool:
            return await open_subscriptions(shared_system) == before + 1

        await wait_until(counted)

    async def released() -> bool:
        return await open_subscriptions(shared_system) == before

    await wait_until(released)
