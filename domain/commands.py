"""Commands as they travel on the bus: the JSON form, and every aggregate's command types.

A command carries everything `decide` needs, including the time (`at`): the domain never
reads a clock. `caller` is the authenticated user; aggregates check ownership themselves so
that another user's id behaves exactly like an id that does not exist. The classes live in
their aggregate's package; they are re-exported here so callers name a command without
knowing which package holds it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from domain.buckets.commands import CreateBucket, DeleteBucket, UpdateBucket
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
from domain.files.commands import CreateFile, DeleteFile, PutObject, UpdateFile
from domain.kernel import JSON, Command
from domain.registry import COMMANDS
from domain.uploads.commands import (
    AbortUpload,
    AppendBytes,
    CompleteUpload,
    DeclareLength,
    ExpireUpload,
    FailUpload,
    InitiateUpload,
    StoreChunk,
)

__all__ = [
    "COMMANDS",
    "JSON",
    "AbortUpload",
    "AppendBytes",
    "AppendFetchBytes",
    "AppendFetchSegmentBytes",
    "CancelFetch",
    "Command",
    "CompleteFetch",
    "CompleteUpload",
    "CreateBucket",
    "CreateFile",
    "DeclareLength",
    "DeleteBucket",
    "DeleteFile",
    "ExpireUpload",
    "FailFetch",
    "FailUpload",
    "InitiateUpload",
    "PauseFetch",
    "PlanFetchSegments",
    "PutObject",
    "RecordFetchAttemptError",
    "RecordFetchResponse",
    "RequestFetch",
    "ResumeFetch",
    "RetryFetch",
    "StartFetch",
    "StoreChunk",
    "UpdateBucket",
    "UpdateFile",
    "command_from_dict",
    "command_to_dict",
]


def command_to_dict(cmd: Command) -> JSON:
    payload = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in cmd.payload().items()}
    return {
        "type": cmd.type,
        "aggregate": cmd.aggregate,
        "aggregate_id": cmd.aggregate_id,
        "caller": cmd.caller,
        "admin": cmd.admin,
        "at": cmd.at.isoformat(),
        "command_id": cmd.command_id,
        "data": payload,
    }


def command_from_dict(d: JSON) -> Command:
    cls = COMMANDS.get(str(d.get("type")))
    if cls is None:
        raise ValueError(f"unknown command type {d.get('type')!r}")
    data = dict(d.get("data") or {})
    for f in dataclasses.fields(cls):  # datetimes travel as ISO strings
        if f.name in data and isinstance(data[f.name], str) and "datetime" in str(f.type):
            data[f.name] = datetime.fromisoformat(data[f.name])
    return cls(
        aggregate_id=str(d["aggregate_id"]),
        caller=str(d["caller"]),
        admin=bool(d.get("admin", False)),
        at=datetime.fromisoformat(str(d["at"])),
        command_id=str(d.get("command_id") or ""),
        **data,
    )
