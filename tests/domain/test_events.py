"""The upcaster chain and the event envelope, in pure form."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from domain.events import (
    RecordedEvent,
    aggregate_of,
    stream_id_for,
    upcast,
    upcast_recorded,
)
from domain.kernel import JSON, Event
from domain.registry import AGGREGATES, EVENTS
from domain.uploads.events import UploadInitiated

V1_INITIATED = {
    "upload_id": "u-1",
    "owner": "alice",
    "filename": "holiday.jpg",
    "file_size": 25,
    "chunk_size": 10,
    "total_chunks": 3,
    "content_type": "image/jpeg",
    "sha256": None,
    "bucket": "default",
    "at": "2025-06-01T10:00:00+00:00",
}


def test_upload_initiated_v1_upcasts_to_v2() -> None:
    original = copy.deepcopy(V1_INITIATED)
    version, data = upcast("UploadInitiated", 1, V1_INITIATED)
    assert version == 2
    assert data["file_name"] == "holiday.jpg"
    assert "filename" not in data
    assert data["metadata"] == {}
    # Everything else is carried over untouched.
    rest = {k: v for k, v in V1_INITIATED.items() if k != "filename"}
    assert {k: v for k, v in data.items() if k not in ("file_name", "metadata")} == rest
    assert V1_INITIATED == original  # the stored data is not mutated


def test_upcast_v1_result_folds_into_an_upload() -> None:
    _, data = upcast("UploadInitiated", 1, V1_INITIATED)
    state = AGGREGATES["uploads"].evolve(None, UploadInitiated.decode(data))
    assert state is not None
    assert state.file_name == "holiday.jpg"
    assert state.metadata == {}
    assert state.total_chunks == 3


def test_current_version_is_returned_unchanged() -> None:
    data = {"upload_id": "u", "file_name": "a", "metadata": {"k": "v"}}
    version, out = upcast("UploadInitiated", 2, data)
    assert version == 2
    assert out is data
    ev = _recorded("UploadInitiated", 2, data)
    assert upcast_recorded(ev) is ev


def test_unregistered_event_types_pass_through() -> None:
    data = {"x": 1}
    assert upcast("NeverRegistered", 1, data) == (1, data)
    assert upcast("NeverRegistered", 7, data) == (7, data)


def _with_chain(target: int, steps: dict[int, Any]) -> type[Event]:
    """An event type at schema version `target` with upcasters `steps` (never registered:
    upcasting is a property of the class, so nothing leaks to other tests)."""
    return type(
        "Chained", (Event,), {"type": "Chained", "schema_version": target, "upcasters": steps}
    )


def test_chain_gap_raises_lookup_error() -> None:
    def one_to_two(d: JSON) -> JSON:
        return {**d, "two": True}

    gappy = _with_chain(3, {1: one_to_two})
    with pytest.raises(LookupError, match="Chained v2"):
        gappy.upcast(1, {})
    with pytest.raises(LookupError):
        gappy.upcast(2, {})
    # The registered step alone is fine once the target no longer needs the missing one.
    assert _with_chain(2, {1: one_to_two}).upcast(1, {"a": 1}) == (2, {"a": 1, "two": True})


def test_chain_runs_every_step_in_order() -> None:
    steps = {v: (lambda d, v=v: {**d, "steps": [*d.get("steps", []), v]}) for v in (1, 2, 3)}
    chained = _with_chain(4, steps)
    assert chained.upcast(1, {}) == (4, {"steps": [1, 2, 3]})
    assert chained.upcast(3, {}) == (4, {"steps": [3]})
    assert chained.upcast(4, {}) == (4, {})
    assert chained.upcast(2, {"keep": "me"}) == (4, {"keep": "me", "steps": [2, 3]})


def test_registry_holds_current_versions() -> None:
    assert "Chained" not in EVENTS
    assert EVENTS["UploadInitiated"] == ("uploads", UploadInitiated)
    assert UploadInitiated.schema_version == 2


def _recorded(type_: str, schema_version: int, data: JSON, **kw: Any) -> RecordedEvent:
    base: dict[str, Any] = {
        "id": "6a4f1c2e-0000-4000-8000-000000000001",
        "stream_id": "upload-u-1",
        "version": 1,
        "position": 41,
        "type": type_,
        "schema_version": schema_version,
        "data": data,
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "owner": "alice",
        "correlation_id": "corr",
        "causation_id": "cause",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    base.update(kw)
    return RecordedEvent(**base)


@pytest.mark.parametrize(
    "ev",
    [
        _recorded(
            "UploadChunkStored", 1, {"index": 0, "offset": 0, "size": 10, "sha256": "a" * 64}
        ),
        _recorded("UploadInitiated", 2, {"file_name": "x", "metadata": {"k": "v"}}),
        _recorded(
            "FileDeleted",
            1,
            {"at": "2026-01-01T00:00:00+00:00"},
            stream_id="file-f-1",
            owner=None,
            correlation_id=None,
            causation_id=None,
            traceparent=None,
            occurred_at=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-7))),
        ),
    ],
)
def test_envelope_round_trip(ev: RecordedEvent) -> None:
    env = ev.envelope()
    assert "traceparent" not in env  # it travels as a Kafka header
    wire = orjson.loads(orjson.dumps(env))
    back = RecordedEvent.from_envelope(wire, traceparent=ev.traceparent)
    assert back == ev
    assert back.occurred_at.utcoffset() == ev.occurred_at.utcoffset()
    assert RecordedEvent.from_envelope(wire).traceparent is None


def test_from_envelope_upcasts_old_schema_versions() -> None:
    old = _recorded("UploadInitiated", 1, dict(V1_INITIATED))
    back = RecordedEvent.from_envelope(orjson.loads(orjson.dumps(old.envelope())))
    assert back.schema_version == 2
    assert back.data["file_name"] == "holiday.jpg"
    assert back.data["metadata"] == {}
    assert "filename" not in back.data
    state = AGGREGATES["uploads"].fold([back])
    assert state.file_name == "holiday.jpg"


def test_aggregate_naming() -> None:
    ev = _recorded("UploadInitiated", 2, {}, stream_id="upload-6a4f-1c2e")
    assert ev.aggregate == "uploads"
    assert ev.aggregate_id == "6a4f-1c2e"
    for name in ("uploads", "files", "fetches", "tasks", "buckets"):
        sid = stream_id_for(name, "a-b-c")
        assert aggregate_of(sid) == name
        assert sid.endswith("-a-b-c")
    with pytest.raises(ValueError):
        stream_id_for("nope", "x")
