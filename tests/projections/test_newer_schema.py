"""An event of a known type at a schema version newer than this code reads (a newer
deployment wrote it) reaches the projector: it must neither skip it (the read model would
lose it for good) nor misread it, nor crash-loop. It holds that partition before the event
(nothing past it applied or committed), says so once in the log, in a metric and in
Postgres (for /ready), serves every other partition, and resumes where it stopped when a
process that knows the version runs. The rebuild refuses such a history instead of
silently leaving the event out."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition

from bus.config.settings import Settings
from bus.store.eventstore import PostgresEventStore
from domain.errors import NewerSchema
from domain.events import EventMeta, NewEvent, RecordedEvent
from domain.uploads.events import UploadChunkStored
from projections import holds
from projections.rebuild import rebuild_report
from projections.runner import Projector
from tests.projections.conftest import T0, Publisher, Writer, sha, snapshot
from tests.projections.test_projector import metric

KNOWN = UploadChunkStored.schema_version
HELD = "cairn_projection_partitions_held"


@pytest.fixture
def newer_code() -> Iterator[Any]:
    """Turn this code into the newer deployment's: UploadChunkStored one version up, the
    same fields (the stored current version upcast unchanged)."""

    def upgrade() -> None:
        UploadChunkStored.schema_version = KNOWN + 1  # type: ignore[misc]
        UploadChunkStored.upcasters = {KNOWN: dict}  # type: ignore[misc]

    yield upgrade
    UploadChunkStored.schema_version = KNOWN  # type: ignore[misc]
    UploadChunkStored.upcasters = {}  # type: ignore[misc]


async def history_with_a_newer_event(
    writer: Writer, store: PostgresEventStore, owner: str
) -> tuple[str, list[RecordedEvent], RecordedEvent]:
    """An upload with one chunk, then a chunk event of the newer version, then one more
    chunk of the current version: (upload id, every event, the newer one)."""
    uid, _, evs = await writer.upload(owner, "n.bin", 400, chunks=1, complete=False)
    stream = f"upload-{uid}"
    first = evs[-1]
    newer = await store.append(
        stream,
        len(evs),
        [NewEvent(first.type, {**first.data, "index": 1}, schema_version=KNOWN + 1)],
        EventMeta(occurred_at=T0, owner=owner),
    )
    after = await store.append(
        stream,
        len(evs) + 1,
        [NewEvent(first.type, {**first.data, "index": 2, "sha256": sha("2")})],
        EventMeta(occurred_at=T0, owner=owner),
    )
    return uid, [*evs, *newer, *after], newer[0]


async def run(projector: Projector) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(projector.run(stop))


async def stopped(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


async def test_the_projector_holds_the_partition_and_resumes_under_newer_code(
    pool: asyncpg.Pool,
    settings: Settings,
    writer: Writer,
    publisher: Publisher,
    event_store: PostgresEventStore,
    newer_code: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uid, events, newer = await history_with_a_newer_event(writer, event_store, "hold-a")
    sent = await publisher.send(events)
    at = sent[events.index(newer)]
    tp = TopicPartition(at.topic, at.partition)
    # Another topic, so another partition: must not wait for the held one.
    _, fid, done = await writer.upload("hold-b", "ok.bin", 100)
    file_events = [e for e in done if e.aggregate == "files"]
    others = await publisher.send(file_events)

    caplog.set_level(logging.ERROR, "cairn.projections")
    old = Projector(settings, pool)
    stop, task = await run(old)
    try:
        await old.wait_held(at.topic, at.partition, timeout=60)
        for md in others:
            await old.wait_processed(md.topic, md.partition, md.offset, timeout=60)
        assert await pool.fetchval(
            "SELECT count(*) FROM readmodel.files WHERE id = $1", uuid.UUID(fid)
        )
        # Everything before the newer event applied; it and everything after it not.
        assert old.processed_offset(at.topic, at.partition) == at.offset
        row = await pool.fetchrow(
            "SELECT chunks_received FROM readmodel.uploads WHERE id = $1", uuid.UUID(uid)
        )
        assert row["chunks_received"] == 1
        assert (
            await pool.fetchval(
                "SELECT version FROM readmodel.applied WHERE projection = 'uploads'"
                " AND stream_id = $1",
                f"upload-{uid}",
            )
            == newer.version - 1
        )
        # Not committed past it either: the next process starts there.
        assert old.consumer is not None
        assert await old.consumer.committed(tp) == at.offset
        # Exposed: a metric, and in Postgres for /ready.
        assert metric(HELD) == 1
        found = await holds.unresolved(pool)
        assert [(h["stream_id"], h["version"]) for h in found] == [(newer.stream_id, 3)]
        assert found[0]["event_type"] == "UploadChunkStored"
        assert (found[0]["schema_version"], found[0]["known_version"]) == (KNOWN + 1, KNOWN)
        # Logged once, however long it waits.
        said = [r for r in caplog.records if "newer schema version" in r.getMessage()]
        assert len(said) == 1 and newer.stream_id in said[0].getMessage()
    finally:
        await stopped(stop, task)
    assert metric(HELD) == 0  # no longer held by a process that stopped

    # The newer deployment's projector resumes from the held event: nothing lost.
    newer_code()
    fresh = Projector(settings, pool)
    stop, task = await run(fresh)
    try:
        last = sent[-1]
        await fresh.wait_processed(last.topic, last.partition, last.offset, timeout=60)
    finally:
        await stopped(stop, task)
    row = await pool.fetchrow(
        "SELECT chunks_received FROM readmodel.uploads WHERE id = $1", uuid.UUID(uid)
    )
    assert row["chunks_received"] == 3
    assert await holds.unresolved(pool) == []


async def test_the_rebuild_refuses_a_history_with_a_newer_event(
    pool: asyncpg.Pool,
    settings: Settings,
    writer: Writer,
    event_store: PostgresEventStore,
    newer_code: Any,
) -> None:
    """Skipping it would rebuild a read model without it (and without the rest of its
    stream), as good as lost: the rebuild stops instead, and the old rows stay."""
    await writer.upload("rb-a", "a.bin", 200)
    uid, _, _ = await history_with_a_newer_event(writer, event_store, "rb-b")
    await rebuild_report(pool, "files")
    before = await snapshot(pool)
    with pytest.raises(NewerSchema) as caught:
        await rebuild_report(pool, "uploads")
    assert caught.value.details["stored_version"] == KNOWN + 1
    assert await snapshot(pool) == before  # rolled back: the read model as it was
    # The newer deployment rebuilds it whole.
    newer_code()
    report = await rebuild_report(pool, "uploads")
    assert report.skipped == 0
    row = await pool.fetchrow(
        "SELECT chunks_received FROM readmodel.uploads WHERE id = $1", uuid.UUID(uid)
    )
    assert row["chunks_received"] == 3
