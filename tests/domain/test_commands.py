"""Commands and domain errors survive the trip over the bus (dict -> JSON -> dict)."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from domain.commands import (
    COMMANDS,
    AbortUpload,
    AppendBytes,
    Command,
    CompleteUpload,
    CreateBucket,
    CreateFile,
    DeclareLength,
    DeleteBucket,
    DeleteFile,
    ExpireUpload,
    FailUpload,
    InitiateUpload,
    PutObject,
    StoreChunk,
    UpdateBucket,
    UpdateFile,
    command_from_dict,
    command_to_dict,
)
from domain.errors import Conflict, DomainError, Gone, InvalidInput, NotFound, Unprocessable
from domain.fetches.commands import (
    AppendFetchBytes,
    AppendFetchSegmentBytes,
    CancelFetch,
    CompleteFetch,
    FailFetch,
    PauseFetch,
    PlanFetchSegments,
    RecordFetchAttemptError,
    RecordFetchResponse,
    RequestFetch,
    ResumeFetch,
    RetryFetch,
    StartFetch,
)
from domain.tasks.commands import (
    CancelTask,
    CompleteTask,
    CreateTask,
    FailTask,
    PauseTask,
    RecordProgress,
    ResumeTask,
    StartTask,
)

AT = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
ENV: dict[str, Any] = {
    "aggregate_id": "id-1",
    "caller": "alice",
    "at": AT,
    "admin": True,
    "command_id": "cmd-9",
}
H = hashlib.sha256(b"x").hexdigest()

SAMPLES: dict[str, Command] = {
    "AppendBytes": AppendBytes(
        **ENV, offset=1 << 33, pieces=[{"sha256": H, "size": 1 << 20}, {"sha256": H, "size": 7}]
    ),
    "DeclareLength": DeclareLength(**ENV, file_size=(1 << 33) + 5),
    "InitiateUpload": InitiateUpload(
        **ENV,
        file_name="résumé.pdf",
        file_size=5 * 1024**3,
        chunk_size=8 * 1024**2,
        content_type="application/pdf",
        sha256=H,
        bucket="docs",
        metadata={"a": "1", "b": "2"},
    ),
    "StoreChunk": StoreChunk(**ENV, index=7, size=123, sha256=H),
    "CompleteUpload": CompleteUpload(**ENV, file_id="file-1", sha256=H),
    "AbortUpload": AbortUpload(**ENV),
    "FailUpload": FailUpload(**ENV, reason="disk full"),
    "ExpireUpload": ExpireUpload(**ENV),
    "PutObject": PutObject(
        **ENV,
        owner="alice",
        bucket="photos",
        key="2026/../a b.jpg",
        size=7,
        content_type="image/jpeg",
        sha256=H,
        manifest=[{"sha256": H, "size": 7}],
        metadata={"k": "v"},
        if_none_match=True,
        if_match=None,
    ),
    "CreateFile": CreateFile(
        **ENV,
        owner="alice",
        name="a.bin",
        size=3,
        content_type="application/octet-stream",
        sha256=H,
        manifest=[{"sha256": H, "size": 1}, {"sha256": H, "size": 2}],
        metadata={"k": "v"},
        upload_id="up-1",
    ),
    "DeleteFile": DeleteFile(**ENV),
    "RequestFetch": RequestFetch(
        **ENV, owner="alice", url="https://example.com/m.bin", generation=2, sha256=H, key="a/b"
    ),
    "StartFetch": StartFetch(**ENV, runner="host-1-ab"),
    "RecordFetchResponse": RecordFetchResponse(
        **ENV, runner="r", restart=True, reason="200", etag='"v1"', total=1 << 40
    ),
    "AppendFetchBytes": AppendFetchBytes(
        **ENV, runner="r", offset=1 << 33, pieces=[{"sha256": H, "size": 9}]
    ),
    "PlanFetchSegments": PlanFetchSegments(
        **ENV, runner="r", plan="p", bounds=[[0, 1 << 33], [1 << 33, 1 << 34]]
    ),
    "AppendFetchSegmentBytes": AppendFetchSegmentBytes(
        **ENV, runner="r", plan="p", segment=1, offset=1 << 33, pieces=[{"sha256": H, "size": 9}]
    ),
    "RecordFetchAttemptError": RecordFetchAttemptError(
        **ENV, runner="r", error="reset", retry_in=1.5
    ),
    "CompleteFetch": CompleteFetch(**ENV, runner="r", sha256=H, size=9, file_id="file-2"),
    "FailFetch": FailFetch(**ENV, runner="r", error="404", details={"status": 404}),
    "PauseFetch": PauseFetch(**ENV),
    "ResumeFetch": ResumeFetch(**ENV),
    "CancelFetch": CancelFetch(**ENV),
    "RetryFetch": RetryFetch(**ENV),
    "CreateBucket": CreateBucket(**ENV, public=True, description="cats"),
    "UpdateBucket": UpdateBucket(**ENV, public=None, description="dogs"),
    "DeleteBucket": DeleteBucket(**ENV, force=True),
    "UpdateFile": UpdateFile(**ENV, name="b.txt", bucket=None, metadata={"k": "v"}),
    "CreateTask": CreateTask(
        **ENV,
        owner="alice",
        task_type="compress",
        params={"files": ["f-1", "f-2"], "output": {"file_name": "a.zip", "bucket": "b"}},
        priority=90,
        items_total=2,
        bytes_total=1 << 33,
    ),
    "StartTask": StartTask(**ENV, worker="host:1:ab"),
    "RecordProgress": RecordProgress(
        **ENV, first=3, results=[{"index": 3, "source": "f-1", "result": "f-9"}], bytes_done=7
    ),
    "CompleteTask": CompleteTask(**ENV, result_file_ids=["f-9"], bytes_done=1 << 33),
    "FailTask": FailTask(**ENV, error={"code": "quota_exceeded", "details": {"quota": 1}}),
    "PauseTask": PauseTask(**ENV),
    "ResumeTask": ResumeTask(**ENV),
    "CancelTask": CancelTask(**ENV),
}


def test_every_command_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(COMMANDS)
    for name, cmd in SAMPLES.items():
        assert type(cmd) is COMMANDS[name]
        assert cmd.type == name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_round_trip(name: str) -> None:
    cmd = SAMPLES[name]
    d = command_to_dict(cmd)
    assert d["type"] == name
    assert d["aggregate"] == cmd.aggregate
    back = command_from_dict(d)
    assert type(back) is type(cmd)
    assert back == cmd


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_round_trip_through_json(name: str) -> None:
    cmd = SAMPLES[name]
    wire = orjson.loads(orjson.dumps(command_to_dict(cmd)))
    back = command_from_dict(wire)
    assert back == cmd
    assert back.at.utcoffset() == timedelta(0)
    assert back.stream_id == cmd.stream_id


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_payload_holds_exactly_the_command_specific_fields(name: str) -> None:
    cmd = SAMPLES[name]
    envelope = {f.name for f in dataclasses.fields(Command)}
    own = {f.name for f in dataclasses.fields(cmd)} - envelope
    assert set(command_to_dict(cmd)["data"]) == own


def test_defaults_survive_the_round_trip() -> None:
    cmd = InitiateUpload(
        aggregate_id="u", caller="bob", at=AT, file_name="f", file_size=0, chunk_size=1
    )
    back = command_from_dict(orjson.loads(orjson.dumps(command_to_dict(cmd))))
    assert back == cmd
    assert back.admin is False and back.command_id == ""
    assert back.sha256 is None and back.metadata == {}


def test_non_utc_timestamp_round_trips() -> None:
    at = datetime(2026, 1, 1, 1, 2, 3, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    cmd = AbortUpload(aggregate_id="u", caller="bob", at=at)
    back = command_from_dict(orjson.loads(orjson.dumps(command_to_dict(cmd))))
    assert back.at == at and back.at.utcoffset() == at.utcoffset()


def test_stream_ids() -> None:
    assert SAMPLES["StoreChunk"].stream_id == "upload-id-1"
    assert SAMPLES["DeleteFile"].stream_id == "file-id-1"


@pytest.mark.parametrize("type_", ["NoSuchCommand", "", None, "Command"])
def test_unknown_type_is_a_value_error(type_: object) -> None:
    d = command_to_dict(SAMPLES["AbortUpload"])
    d["type"] = type_
    with pytest.raises(ValueError, match="unknown command type"):
        command_from_dict(d)


def test_missing_type_is_a_value_error() -> None:
    d = command_to_dict(SAMPLES["AbortUpload"])
    del d["type"]
    with pytest.raises(ValueError):
        command_from_dict(d)


# ---- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [InvalidInput, NotFound, Conflict, Unprocessable, Gone])
def test_domain_error_round_trip_preserves_subclass(cls: type[DomainError]) -> None:
    err = cls("some_code", "a message", {"missing_chunks": [1, 2], "id": "x"})
    wire = orjson.loads(orjson.dumps(err.to_dict()))
    back = DomainError.from_dict(wire)
    assert type(back) is cls
    assert back.kind == err.kind
    assert back.code == "some_code"
    assert back.message == "a message" == str(back)
    assert back.details == {"missing_chunks": [1, 2], "id": "x"}


def test_error_kinds_are_distinct() -> None:
    kinds = [c.kind for c in (InvalidInput, NotFound, Conflict, Unprocessable, Gone)]
    assert len(set(kinds)) == len(kinds)


def test_domain_error_without_details() -> None:
    back = DomainError.from_dict(NotFound("c", "m").to_dict())
    assert type(back) is NotFound
    assert back.details == {}


def test_unknown_error_kind_falls_back_to_the_base_class() -> None:
    back = DomainError.from_dict({"kind": "teapot", "code": "c", "message": "m"})
    assert type(back) is DomainError
    assert (back.code, back.message, back.details) == ("c", "m", {})
