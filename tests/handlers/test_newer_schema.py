"""The handlers meet an upload event of a newer schema version than this code reads (a
rolling upgrade, or a rollback): they neither misread it nor drop its follow-up. The
event is left to be handled again (the partition rewound to it, after a back-off) until a
process that reads it runs; the batch lookup does not fail on it either. Such holds are
logged once per event type and version (not per event, nor per attempt) and counted in
`cairn_handler_events_held`, which goes back to 0 once the event is handled or its
follow-up command passes."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from bus.config.settings import Settings
from bus.store.eventstore import PostgresEventStore
from domain.errors import DomainError, NewerSchema
from domain.events import EventMeta, NewEvent, RecordedEvent
from domain.fetches.events import FetchFailed
from domain.kernel import Command
from domain.tasks.events import TaskFailed
from domain.uploads.commands import AbortUpload
from domain.uploads.events import UploadAborted, UploadCompleted
from handlers import fetcher, files_from_uploads, held, runner
from handlers.fetcher import Fetcher
from handlers.runner import Handlers
from handlers.tasks import worker as task_worker
from handlers.tasks.worker import TaskWorker

AT = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_newer_completion_is_retried_not_dropped_or_misread(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fresh logger, bound to the structlog configuration capture_logs edits (see
    # tests/api/test_errors.py).
    monkeypatch.setattr(held, "log", structlog.get_logger(held.__name__))
    uid = str(uuid.uuid4())
    recorded = await event_store.append(
        f"upload-{uid}",
        0,
        [
            NewEvent(
                "UploadCompleted",
                {"file_id": str(uuid.uuid4()), "at": AT.isoformat()},
                schema_version=UploadCompleted.schema_version + 1,
            )
        ],
        EventMeta(AT, owner="ann"),
    )
    newer = recorded[0]
    # The batch's lookup passes it by (left to the event's own handling)...
    ahead = await files_from_uploads.look_ahead([newer], event_store)
    assert ahead.completed == {}
    handlers = Handlers(settings, pool)
    try:
        # ... which answers "not handled": the runner rewinds the partition to it. No bus
        # is needed, none is used: nothing is sent on a misread event.
        with capture_logs() as logs:
            assert await handlers._handle(None, newer, ahead) is False  # type: ignore[arg-type]
            assert await handlers._handle(None, newer, ahead) is False  # type: ignore[arg-type]
    finally:
        await handlers.blobs.close()
    said = [e for e in logs if "newer schema version" in e["event"]]
    assert len(said) == 1  # logged once, not at every retry
    assert said[0]["stream_id"] == newer.stream_id and said[0]["event_type"] == "UploadCompleted"


def gauge(worker: str) -> float | None:
    return REGISTRY.get_sample_value("cairn_handler_events_held", {"worker": worker})


async def held_after(
    event_store: PostgresEventStore,
    stream_id: str,
    first: NewEvent,
    newer_type: str,
    newer_data: dict[str, object],
    known_version: int,
) -> None:
    """`stream_id`: `first`, then an event of `newer_type` one schema version newer than
    this code reads (`known_version`): where a worker of this version must wait."""
    await event_store.append(
        stream_id,
        0,
        [first, NewEvent(newer_type, newer_data, schema_version=known_version + 1)],
        EventMeta(AT, owner="ann"),
    )


async def newer_aborted(event_store: PostgresEventStore) -> RecordedEvent:
    """An UploadAborted one schema version newer than this code's, on a stream of its own."""
    [ev] = await event_store.append(
        f"upload-{uuid.uuid4()}",
        0,
        [
            NewEvent(
                "UploadAborted",
                {"at": AT.isoformat()},
                schema_version=UploadAborted.schema_version + 1,
            )
        ],
        EventMeta(AT, owner="ann"),
    )
    return ev


