"""An event of a known type stored at a schema version NEWER than this code's class (written
by a newer deployment during a rolling upgrade, or before a rollback): typed reading refuses
it with NewerSchema instead of reading its fields as if they were the current version's;
passing it on untyped (the relay, live feeds) leaves it exactly as stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from domain import registry
from domain.errors import DomainError, NewerSchema, Unavailable
from domain.events import RecordedEvent, upcast, upcast_recorded
from domain.kernel import JSON, Event
from domain.uploads.events import UploadChunkStored, UploadInitiated

AT = "2026-01-02T03:04:05+00:00"
INITIATED = {
    "upload_id": "u-1",
    "owner": "alice",
    "file_name": "a.bin",
    "file_size": 25,
    "chunk_size": 10,
    "total_chunks": 3,
    "content_type": "application/octet-stream",
    "sha256": None,
    "bucket": "default",
    "metadata": {},
    "at": AT,
}
# What a newer deployment might write as UploadChunkStored: same field names, a changed
# meaning (here: `size` in KiB). Decoded as the current version, it would "fit".
NEWER_CHUNK = {"index": 0, "offset": 0, "size": 1, "sha256": "a" * 64, "at": AT}


def _recorded(type_: str, schema_version: int, data: JSON, version: int = 1) -> RecordedEvent:
    return RecordedEvent(
        id=f"6a4f1c2e-0000-4000-8000-00000000000{version}",
        stream_id="upload-u-1",
        version=version,
        position=40 + version,
        type=type_,
        schema_version=schema_version,
        data=data,
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        owner="alice",
    )


def _chained(target: int) -> type[Event]:
    return type("Chained", (Event,), {"type": "Chained", "schema_version": target})


def test_upcast_from_a_newer_version_raises_newer_schema() -> None:
    cls = _chained(2)
    with pytest.raises(NewerSchema) as caught:
        cls.upcast(3, {"a": 1})
    e = caught.value
    assert (e.event_type, e.stored_version, e.known_version) == ("Chained", 3, 2)
    # The current version and older ones are unaffected.
    assert cls.upcast(2, {"a": 1}) == (2, {"a": 1})


def test_newer_schema_is_a_retryable_refusal_that_survives_a_reply() -> None:
    e = NewerSchema("UploadChunkStored", 2, 1)
    assert isinstance(e, Unavailable) and isinstance(e, DomainError)
    assert e.code == "upgrade_in_progress"
    assert e.details == {
        "event_type": "UploadChunkStored",
        "stored_version": 2,
        "known_version": 1,
    }
    assert "newer" in e.message
    back = DomainError.from_dict(orjson.loads(orjson.dumps(e.to_dict())))
    assert isinstance(back, Unavailable)
    assert (back.code, back.details) == (e.code, e.details)


def test_registry_names_a_newer_event() -> None:
    current = UploadChunkStored.schema_version
    assert registry.newer_schema("UploadChunkStored", current) is None
    assert registry.newer_schema("UploadChunkStored", current - 1) is None
    assert registry.newer_schema("NeverRegistered", 99) is None  # unknown types: skipped
    found = registry.newer_schema("UploadChunkStored", current + 1)
    assert isinstance(found, NewerSchema)
    assert (found.stored_version, found.known_version) == (current + 1, current)
    with pytest.raises(NewerSchema):
        registry.require_known(_recorded("UploadChunkStored", current + 1, NEWER_CHUNK))
    registry.require_known(_recorded("UploadChunkStored", current, NEWER_CHUNK))  # no raise


def test_typed_reading_of_a_newer_event_raises_instead_of_misreading() -> None:
    newer = _recorded("UploadChunkStored", UploadChunkStored.schema_version + 1, NEWER_CHUNK, 2)
    with pytest.raises(NewerSchema):
        registry.decode(newer)
    with pytest.raises(NewerSchema):
        _ = newer.payload
    with pytest.raises(NewerSchema):
        upcast("UploadChunkStored", newer.schema_version, newer.data)
    # Folding a stream that holds it refuses too: no state decided on a misread event.
    history = [_recorded("UploadInitiated", UploadInitiated.schema_version, INITIATED), newer]
    with pytest.raises(NewerSchema):
        registry.AGGREGATES["uploads"].fold(history)
    with pytest.raises(NewerSchema):
        registry.AGGREGATES["uploads"].fold(iter(history))


def test_fold_without_evolve_many_refuses_too() -> None:
    spec = registry.AGGREGATES["files"]
    assert spec.evolve_many is None  # the other branch of `fold`
    newer = _recorded("FileDeleted", 99, {"at": AT})
    newer = RecordedEvent(**{**newer.__dict__, "stream_id": "file-f-1"})
    with pytest.raises(NewerSchema):
        spec.fold([newer])


def test_untyped_passing_on_leaves_a_newer_event_as_stored() -> None:
    """What the event store's reads (and so the relay and the live feeds) do: upcast the
    older, leave the newer exactly as written, for a reader that knows its version."""
    newer = _recorded("UploadChunkStored", UploadChunkStored.schema_version + 1, NEWER_CHUNK)
    assert upcast_recorded(newer) is newer
    wire = orjson.loads(orjson.dumps(newer.envelope()))
    assert wire["schema_version"] == newer.schema_version
    back = RecordedEvent.from_envelope(wire)
    assert back == newer


def test_an_unknown_type_still_folds_as_skipped() -> None:
    """Unchanged: a type this code has never heard of is not misread, it is not read."""
    history: list[Any] = [
        _recorded("UploadInitiated", UploadInitiated.schema_version, INITIATED),
        _recorded("SomethingNewer", 1, {}, 2),
    ]
    state = registry.AGGREGATES["uploads"].fold(history)
    assert state is not None and state.file_name == "a.bin"


def test_the_refusal_names_the_stream_and_its_recorded_owner() -> None:
    """So that an adapter can answer someone else's stream as a missing one (404)."""
    newer = _recorded("UploadChunkStored", UploadChunkStored.schema_version + 1, NEWER_CHUNK)
    with pytest.raises(NewerSchema) as caught:
        registry.AGGREGATES["uploads"].fold([newer])
    assert (caught.value.stream_id, caught.value.owner) == ("upload-u-1", "alice")
    assert "owner" not in caught.value.details  # never told to the caller
