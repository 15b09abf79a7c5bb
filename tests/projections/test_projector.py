"""The live projector against the real broker: rows, duplicates, gaps, bad messages, stop."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import asyncpg
import orjson
import pytest
from prometheus_client import REGISTRY

from bus.actors import wake
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics
from bus.store.eventstore import PostgresEventStore
from bus.store.pickup import FETCHES_CHANGED, TASKS_CHANGED
from domain.commands import RequestFetch
from domain.events import RecordedEvent
from projections import queries
from projections.base import PROJECTION_LOCK
from projections.runner import Projector
from tests.projections.conftest import T0, LiveProjector, Publisher, Writer, sha
from tests.rebalance import assert_still_idle, idle, join_and_leave
from tests.system import wait_until


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def usage(pool: asyncpg.Pool, owner: str) -> dict[str, int]:
    # Summed over days: events an hour apart may straddle UTC midnight.
    r = await pool.fetchrow(
        "SELECT coalesce(sum(uploads_started), 0)::bigint AS uploads_started,"
        " coalesce(sum(uploads_completed), 0)::bigint AS uploads_completed,"
        " coalesce(sum(bytes_uploaded), 0)::bigint AS bytes_uploaded,"
        " coalesce(sum(files_created), 0)::bigint AS files_created,"
        " coalesce(sum(files_deleted), 0)::bigint AS files_deleted"
        " FROM readmodel.usage_daily WHERE owner = $1",
        owner,
    )
    return dict(r)


async def test_projector_builds_upload_and_file_rows(
    pool: asyncpg.Pool, writer: Writer, publisher: Publisher, projector: LiveProjector
) -> None:
    applied_before = metric("cairn_projection_events_applied_total", projection="uploads")
    uid, fid, done = await writer.upload("alice", "report.pdf", 250, content_type="application/pdf")
    uid2, _, partial = await writer.upload("alice", "big.iso", 300, chunks=2, complete=False)
    assert fid is not None
    await projector.caught_up(await publisher.send(done + partial))

    up = await pool.fetchrow("SELECT * FROM readmodel.uploads WHERE id = $1", uuid.UUID(uid))
    assert up["owner"] == "alice" and up["file_name"] == "report.pdf"
    assert (up["file_size"], up["chunk_size"], up["total_chunks"]) == (250, 100, 3)
    assert (up["chunks_received"], up["bytes_received"]) == (3, 250)
    assert up["status"] == "COMPLETED" and str(up["file_id"]) == fid
    assert up["content_type"] == "application/pdf" and up["bucket"] == "default"
    assert up["metadata"] == {"k": "report.pdf"}
    assert up["created_at"] == T0 and up["completed_at"] == T0 + timedelta(seconds=4)
    assert up["updated_at"] == up["completed_at"]
    assert up["last_version"] == 5  # initiated, 3 chunks, completed

    up2 = await pool.fetchrow("SELECT * FROM readmodel.uploads WHERE id = $1", uuid.UUID(uid2))
    assert (up2["status"], up2["chunks_received"], up2["bytes_received"]) == ("IN_PROGRESS", 2, 200)
    assert up2["file_id"] is None and up2["completed_at"] is None

    f = await pool.fetchrow("SELECT * FROM readmodel.files WHERE id = $1", uuid.UUID(fid))
    assert (f["owner"], f["name"], f["size"], f["chunk_count"]) == ("alice", "report.pdf", 250, 3)
    assert str(f["upload_id"]) == uid and f["deleted_at"] is None and f["last_version"] == 1
    assert f["sha256"] == sha(f"{uid}:all") and f["content_type"] == "application/pdf"

    assert await usage(pool, "alice") == {
        "uploads_started": 2,
        "uploads_completed": 1,
        "bytes_uploaded": 450,
        "files_created": 1,
        "files_deleted": 0,
    }
    # Checkpoints and status: every stream at its last version, status at the last position.
    everything = done + partial
    cps = {
        (r["projection"], r["stream_id"]): r["version"]
        for r in await pool.fetch("SELECT * FROM readmodel.applied")
    }
    assert cps == {
        ("uploads", f"upload-{uid}"): 5,
        ("uploads", f"upload-{uid2}"): 3,
        ("files", f"file-{fid}"): 1,
    }
    status = {r["projection"]: r for r in await pool.fetch("SELECT * FROM readmodel.status")}
    uploads_last = max(e.position for e in everything if e.aggregate == "uploads")
    assert status["uploads"]["last_position"] == uploads_last
    assert status["files"]["last_position"] == max(
        e.position for e in everything if e.aggregate == "files"
    )
    assert (
        metric("cairn_projection_events_applied_total", projection="uploads") - applied_before == 8
    )
    assert (
        REGISTRY.get_sample_value("cairn_projection_lag_seconds", {"projection": "uploads"})
        is not None
    )

    # Deleting the file hides it from queries and counts in usage.
    deleted = await writer.delete_file("alice", fid, T0 + timedelta(minutes=5))
    await projector.caught_up(await publisher.send(deleted))
    f = await pool.fetchrow("SELECT * FROM readmodel.files WHERE id = $1", uuid.UUID(fid))
    assert f["deleted_at"] == T0 + timedelta(minutes=5) and f["last_version"] == 2
    assert await queries.get_file(pool, fid, "alice") is None
    assert (await usage(pool, "alice"))["files_deleted"] == 1


async def test_duplicate_deliveries_are_applied_once(
    pool: asyncpg.Pool, writer: Writer, publisher: Publisher, projector: LiveProjector
) -> None:
    dups_before = metric("cairn_projection_duplicates_skipped_total", projection="uploads")
    uid, _, events = await writer.upload("carol", "twice.bin", 1000, chunk_size=300)
    # Everything twice, plus a replay of the first events after the last one.
    sent = await publisher.send(events)
    sent += await publisher.send(events)
    sent += await publisher.send(events[:3])
    await projector.caught_up(sent)

    up = await queries.get_upload(pool, uid, "carol")
    assert up is not None
    assert (up["chunks_received"], up["bytes_received"], up["status"]) == (4, 1000, "COMPLETED")
    assert up["progress"] == 100.0
    assert await usage(pool, "carol") == {
        "uploads_started": 1,
        "uploads_completed": 1,
        "bytes_uploaded": 1000,
        "files_created": 1,
        "files_deleted": 0,
    }
    assert await pool.fetchval("SELECT count(*) FROM readmodel.files WHERE owner = 'carol'") == 1
    uploads_events = sum(1 for e in events if e.aggregate == "uploads")
    assert (
        metric("cairn_projection_duplicates_skipped_total", projection="uploads") - dups_before
        == uploads_events + 3
    )


async def test_gap_is_filled_from_the_event_store(
    pool: asyncpg.Pool, writer: Writer, publisher: Publisher, projector: LiveProjector
) -> None:
    uid, _, events = await writer.upload("dave", "gap.bin", 300, chunks=2, complete=False)
    assert [e.version for e in events] == [1, 2, 3]
    # Versions 1 and 2 never reach Kafka (lost by the broker): only 3 is delivered.
    await projector.caught_up(await publisher.send(events[2:]))

    up = await queries.get_upload(pool, uid, "dave")
    assert up is not None
    assert (up["status"], up["chunks_received"], up["bytes_received"]) == ("IN_PROGRESS", 2, 200)
    assert (
        await pool.fetchval(
            "SELECT version FROM readmodel.applied WHERE stream_id = $1", f"upload-{uid}"
        )
        == 3
    )
    # The lost events arriving late are now duplicates.
    await projector.caught_up(await publisher.send(events[:2]))
    up = await queries.get_upload(pool, uid, "dave")
    assert up is not None and up["bytes_received"] == 200
    assert (await usage(pool, "dave"))["bytes_uploaded"] == 200


async def test_malformed_and_unappliable_messages_are_skipped(
    pool: asyncpg.Pool,
    writer: Writer,
    publisher: Publisher,
    projector: LiveProjector,
    event_store: PostgresEventStore,
) -> None:
    malformed_before = metric("cairn_projection_messages_skipped_total", reason="malformed")
    poison_before = metric("cairn_projection_messages_skipped_total", reason="unappliable")
    uid, _, good = await writer.upload("erin", "ok.bin", 200, complete=False)
    bad_id = str(uuid.uuid4())
    sent = [
        await publisher.send_raw("uploads", bad_id, b"not json at all"),
        await publisher.send_raw("uploads", bad_id, b"[1, 2, 3]"),
        await publisher.send_raw("uploads", bad_id, orjson.dumps({"id": "x", "type": "Nope"})),
    ]
    # Well-formed envelopes the projection cannot apply: missing data, and an id that is
    # not a uuid. Both are versions 1 of streams the event store has never seen.
    poison = RecordedEvent(
        id=str(uuid.uuid4()),
        stream_id=f"upload-{bad_id}",
        version=1,
        position=10**9,
        type="UploadInitiated",
        schema_version=2,
        data={"owner": "erin"},
        occurred_at=T0,
    )
    not_uuid = RecordedEvent(**{**poison.__dict__, "stream_id": "upload-not-a-uuid"})
    # One that decodes but that PostgreSQL refuses to store (a NUL in a text column): its
    # write fails only when the batch's queued writes are sent (projections/pipelined.py),
    # and the batch is then redone event by event, skipping only it.
    nul_id = str(uuid.uuid4())
    nul = RecordedEvent(
        **{
            **good[0].__dict__,
            "id": str(uuid.uuid4()),
            "stream_id": f"upload-{nul_id}",
            "data": {**good[0].data, "upload_id": nul_id, "file_name": "a\x00b"},
        }
    )
    sent += await publisher.send([poison, not_uuid, nul])
    sent += await publisher.send(good)
    await projector.caught_up(sent)
    assert not projector.task.done()

    up = await queries.get_upload(pool, uid, "erin")
    assert up is not None and up["bytes_received"] == 200
    assert await pool.fetchval("SELECT count(*) FROM readmodel.uploads WHERE owner = 'erin'") == 1
    assert (
        metric("cairn_projection_messages_skipped_total", reason="malformed") - malformed_before
        == 3
    )
    assert (
        metric("cairn_projection_messages_skipped_total", reason="unappliable") - poison_before == 3
    )
    assert await pool.fetchval("SELECT count(*) FROM readmodel.uploads WHERE id = $1", nul_id) == 0
    assert await event_store.stream_version(f"upload-{bad_id}") == 0


async def test_two_projectors_in_one_group_apply_each_event_once(
    settings: Settings, pool: asyncpg.Pool, writer: Writer, publisher: Publisher
) -> None:
    """Scaled out (and through the rebalance when the second joins), still exactly once."""
    stop = asyncio.Event()
    a, b = Projector(settings, pool), Projector(settings, pool)
    tasks = [asyncio.create_task(p.run(stop)) for p in (a, b)]
    try:
        owners = [f"user{i}" for i in range(6)]
        events = []
        for o in owners:
            events += (await writer.upload(o, "f.bin", 500))[2]
        sent = await publisher.send(events)
        sent += await publisher.send(events)  # and every message twice
        for md in sent:
            waits = [
                asyncio.create_task(p.wait_processed(md.topic, md.partition, md.offset, 60))
                for p in (a, b)
            ]
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                w.cancel()
            for w in done:
                w.result()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    for o in owners:
        assert await usage(pool, o) == {
            "uploads_started": 1,
            "uploads_completed": 1,
            "bytes_uploaded": 500,
            "files_created": 1,
            "files_deleted": 0,
        }


async def test_projector_stops_promptly(
    settings: Settings, pool: asyncpg.Pool, writer: Writer, publisher: Publisher
) -> None:
    # While still joining the consumer group (which takes the embedded broker seconds).
    stop = asyncio.Event()
    task = asyncio.create_task(Projector(settings, pool).run(stop))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(task, timeout=3)

    # And while running.
    stop = asyncio.Event()
    p = Projector(settings, pool)
    task = asyncio.create_task(p.run(stop))
    _, _, events = await writer.upload("frank", "x", 10, chunks=0, complete=False)
    [md] = await publisher.send(events)
    await p.wait_processed(md.topic, md.partition, md.offset, timeout=60)
    stop.set()
    await asyncio.wait_for(task, timeout=3)

    # And while its batch waits for the projection lock (as during a long rebuild): the
    # batch is abandoned uncommitted, and a later projector applies it.
    stop = asyncio.Event()
    p = Projector(settings, pool)
    task = asyncio.create_task(p.run(stop))
    async with pool.acquire() as rebuilder, rebuilder.transaction():
        await rebuilder.execute("SELECT pg_advisory_xact_lock($1)", PROJECTION_LOCK)
        uid, _, events = await writer.upload("frank", "y", 10, chunks=0, complete=False)
        [md] = await publisher.send(events)
        deadline = time.monotonic() + 60
        while not await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
        ):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, timeout=3)
    assert await queries.get_upload(pool, uid, "frank") is None
    stop = asyncio.Event()
    p = Projector(settings, pool)
    task = asyncio.create_task(p.run(stop))
    await p.wait_processed(md.topic, md.partition, md.offset, timeout=60)
    stop.set()
    await asyncio.wait_for(task, timeout=3)
    assert await queries.get_upload(pool, uid, "frank") is not None


async def test_a_batch_that_changes_fetches_announces_it_and_an_upload_batch_does_not(
    settings: Settings, pool: asyncpg.Pool, db_url: str, writer: Writer, publisher: Publisher
) -> None:
    """The fetch workers wake on FETCHES_CHANGED (bus/store/pickup.py): sent in the batch's
    transaction when it changed readmodel.fetches, and by nothing else."""
    await ensure_topics(settings, [settings.topic("fetches")])  # before the projector joins
    heard: list[str] = []
    fetch_changed = asyncio.Event()

    def on_notify(_c: object, _pid: int, channel: str, _payload: str) -> None:
        heard.append(channel)
        if channel == FETCHES_CHANGED:
            fetch_changed.set()

    listener = await asyncpg.connect(db_url)
    stop = asyncio.Event()
    p = Projector(settings, pool)
    task = asyncio.create_task(p.run(stop))
    try:
        for channel in (FETCHES_CHANGED, TASKS_CHANGED):
            await listener.add_listener(channel, on_notify)
        _, _, uploaded = await writer.upload("gina", "a.bin", 300)
        for md in await publisher.send(uploaded):
            await p.wait_processed(md.topic, md.partition, md.offset, timeout=60)
        fid = str(uuid.uuid4())
        requested = await writer.run(
            RequestFetch(aggregate_id=fid, caller="gina", at=T0, owner="gina", url="http://o/a")
        )
        [md] = await publisher.send(requested)
        await p.wait_processed(md.topic, md.partition, md.offset, timeout=60)
        await asyncio.wait_for(fetch_changed.wait(), 30)
        # Notifications reach a listener in commit order: the upload's batches committed
        # first, and announced nothing.
        assert heard == [FETCHES_CHANGED]
        row = await listener.fetchval("SELECT status FROM readmodel.fetches WHERE id = $1", fid)
        assert row == "PENDING"  # delivered at commit: the row is there for the woken worker
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await listener.close()


async def test_an_idle_projector_stays_paused_through_a_rebalance_and_an_append_wakes_it(
    settings: Settings,
    pool: asyncpg.Pool,
    writer: Writer,
    publisher: Publisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka forgets its pauses when a rebalance revokes and assigns the partitions: an
    idle projector's gate must pause them again, or the consumer fetches every partition
    (long-polling the broker) while the gate believes it idle, until its next peek. And an
    event appended after the rebalance still wakes it (no peek can, here)."""
    monkeypatch.setattr(wake, "IDLE_AFTER", 0.3)
    monkeypatch.setattr(wake, "PEEK_EVERY_BACKGROUND", 600.0)
    stop = asyncio.Event()
    p = Projector(settings, pool)
    task = asyncio.create_task(p.run(stop))
    try:
        gate = await wait_until(lambda: _gate(p), timeout=60)
        await wait_until(lambda: idle(gate), timeout=30)
        await join_and_leave(settings, p.consumer, p.group_id)
        await assert_still_idle(gate)

        _, _, events = await writer.upload("gina", "g.bin", 10, chunks=0, complete=False)
        [md] = await publisher.send(events)
        began = time.monotonic()
        await p.wait_processed(md.topic, md.partition, md.offset, timeout=30)
        assert time.monotonic() - began < 5, "the event waited for a peek"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def _gate(p: Projector) -> wake.IdleGate | None:
    return p.gate