async def test_held_events_are_logged_once_per_type_and_version_and_counted_until_handled(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(held, "log", structlog.get_logger(held.__name__))
    first, second = await newer_aborted(event_store), await newer_aborted(event_store)
    handlers = Handlers(settings, pool)
    try:
        assert gauge("handlers") == 0
        with capture_logs() as logs:
            for _ in range(3):
                assert await handlers._handle(None, first, files_from_uploads.Ahead()) is False  # type: ignore[arg-type]
            assert gauge("handlers") == 1
            # Retried on a timer that backs off, not at every batch.
            assert not handlers.holds.due(first.id)
            # Another event of the same type and version: held too, not said again.
            assert await handlers._handle(None, second, files_from_uploads.Ahead()) is False  # type: ignore[arg-type]
            assert gauge("handlers") == 2
        said = [e for e in logs if "newer schema version" in e["event"]]
        assert len(said) == 1, logs
        assert said[0]["event_type"] == "UploadAborted"
        assert said[0]["stored_version"] == UploadAborted.schema_version + 1
        # A process of the new version runs: the events are read and handled (an abort
        # calls for no follow-up), and nothing is held any more.
        monkeypatch.setattr(UploadAborted, "schema_version", UploadAborted.schema_version + 1)
        assert await handlers._handle(None, first, files_from_uploads.Ahead()) is True  # type: ignore[arg-type]
        assert gauge("handlers") == 1
        assert await handlers._handle(None, second, files_from_uploads.Ahead()) is True  # type: ignore[arg-type]
        assert gauge("handlers") == 0
        assert handlers.holds.due(first.id)
    finally:
        await handlers.blobs.close()


class RefusingBus:
    """Stands for the actor host of the old version: it refuses the follow-up command with
    `upgrade_in_progress` (as its reply arrives: a DomainError rebuilt from the refusal)
    `refusals` times, then applies it."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.sent: list[Command] = []

    async def send(self, cmd: Command, **_: Any) -> None:
        self.sent.append(cmd)
        if len(self.sent) <= self.refusals:
            refusal = NewerSchema("UploadCompleted", 9, 1)
            raise DomainError.from_dict(refusal.to_dict())


async def test_a_follow_up_refused_for_an_upgrade_is_held_logged_once_and_counted(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(held, "log", structlog.get_logger(held.__name__))
    monkeypatch.setattr(runner, "log", structlog.get_logger(runner.__name__))
    [ev] = await event_store.append(
        f"upload-{uuid.uuid4()}",
        0,
        [NewEvent("UploadAborted", {"at": AT.isoformat()})],
        EventMeta(AT, owner="ann"),
    )
    follow_up = AbortUpload(aggregate_id=ev.aggregate_id, caller="ann", at=AT)

    async def command_for(*_: Any) -> Command:
        return follow_up

    monkeypatch.setattr(files_from_uploads, "command_for", command_for)
    handlers = Handlers(settings, pool)
    bus = RefusingBus(refusals=3)
    try:
        with capture_logs() as logs:
            for _ in range(3):
                assert await handlers._handle(bus, ev, files_from_uploads.Ahead()) is False  # type: ignore[arg-type]
                assert gauge("handlers") == 1
            assert await handlers._handle(bus, ev, files_from_uploads.Ahead()) is True  # type: ignore[arg-type]
        assert gauge("handlers") == 0
        assert bus.sent == [follow_up] * 4  # never dropped
    finally:
        await handlers.blobs.close()
    said = [e for e in logs if e["log_level"] == "warning"]
    assert len(said) == 1, logs  # once, not a warning per attempt
    assert "follow-up command deferred" in said[0]["event"]
    assert said[0]["code"] == "upgrade_in_progress" and said[0]["stored_version"] == 9


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_fetch_of_a_newer_version_is_given_back_logged_once_and_claimed_after_a_back_off(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before, each run ended with "fetch run ended" (one line per attempt) and the fetch,
    # given back, was claimed again at once: a loop as fast as the database answered.
    monkeypatch.setattr(held, "log", structlog.get_logger(held.__name__))
    monkeypatch.setattr(fetcher, "log", structlog.get_logger(fetcher.__name__))
    fid = str(uuid.uuid4())
    url = "http://example.com/a"
    await held_after(
        event_store,
        f"fetch-{fid}",
        NewEvent(
            "FetchRequested", {"fetch_id": fid, "owner": "ann", "url": url, "at": AT.isoformat()}
        ),
        "FetchFailed",
        {"error": "gone", "at": AT.isoformat()},
        FetchFailed.schema_version,
    )
    # The read model as the projector leaves it: the request applied, held at the newer
    # failure (so still PENDING, claimable).
    await pool.execute(
        "INSERT INTO readmodel.fetches (id, owner, url, status, created_at, updated_at,"
        " last_version) VALUES ($1, 'ann', $2, 'PENDING', $3, $3, 1)",
        uuid.UUID(fid),
        url,
        AT,
    )
    worker = Fetcher(settings, pool)
    clock = Clock()
    worker.holds = held.Holds("fetcher", clock=clock)
    try:
        assert gauge("fetcher") == 0
        with capture_logs() as logs:
            for attempt in range(3):
                assert await worker._claim(1) == [fid], attempt
                await worker._run(fid)
                assert gauge("fetcher") == 1
                # Not claimed again until its back-off is over: 1 s, then 2, then 4.
                clock.now += 2**attempt - 0.5
                assert await worker._claim(1) == [], attempt
                clock.now += 0.5
        said = [e for e in logs if e["log_level"] in ("info", "warning")]
        assert len(said) == 1, logs
        assert "newer schema version" in said[0]["event"]
        assert said[0]["fetch"] == fid and said[0]["event_type"] == "FetchFailed"
        assert await worker._claim(1) == [fid]
        # A worker of the new version: the fetch reads FAILED, nothing to run or hold.
        monkeypatch.setattr(FetchFailed, "schema_version", FetchFailed.schema_version + 1)
        await worker._run(fid)
        assert gauge("fetcher") == 0
    finally:
        await worker.blobs.close()


async def test_a_task_of_a_newer_version_waits_logged_once_and_counted(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: "task not started" at every attempt, one a second.
    monkeypatch.setattr(held, "log", structlog.get_logger(held.__name__))
    monkeypatch.setattr(task_worker, "log", structlog.get_logger(task_worker.__name__))
    tid = str(uuid.uuid4())
    created = {"task_id": tid, "owner": "ann", "task_type": "delete", "at": AT.isoformat()}
    await held_after(
        event_store,
        f"task-{tid}",
        NewEvent("TaskCreated", created),
        "TaskFailed",
        {"error": {"code": "x"}, "at": AT.isoformat()},
        TaskFailed.schema_version,
    )
    worker = TaskWorker(settings, pool)
    worker.bus = object()  # type: ignore[assignment]  # (nothing is sent on these paths)
    try:
        with capture_logs() as logs:
            for attempt in range(3):
                before = time.monotonic()
                await worker._run(tid)
                assert gauge("tasks") == 1
                # Not claimed again before 1 s, then 2, then 4.
                assert worker.skip[tid] >= before + 2**attempt
        said = [e for e in logs if e["log_level"] in ("info", "warning")]
        assert len(said) == 1, logs
        assert "newer schema version" in said[0]["event"] and said[0]["task"] == tid
        monkeypatch.setattr(TaskFailed, "schema_version", TaskFailed.schema_version + 1)
        await worker._run(tid)  # read now: FAILED, nothing to run
        assert gauge("tasks") == 0
    finally:
        await worker.blobs.close()
