"""The upload aggregate's events: one class per event type, at its current schema version."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from domain.kernel import JSON, Event, Stamped, Upcaster
from domain.values import Piece


def _initiated_v1_to_v2(data: JSON) -> JSON:
    """v1 called the name `filename` and had no user metadata."""
    out = {k: v for k, v in data.items() if k != "filename"}
    out["file_name"] = data.get("filename", data.get("file_name", ""))
    out.setdefault("metadata", {})
    return out


@dataclass(frozen=True, kw_only=True)
class UploadInitiated(Event):
    type: ClassVar[str] = "UploadInitiated"
    schema_version: ClassVar[int] = 2
    upcasters: ClassVar[dict[int, Upcaster]] = {1: _initiated_v1_to_v2}

    upload_id: str
    owner: str
    file_name: str
    file_size: int | None  # None: stream mode with the length deferred
    chunk_size: int
    total_chunks: int
    # Defaults: what events written before these fields existed mean.
    mode: str = "chunks"
    partial: bool = False
    parts: tuple[str, ...] = ()
    manifest: tuple[Piece, ...] = ()  # a final upload's pieces: all its bytes
    content_type: str = "application/octet-stream"
    sha256: str | None = None
    bucket: str = "default"
    metadata: dict[str, str] = field(default_factory=dict)
    key: str | None = None  # the object key in `bucket` it becomes, if any
    at: datetime
    # The stored HTTP headers the object gets (domain/files/headers.py). Last, with a
    # default: events written before it read as "none" (no schema version bump needed).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UploadChunkStored(Event):
    type: ClassVar[str] = "UploadChunkStored"

    index: int
    offset: int
    size: int
    sha256: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class UploadBytesAppended(Event):
    type: ClassVar[str] = "UploadBytesAppended"

    offset: int
    size: int
    pieces: tuple[Piece, ...]
    at: datetime


@dataclass(frozen=True, kw_only=True)
class UploadLengthDeclared(Event):
    type: ClassVar[str] = "UploadLengthDeclared"

    file_size: int
    at: datetime


@dataclass(frozen=True, kw_only=True)
class UploadCompleted(Event):
    type: ClassVar[str] = "UploadCompleted"

    file_id: str
    sha256: str
    size: int
    manifest: tuple[Piece, ...]
    at: datetime


@dataclass(frozen=True, kw_only=True)
class UploadAborted(Stamped):
    type: ClassVar[str] = "UploadAborted"


@dataclass(frozen=True, kw_only=True)
class UploadFailed(Event):
    type: ClassVar[str] = "UploadFailed"

    reason: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class UploadExpired(Stamped):
    type: ClassVar[str] = "UploadExpired"


EVENTS = (
    UploadInitiated,
    UploadChunkStored,
    UploadBytesAppended,
    UploadLengthDeclared,
    UploadCompleted,
    UploadAborted,
    UploadFailed,
    UploadExpired,
)

# The events that end an upload without a file: its bytes may be collected.
RELEASING = (UploadExpired, UploadAborted, UploadFailed)
