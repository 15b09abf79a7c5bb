"""One trace from the HTTP request to the stored event, the Kafka message and the handler."""

from __future__ import annotations

import os

import orjson

from bus.kafka.clients import header, make_consumer
from tests.system import System, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_traceparent_flows_from_http_to_events_and_kafka(shared_system: System) -> None:
    incoming = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    data = os.urandom(10)
    async with shared_system.client("tracer") as c:
        r = await c.post(
            "/v1/uploads",
            json={"file_name": "t", "file_size": 10, "chunk_size": 10},
            headers={"traceparent": incoming},
        )
        uid = r.json()["id"]
        assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=data)).status_code == 201
        assert (await c.post(f"/v1/uploads/{uid}/complete")).status_code == 200
    row = await shared_system.pool.fetchrow(
        "SELECT traceparent FROM eventstore.events WHERE stream_id = $1 AND version = 1",
        f"upload-{uid}",
    )
    stored = row["traceparent"]
    # same trace, but a span of its own (the actor's, child of the API's server span)
    assert stored.split("-")[1] == TRACE_ID and stored != incoming
    untraced = await shared_system.pool.fetchval(
        "SELECT traceparent FROM eventstore.events WHERE stream_id = $1 AND version = 2",
        f"upload-{uid}",
    )
    assert (
        untraced and untraced.split("-")[1] != TRACE_ID
    )  # a request without one starts a new trace

    s = shared_system.settings
    consumer = make_consumer(s, s.topic("uploads"), group_id=None)
    await consumer.start()
    found: list[str | None] = []
    try:

        async def seen() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                for rec in recs:
                    if (
                        orjson.loads(rec.value)["stream_id"] == f"upload-{uid}"
                        and orjson.loads(rec.value)["version"] == 1
                    ):
                        found.append(header(rec.headers, "traceparent"))
            return bool(found)

        await wait_until(seen)
    finally:
        await consumer.stop()
    assert found[0] == stored
