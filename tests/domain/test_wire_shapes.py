"""The wire and stored shape of every event and command, pinned.

Each event's JSON `data` is its dataclass fields, in order, at its schema version; each
command's payload is its fields after the envelope. Refactoring the classes (shared bases,
moved modules) must leave these exactly as they are: stored events are read back and
other processes decode what is published. A changed event gets a new schema version and an
upcaster (domain/kernel.py) instead; a new type may be added here to pin it too.
"""

from __future__ import annotations

import dataclasses

from domain.kernel import Command
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
        "restart reason etag last_modified total content_type file_name accept_ranges at",
    ),
    "FetchResumed": (1, "at"),
    "FetchRetried": (1, "at"),
    "FetchStarted": (1, "runner attempt at"),
    "FileCreated": (
        1,
        "file_id owner name size content_type sha256 manifest bucket metadata upload_id at",
    ),
    "FileDeleted": (1, "at"),
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
        "upload_id owner file_name file_size chunk_size total_chunks mode partial parts manifest content_type sha256 bucket metadata at",
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
    "DeleteFile": "",
    "ExpireUpload": "idle_before",
    "FailFetch": "runner error details",
    "FailTask": "error",
    "FailUpload": "reason",
    "InitiateUpload": "file_name file_size chunk_size content_type sha256 bucket metadata mode partial parts manifest",
    "PauseFetch": "",
    "PauseTask": "",
    "RecordFetchAttemptError": "runner error retry_in",
    "RecordFetchResponse": "runner restart reason etag last_modified total content_type file_name accept_ranges",
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


def test_every_event_keeps_its_stored_shape() -> None:
    # Stored events are never dropped: each pinned type is still known, in the same shape.
    got = {
        name: (cls.schema_version, " ".join(f.name for f in dataclasses.fields(cls)))
        for name, (_, cls) in EVENTS.items()
        if name in EVENT_SHAPES
    }
    assert got == EVENT_SHAPES


def test_every_command_keeps_its_wire_shape() -> None:
    # Types added since are not pinned here (nothing in flight predates them).
    envelope = {f.name for f in dataclasses.fields(Command)}
    got = {
        name: " ".join(f.name for f in dataclasses.fields(cls) if f.name not in envelope)
        for name, cls in COMMANDS.items()
        if name in COMMAND_SHAPES
    }
    assert got == {k: v for k, v in COMMAND_SHAPES.items() if k in COMMANDS}
