"""The wire and stored shape of every event and command, pinned.

Each event's JSON `data` is its dataclass fields, in order, at its schema version; each
command's payload is its fields after the envelope. Refactoring the classes (shared bases,
moved modules) must leave these as they are: stored events are read back and other
processes decode what is published. What may change without a new schema version is an
addition that old data still decodes into: a new field with a default. Anything else (a
field dropped, renamed or reordered, a new required field) needs a new schema version and
an upcaster (domain/kernel.py). A new type may be added here to pin it too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING

from domain.kernel import Command, Event
from domain.registry import COMMANDS, EVENTS

# type: (schema version, the fields of `data` in order)
EVENT_SHAPES: dict[str, tuple[int, str]] = {
    "BucketCreated": (1, "name owner public description at"),
    "BucketDeleted": (1, "force at"),
    "BucketUpdated": (1, "public description at"),
    "FetchAttemptFailed": (1, "error retry_in at"),
    "FetchBytesAppended": (1, "offset pieces size at"),
    "FetchCancelled": (1, "at"),
    "FetchCompleted": (1, "sha256 size file_id at"),
    "FetchFailed": (1, "error details at"),
    "FetchPaused": (1, "at"),
    "FetchRequested": (1, "fetch_id owner url generation bucket key sha256 at"),
    "FetchResponseReceived": (
        1,
        "restart reason etag last_modified total content_type file_name accept_ranges at"
        " content_encoding",
    ),
    "FetchResumed": (1, "at"),
    "FetchRetried": (1, "at"),
    "FetchStarted": (1, "runner attempt at"),
    "FileCreated": (
        1,
        "file_id owner name size content_type sha256 manifest bucket metadata upload_id key at"
        " headers",
    ),
    "FileDeleted": (1, "at"),
    "FileReplaced": (
        1,
        "owner name size content_type sha256 manifest metadata upload_id at headers",
    ),
    "FileUpdated": (1, "name bucket metadata at"),
    "TaskCancelled": (1, "at"),
    "TaskCompleted": (1, "result_file_ids bytes_done at"),
    "TaskCreated": (1, "task_id owner task_type params priority items_total bytes_total at"),
    "TaskFailed": (1, "error at"),
    "TaskPaused": (1, "at"),
    "TaskProgressed": (1, "first results bytes_done at"),
    "TaskResumed": (1, "at"),
    "TaskStarted": (1, "worker attempt at"),
    "UploadAborted": (1, "at"),
    "UploadBytesAppended": (1, "offset size pieces at"),
    "UploadChunkStored": (1, "index offset size sha256 at"),
    "UploadCompleted": (1, "file_id sha256 size manifest at"),
    "UploadExpired": (1, "at"),
    "UploadFailed": (1, "reason at"),
    "UploadInitiated": (
        2,
        "upload_id owner file_name file_size chunk_size total_chunks mode partial parts manifest content_type sha256 bucket metadata key at"
        " headers",
    ),
    "UploadLengthDeclared": (1, "file_size at"),
}

# type: the payload's fields in order (after the envelope)
COMMAND_SHAPES: dict[str, str] = {
    "AbortUpload": "",
    "AppendBytes": "offset pieces",
    "AppendFetchBytes": "runner offset pieces",
    "CancelFetch": "",
    "CancelTask": "",
    "CompleteFetch": "runner sha256 size file_id",
    "CompleteTask": "result_file_ids bytes_done",
    "CompleteUpload": "file_id sha256",
    "CreateBucket": "public description",
    "CreateFile": "owner name size content_type sha256 manifest bucket metadata upload_id",
    "CreateTask": "owner task_type params priority items_total bytes_total",
    "DeclareLength": "file_size",
    "DeleteBucket": "force",
    "DeleteFile": "if_match",
    "ExpireUpload": "idle_before",
    "FailFetch": "runner error details",
    "FailTask": "error",
    "FailUpload": "reason",
    "InitiateUpload": "file_name file_size chunk_size content_type sha256 bucket metadata key mode partial parts manifest"
    " headers",
    "PauseFetch": "",
    "PauseTask": "",
    "PutObject": "owner bucket key size content_type sha256 manifest metadata upload_id"
    " if_none_match if_match headers",
    "RecordFetchAttemptError": "runner error retry_in",
    "RecordFetchResponse": "runner restart reason etag last_modified total content_type file_name"
    " accept_ranges content_encoding",
    "RecordProgress": "first results bytes_done",
    "RequestFetch": "owner url generation bucket key sha256",
    "ResumeFetch": "",
    "ResumeTask": "",
    "RetryFetch": "",
    "StartFetch": "runner",
    "StartTask": "worker",
    "StoreChunk": "index size sha256",
    "UpdateBucket": "public description",
    "UpdateFile": "name bucket metadata",
}


ENVELOPE = {f.name for f in dataclasses.fields(Command)}


def _drift(pinned: str, cls: type[Event] | type[Command]) -> list[str]:
    """What in `cls` breaks the pinned shape: old fields dropped or reordered, or a new
    field that data written before it cannot fill (no default)."""
    envelope = ENVELOPE if issubclass(cls, Command) else set()
    fields = [f for f in dataclasses.fields(cls) if f.name not in envelope]
    old = pinned.split()
    names = [f.name for f in fields]
    problems = [f"dropped {n}" for n in old if n not in names]
    if [n for n in names if n in old] != [n for n in old if n in names]:
        problems.append(f"reordered: {names}")
    for f in fields:
        if f.name not in old and f.default is MISSING and f.default_factory is MISSING:
            problems.append(f"new required field {f.name}")
    return problems


def test_every_event_keeps_its_stored_shape() -> None:
    # Stored events are never dropped: each pinned type is still known.
    assert set(EVENT_SHAPES) <= set(EVENTS)
    for name, (version, fields) in EVENT_SHAPES.items():
        cls = EVENTS[name][1]
        assert cls.schema_version == version, name
        assert _drift(fields, cls) == [], name


def test_every_command_keeps_its_wire_shape() -> None:
    # A command type may go (nothing stores commands); one still sent keeps its shape.
    for name, fields in COMMAND_SHAPES.items():
        if name in COMMANDS:
            assert _drift(fields, COMMANDS[name]) == [], name


def test_drift_is_caught() -> None:
    from domain.tasks.events import TaskCreated

    pinned = EVENT_SHAPES["TaskCreated"][1]
    assert _drift(pinned, TaskCreated) == []
    assert _drift(pinned + " later", TaskCreated) == ["dropped later"]
    assert _drift("owner task_id", TaskCreated)[0].startswith("reordered")
    assert _drift(pinned.replace(" owner", ""), TaskCreated) == ["new required field owner"]
