"""The registry of aggregates, and the typed events' JSON: exactly what was always stored.

GOLDEN holds one `data` of every event type as the code before typed events wrote it (and
as rows in existing event stores hold it): each must decode, and the typed event must
encode back to the very same JSON, so neither the wire nor Postgres changes.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import orjson
import pytest

from domain import buckets, fetches, files, registry, tasks, uploads
from domain.commands import COMMANDS, command_from_dict, command_to_dict
from domain.kernel import AggregateSpec, Event
from domain.uploads.commands import UploadCommand

A, B = "a" * 64, "b" * 64
AT = "2026-01-02T03:04:05.678000+00:00"
GOLDEN: dict[str, tuple[int, dict[str, Any]]] = {
    "UploadInitiated": (
        2,
        {
            "upload_id": "u1",
            "owner": "alice",
            "file_name": "f.bin",
            "file_size": 25,
            "chunk_size": 10,
            "total_chunks": 3,
            "mode": "chunks",
            "partial": False,
            "parts": [],
            "manifest": [],
            "content_type": "application/octet-stream",
            "sha256": None,
            "bucket": "default",
            "metadata": {"k": "v"},
            "key": "k",
            "at": AT,
            "headers": {"content-encoding": "gzip"},
        },
    ),
    "UploadChunkStored": (1, {"index": 0, "offset": 0, "size": 10, "sha256": A, "at": AT}),
    "UploadBytesAppended": (
        1,
        {
            "offset": 0,
            "size": 7,
            "pieces": [{"sha256": A, "size": 3}, {"sha256": B, "size": 4}],
            "at": AT,
        },
    ),
    "UploadLengthDeclared": (1, {"file_size": 7, "at": AT}),
    "UploadCompleted": (
        1,
        {
            "file_id": "f1",
            "sha256": A,
            "size": 15,
            "manifest": [{"sha256": A, "size": 10}, {"sha256": B, "size": 5}],
            "at": AT,
        },
    ),
    "UploadAborted": (1, {"at": AT}),
    "UploadFailed": (1, {"reason": "r", "at": AT}),
    "UploadExpired": (1, {"at": AT}),
    "FileCreated": (
        1,
        {
            "file_id": "f1",
            "owner": "alice",
            "name": "n",
            "size": 7,
            "content_type": "c",
            "sha256": A,
            "manifest": [{"sha256": A, "size": 3}, {"sha256": B, "size": 4}],
            "bucket": "default",
            "metadata": {"a": "b"},
            "upload_id": "u1",
            "key": None,
            "at": AT,
            "headers": {"content-encoding": "gzip", "cache-control": "max-age=60"},
        },
    ),
    "FileReplaced": (
        1,
        {
            "owner": "alice",
            "name": "n",
            "size": 4,
            "content_type": "c",
            "sha256": B,
            "manifest": [{"sha256": B, "size": 4}],
            "metadata": {},
            "upload_id": None,
            "at": AT,
            "headers": {},
        },
    ),
    "FileDeleted": (1, {"at": AT}),
    "FileUpdated": (1, {"name": "n2", "bucket": "pics", "metadata": {"a": "c"}, "at": AT}),
    "FetchRequested": (
        1,
        {
            "fetch_id": "x1",
            "owner": "alice",
            "url": "https://example.com/m.bin",
            "generation": 0,
            "bucket": "default",
            "key": None,
            "sha256": A,
            "at": AT,
        },
    ),
    "FetchStarted": (1, {"runner": "host-1-ab", "attempt": 1, "at": AT}),
    "FetchResponseReceived": (
        1,
        {
            "restart": False,
            "reason": "",
            "etag": '"v1"',
            "last_modified": None,
            "total": 7,
            "content_type": "application/octet-stream",
            "file_name": "m.bin",
            "accept_ranges": True,
            "at": AT,
            "content_encoding": None,  # added later: events stored before lack it
        },
    ),
    "FetchBytesAppended": (
        1,
        {
            "offset": 0,
            "pieces": [{"sha256": A, "size": 3}, {"sha256": B, "size": 4}],
            "size": 7,
            "at": AT,
        },
    ),
    "FetchSegmented": (1, {"plan": "p1", "bounds": [[0, 3], [3, 7]], "at": AT}),
    "FetchSegmentBytesAppended": (
        1,
        {
            "segment": 1,
            "offset": 3,
            "pieces": [{"sha256": B, "size": 4}],
            "size": 4,
            "at": AT,
        },
    ),
    "FetchAttemptFailed": (1, {"error": "reset", "retry_in": 1.5, "at": AT}),
    "FetchCompleted": (1, {"sha256": A, "size": 7, "file_id": "f1", "at": AT}),
    "FetchFailed": (1, {"error": "404", "details": {"status": 404}, "at": AT}),
    "FetchPaused": (1, {"at": AT}),
    "FetchResumed": (1, {"at": AT}),
    "FetchCancelled": (1, {"at": AT}),
    "FetchRetried": (1, {"at": AT}),
    "BucketCreated": (
        1,
        {"name": "photos", "owner": "alice", "public": True, "description": "d", "at": AT},
    ),
    "BucketUpdated": (1, {"public": False, "description": "", "at": AT}),
    "BucketDeleted": (1, {"force": True, "at": AT}),
    "TaskCreated": (
        1,
        {
            "task_id": "t1",
            "owner": "alice",
            "task_type": "copy",
            "params": {"files": ["f1"], "to": {"bucket": "b", "prefix": "p/"}},
            "priority": 80,
            "items_total": 1,
            "bytes_total": 0,
            "at": AT,
        },
    ),
    "TaskStarted": (1, {"worker": "h:1:ab", "attempt": 2, "at": AT}),
    "TaskProgressed": (
        1,
        {
            "first": 0,
            "results": [{"index": 0, "source": "f1", "result": "f2"}],
            "bytes_done": 3,
            "items_total": 4,
            "bytes_total": 12,
            "at": AT,
        },
    ),
    "TaskCompleted": (1, {"result_file_ids": ["f3"], "bytes_done": 3, "at": AT}),
    "TaskFailed": (1, {"error": {"code": "quota_exceeded", "details": {"quota": 1}}, "at": AT}),
    "TaskPaused": (1, {"at": AT}),
    "TaskResumed": (1, {"at": AT}),
    "TaskCancelled": (1, {"at": AT}),
}


def test_every_event_type_is_registered_once_with_its_aggregate() -> None:
    assert set(registry.EVENTS) == set(GOLDEN)
    for name, spec in registry.AGGREGATES.items():
        for cls in spec.events:
            assert registry.EVENTS[cls.type] == (name, cls)


@pytest.mark.parametrize("event_type", sorted(GOLDEN))
def test_stored_json_decodes_and_encodes_back_exactly(event_type: str) -> None:
    version, data = GOLDEN[event_type]
    _, cls = registry.EVENTS[event_type]
    assert cls.schema_version == version
    wire = orjson.loads(orjson.dumps(data))  # as read back from jsonb or Kafka
    typed = cls.decode(wire)
    assert typed.data == data
    assert orjson.loads(orjson.dumps(typed.data)) == data
    assert isinstance(typed.at, datetime) and typed.at.utcoffset() is not None


def test_fields_missing_from_older_events_take_their_documented_defaults() -> None:
    old = {k: v for k, v in GOLDEN["UploadInitiated"][1].items()}
    for k in ("mode", "partial", "parts", "manifest", "content_type", "bucket", "metadata"):
        del old[k]
    typed = uploads.AGGREGATE.event_types["UploadInitiated"].decode(old)
    assert typed.data == GOLDEN["UploadInitiated"][1] | {"metadata": {}}


def test_a_fetch_response_stored_before_content_encoding_decodes_without_one() -> None:
    old = {k: v for k, v in GOLDEN["FetchResponseReceived"][1].items()}
    del old["content_encoding"]
    typed = fetches.AGGREGATE.event_types["FetchResponseReceived"].decode(old)
    assert typed.data == GOLDEN["FetchResponseReceived"][1]


def test_an_upload_stored_before_headers_decodes_without_them() -> None:
    old = {k: v for k, v in GOLDEN["UploadInitiated"][1].items() if k != "headers"}
    typed = uploads.AGGREGATE.event_types["UploadInitiated"].decode(old)
    assert typed.data == old | {"headers": {}}


@pytest.mark.parametrize("event_type", ["FileCreated", "FileReplaced"])
def test_a_file_version_stored_before_headers_decodes_without_them(event_type: str) -> None:
    old = {k: v for k, v in GOLDEN[event_type][1].items() if k != "headers"}
    typed = files.AGGREGATE.event_types[event_type].decode(old)
    assert typed.data == old | {"headers": {}}


def test_a_checkpoint_stored_before_it_could_carry_totals_leaves_them_unchanged() -> None:
    old = {k: v for k, v in GOLDEN["TaskProgressed"][1].items() if not k.endswith("_total")}
    typed = tasks.AGGREGATE.event_types["TaskProgressed"].decode(old)
    assert typed.data == old | {"items_total": None, "bytes_total": None}


def test_malformed_data_is_refused_not_guessed() -> None:
    _, cls = registry.EVENTS["UploadChunkStored"]
    with pytest.raises(msgspec.ValidationError, match="size"):
        cls.decode({"index": 0, "offset": 0, "sha256": A, "at": AT})  # no size
    with pytest.raises(msgspec.ValidationError, match="size"):
        cls.decode({"index": 0, "offset": 0, "size": True, "sha256": A, "at": AT})


def test_decode_upcasts_and_skips_unknown_types() -> None:
    class Stored:
        def __init__(self, type_: str, schema_version: int, data: dict[str, Any]) -> None:
            self.type, self.schema_version, self.data = type_, schema_version, data

    v1 = {k: v for k, v in GOLDEN["UploadInitiated"][1].items() if k != "metadata"}
    v1["filename"] = v1.pop("file_name")
    typed = registry.decode(Stored("UploadInitiated", 1, v1))
    assert typed is not None and typed.data == GOLDEN["UploadInitiated"][1] | {"metadata": {}}
    assert registry.decode(Stored("SomethingNewer", 1, {})) is None


def test_stream_ids_prefixes_and_command_topics_derive_from_the_registry() -> None:
    assert dict(registry.STREAM_PREFIXES) == {
        "upload": "uploads",
        "file": "files",
        "fetch": "fetches",
        "task": "tasks",
        "bucket": "buckets",
    }
    assert registry.COMMAND_AGGREGATES == ("uploads", "files", "fetches", "buckets", "tasks")
    assert registry.stream_id_for("uploads", "x-1") == "upload-x-1"
    assert registry.aggregate_of("file-x-1") == "files"
    # every registered aggregate now takes commands: none is reserved (topic only) any more
    assert all(spec.takes_commands for spec in registry.AGGREGATES.values())


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_every_command_round_trips_its_wire_form_and_names_its_stream() -> None:
    assert set(COMMANDS) == {
        c.type for s in (uploads, files, fetches, buckets, tasks) for c in s.AGGREGATE.commands
    }
    for cls in COMMANDS.values():
        required = {
            f.name: _sample(f.type)
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        cmd = cls(**{**required, "aggregate_id": "id-1", "caller": "alice", "at": T0})
        back = command_from_dict(orjson.loads(orjson.dumps(command_to_dict(cmd))))
        assert back == cmd
        assert back.stream_id == registry.stream_id_for(cls.aggregate, "id-1")


def _sample(annotation: Any) -> Any:
    text = str(annotation)
    if "datetime" in text:
        return T0
    if "int" in text:
        return 1
    if "list" in text:
        return []
    return "s"


def test_a_spec_refuses_commands_of_another_aggregate() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Stray(UploadCommand):
        type: ClassVar[str] = "Stray"

    with pytest.raises(ValueError, match="Stray"):
        AggregateSpec(name="files", stream_prefix="file", commands=(Stray,))


def test_adding_an_aggregate_is_one_spec() -> None:
    """What a new aggregate brings is enough for folding and deciding: no other table."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Pinged(Event):
        type: ClassVar[str] = "Pinged"
        n: int

    spec: AggregateSpec[int] = AggregateSpec(
        name="pings",
        stream_prefix="ping",
        events=(Pinged,),
        evolve=lambda state, ev: (state or 0) + ev.n if isinstance(ev, Pinged) else state,
    )
    stored = [Pinged(n=2), Pinged(n=3)]  # typed events satisfy StoredEvent as well
    assert spec.fold(stored) == 5
    assert spec.stream_id("p1") == "ping-p1"
