"""The handlers meet an upload event of a newer schema version than this code reads (a
rolling upgrade, or a rollback): they neither misread it nor drop its follow-up. The
event is left to be handled again (the partition rewound to it, after a back-off) until a
process that reads it runs; the batch lookup does not fail on it either."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
import structlog
from structlog.testing import capture_logs

from bus.config.settings import Settings
from bus.store.eventstore import PostgresEventStore
from domain.events import EventMeta, NewEvent
from domain.uploads.events import UploadCompleted
from handlers import files_from_uploads, runner
from handlers.runner import Handlers

AT = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_newer_completion_is_retried_not_dropped_or_misread(
    settings: Settings,
    pool: asyncpg.Pool,
    event_store: PostgresEventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fresh logger, bound to the structlog configuration capture_logs edits (see
    # tests/api/test_errors.py).
    monkeypatch.setattr(runner, "log", structlog.get_logger(runner.__name__))
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
