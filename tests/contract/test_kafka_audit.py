"""What a Kafka consumer gets for every aggregate, not only uploads and files: buckets,
objects, tasks and URL fetches are driven through the API while the plain consumer of
tests/contract/consumer.py reads every topic of /schema/asyncapi.json. Each message must
match its published schema (envelope, `data`, headers), sit on its aggregate's topic, be
keyed by exactly the aggregate id, carry its owner, an RFC 3339 `occurred_at` with a zone
and a `position` that grows in commit order, and nothing the caller sent as a secret."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.origins import ended, origin_server
from tests.contract import consumer
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@pytest_asyncio.fixture(loop_scope="session")
async def system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, fetch_allow_private=True
    ) as s:
        yield s


async def read_all(bootstrap: str, topics: list[str], expected: set[str]) -> list[Any]:
    """Every record of `topics` until each event id in `expected` has been read."""
    c = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await c.start()
    out: list[Any] = []
    ids: set[str] = set()
    try:

        async def more() -> bool:
            for records in (await c.getmany(timeout_ms=200)).values():
                for msg in records:
                    out.append(msg)
                    ids.add(json.loads(msg.value)["id"])
            return expected <= ids

        await wait_until(more, timeout=60, interval=0)
    finally:
        await c.stop()
    return out


async def test_every_aggregate_s_messages_keep_the_envelope_promises(system: System) -> None:
    owner = f"k-{secrets.token_hex(4)}"
    async with system.client(owner) as c, origin_server(b"fetched\n" * 500) as o:
        name = f"b-{secrets.token_hex(4)}"
        r = await c.post("/v1/buckets", json={"name": name, "public": False})
        assert r.status_code == 201, r.text
        r = await c.patch(f"/v1/buckets/{name}", json={"public": True})
        assert r.status_code == 200, r.text
        r = await c.put(
            f"/v1/buckets/{name}/objects/a/b.txt",
            content=b"object body",
            headers={"Content-Type": "text/plain"},
        )
        assert r.status_code in (200, 201), r.text
        r = await c.get(f"/v1/buckets/{name}/objects/a/b.txt")
        assert r.status_code == 200, r.text
        # A fetch: its events carry the URL as normalised, with its query.
        r = await c.post("/v1/fetches", json={"url": o.url("/range/notes.txt?v=1")})
        assert r.status_code == 202, r.text
        fid = r.json()["id"]
        done = await ended(c, fid, timeout=60)
        assert done["status"] == "COMPLETED", done
        r = await c.post(
            "/v1/tasks",
            json={"type": "copy", "params": {"files": [done["file_id"]], "to": {"bucket": name}}},
        )
        assert r.status_code == 202, r.text
        tid = r.json()["id"]

        async def finished() -> dict[str, Any] | None:
            body = (await c.get(f"/v1/tasks/{tid}")).json()
            return body if body["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

        t = await wait_until(finished, timeout=60)
        assert t["status"] == "COMPLETED", t
        r = await c.delete(f"/v1/buckets/{name}", params={"force": "true"})
        assert r.status_code in (200, 202, 204), r.text
        asyncapi = (await c.get("/schema/asyncapi.json")).json()

    rows = await system.pool.fetch(
        "SELECT event_id, position, stream_id, event_type FROM eventstore.events"
    )
    expected = {str(r["event_id"]) for r in rows}
    position_of = {str(r["event_id"]): r["position"] for r in rows}
    types = {r["event_type"] for r in rows}
    assert {"BucketCreated", "BucketUpdated", "BucketDeleted", "FetchRequested"} <= types
    assert {"FetchCompleted", "TaskCreated", "TaskCompleted", "FileCreated"} <= types

    topic_of = {
        name: channel["address"]
        for channel in asyncapi["channels"].values()
        for name in channel["messages"]
    }
    msgs = await read_all(
        system.settings.kafka_bootstrap or "", consumer.topics(asyncapi), expected
    )
    seen = consumer.Seen()
    schemas = consumer.validators(asyncapi)
    header_schemas = consumer.header_validators(asyncapi)
    problems: list[str] = []
    last: dict[tuple[str, int], int] = {}
    for msg in msgs:
        consumer.check(seen, schemas, header_schemas, msg)
        v = json.loads(msg.value)
        where = f"{v['type']} {v['stream_id']}"
        aggregate_id = v["stream_id"].partition("-")[2]
        if msg.topic != topic_of.get(v["type"]):
            problems.append(f"{where}: on {msg.topic}, AsyncAPI says {topic_of.get(v['type'])}")
        if msg.key != aggregate_id.encode():
            problems.append(f"{where}: key {msg.key!r}")
        if v["owner"] != owner:
            problems.append(f"{where}: owner {v['owner']!r}")
        if not isinstance(v["occurred_at"], str) or not RFC3339.match(v["occurred_at"]):
            problems.append(f"{where}: occurred_at {v['occurred_at']!r}")
        if not isinstance(v["position"], int) or v["position"] != position_of[v["id"]]:
            problems.append(f"{where}: position {v['position']!r}")
        part = (msg.topic, msg.partition)
        if v["position"] <= last.get(part, 0):
            problems.append(f"{where}: position {v['position']} after {last[part]} in {part}")
        last[part] = v["position"]
        headers = dict(msg.headers)
        if headers.get("content-type") != b"application/json":
            problems.append(f"{where}: content-type {headers.get('content-type')!r}")
        if not re.fullmatch(
            rb"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", headers.get("traceparent", b"")
        ):
            problems.append(f"{where}: traceparent {headers.get('traceparent')!r}")
        for k, value in v["data"].items():
            if k == "at" and not RFC3339.match(value):
                problems.append(f"{where}: data.at {value!r}")
    assert seen.problems == []
    assert problems == []
    assert expected <= seen.ids


async def test_a_name_taken_again_publishes_the_new_owner_s_events_under_the_new_owner(
    system: System,
) -> None:
    """A bucket name is free again once deleted, and an object's file id is its (bucket,
    key)'s: the new owner's bucket and object continue the previous owner's streams. Their
    events must carry the new owner (what SSE/WebSocket filter by, and what consumers
    read), never the previous one, who would otherwise be sent them."""
    alice, bob = f"a-{secrets.token_hex(4)}", f"b-{secrets.token_hex(4)}"
    name = f"n-{secrets.token_hex(4)}"
    async with system.client(alice) as a, system.client(bob) as b:
        assert (await a.post("/v1/buckets", json={"name": name})).status_code == 201
        r = await a.put(f"/v1/buckets/{name}/objects/k.txt", content=b"alice's")
        assert r.status_code in (200, 201), r.text
        r = await a.delete(f"/v1/buckets/{name}/objects/k.txt")
        assert r.status_code == 204, r.text
        assert (await a.delete(f"/v1/buckets/{name}")).status_code in (200, 204)
        r = await b.post("/v1/buckets", json={"name": name, "public": True})
        assert r.status_code == 201, r.text
        r = await b.put(
            f"/v1/buckets/{name}/objects/k.txt",
            content=b"bob's",
            headers={"x-amz-meta-secret": "bob-only"},
        )
        assert r.status_code in (200, 201), r.text
        asyncapi = (await b.get("/schema/asyncapi.json")).json()

    rows = await system.pool.fetch(
        "SELECT event_id, stream_id FROM eventstore.events WHERE stream_id = $1"
        " OR stream_id IN (SELECT stream_id FROM eventstore.events"
        "  WHERE event_type = 'FileCreated' AND data->>'bucket' = $2)",
        f"bucket-{name}",
        name,
    )
    expected = {str(r["event_id"]) for r in rows}
    msgs = await read_all(
        system.settings.kafka_bootstrap or "", consumer.topics(asyncapi), expected
    )
    wrong = []
    owners: dict[str, list[str]] = {}
    for msg in msgs:
        v = json.loads(msg.value)
        if v["id"] not in expected:
            continue
        owners.setdefault(v["type"], []).append(v["owner"])
        declared = v["data"].get("owner")
        if declared is not None and declared != v["owner"]:
            wrong.append((v["type"], v["stream_id"], v["version"], v["owner"], declared))
    assert wrong == []
    assert owners["BucketCreated"] == [alice, bob]
    assert owners["FileCreated"] == [alice, bob]
    assert owners["BucketDeleted"] == [alice] and owners["FileDeleted"] == [alice]
