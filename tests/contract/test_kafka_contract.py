"""The Kafka contract, seen from outside: a plain aiokafka consumer (tests/contract/consumer.py,
which imports nothing of Cairn) reads every topic named in /schema/asyncapi.json, validates
every message against the published schema of its type and version (envelope, `data` and
headers), and sees each aggregate's versions 1, 2, 3... without gaps, while three actor
hosts (one stopped half-way, so partitions move), the relay, the handlers and concurrent
clients run."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.run.processes import RUNNERS
from tests.contract import consumer
from tests.system import System, isolated_system, wait_until

CHUNK = 4 * 1024
CAIRN_PACKAGES = {"domain", "bus", "api", "projections", "handlers", "tests"}


def test_the_consumer_imports_nothing_of_cairn() -> None:
    tree = ast.parse(Path(consumer.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported and not imported & CAIRN_PACKAGES, imported


@pytest_asyncio.fixture(loop_scope="session")
async def system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as s:
        yield s


async def upload(c: httpx.AsyncClient, data: bytes) -> None:
    r = await c.post(
        "/v1/uploads",
        json={"file_name": "f.bin", "file_size": len(data), "chunk_size": CHUNK},
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    parts = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    results = await asyncio.gather(
        *[c.put(f"/v1/uploads/{uid}/chunks/{i}", content=p) for i, p in enumerate(parts)]
    )
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()


async def test_every_message_matches_its_schema_in_order_per_aggregate(system: System) -> None:
    async with system.client(None) as c:
        asyncapi = (await c.get("/schema/asyncapi.json")).json()
    assert consumer.topics(asyncapi), "the AsyncAPI document names no topics"
    # Every event type publishes a schema of its `data`, and it is not vacuous: a chunk
    # event whose index is a string fails it.
    for name, message in asyncapi["components"]["messages"].items():
        data = message["payload"]["properties"]["data"]
        assert "$ref" in data or "properties" in data, f"{name}: no schema for data"
    bad = {
        "id": "00000000-0000-4000-8000-000000000000",
        "type": "UploadChunkStored",
        "schema_version": asyncapi["components"]["messages"]["UploadChunkStored"]["payload"][
            "properties"
        ]["schema_version"]["const"],
        "stream_id": "upload-00000000-0000-4000-8000-000000000000",
        "version": 2,
        "position": 2,
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "owner": "alice",
        "correlation_id": None,
        "causation_id": None,
        "data": {"index": "zero"},
    }
    assert list(consumer.validators(asyncapi)["UploadChunkStored"].iter_errors(bad))
    # The schema is per type and version: another version of the same type fails it, in
    # the value and in the `schema-version` header.
    chunk_version = bad["schema_version"]
    good_data = {"index": 0, "offset": 0, "size": 1, "sha256": "00", "at": bad["occurred_at"]}
    good = {**bad, "data": good_data}
    chunk = consumer.validators(asyncapi)["UploadChunkStored"]
    assert not list(chunk.iter_errors(good))
    assert list(chunk.iter_errors({**good, "schema_version": chunk_version + 1}))
    chunk_headers = consumer.header_validators(asyncapi)["UploadChunkStored"]
    headers = {"event-id": good["id"], "event-type": "UploadChunkStored"}
    assert not list(chunk_headers.iter_errors({**headers, "schema-version": str(chunk_version)}))
    assert list(chunk_headers.iter_errors({**headers, "schema-version": str(chunk_version + 1)}))

    # Two more actor hosts join the system's own: commands spread over three.
    extra = []
    for _ in range(2):
        stop = asyncio.Event()
        extra.append((stop, asyncio.create_task(RUNNERS["actors"](system.settings, stop))))

    seen = consumer.Seen()
    stop_consumer = asyncio.Event()
    reader = asyncio.create_task(
        consumer.consume(system.settings.kafka_bootstrap or "", asyncapi, seen, stop_consumer)
    )
    try:

        async def client_work(n: int) -> None:
            async with system.client(f"u-{secrets.token_hex(4)}") as c:
                for _ in range(n):
                    await upload(c, secrets.token_bytes(3 * CHUNK + 100))

        await asyncio.gather(*[client_work(2) for _ in range(6)])
        # One host leaves mid-run: its partitions move to the others.
        extra[0][0].set()
        await extra[0][1]
        await asyncio.gather(*[client_work(2) for _ in range(6)])

        async def stored() -> set[str]:
            rows = await system.pool.fetch("SELECT event_id FROM eventstore.events")
            return {str(r["event_id"]) for r in rows}

        # The handlers turn each completed upload into a file: wait for all 24.
        async def files_created() -> bool:
            n = await system.pool.fetchval(
                "SELECT count(*) FROM eventstore.events WHERE event_type = 'FileCreated'"
            )
            return n == 24

        await wait_until(files_created)
        expected = await stored()

        async def all_consumed() -> bool:
            return expected <= seen.ids

        await wait_until(all_consumed, timeout=60)
    finally:
        stop_consumer.set()
        await reader
        for stop, task in extra[1:]:
            stop.set()
            await task

    assert seen.problems == []
    assert seen.records >= len(expected)
    assert {"UploadInitiated", "UploadChunkStored", "UploadCompleted", "FileCreated"} <= seen.types
    assert len(seen.versions) == 48  # 24 uploads and 24 files
    for stream_id, versions in seen.versions.items():
        assert versions == list(range(1, len(versions) + 1)), (stream_id, versions)
