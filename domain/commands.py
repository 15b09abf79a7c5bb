"""Commands: requests to change one aggregate, as they travel on the bus.

A command carries everything `decide` needs, including the time (`at`): the domain never
reads a clock. `caller` is the authenticated user; aggregates check ownership themselves so
that another user's id behaves exactly like an id that does not exist.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

JSON = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Command:
    type: ClassVar[str] = "Command"
    aggregate: ClassVar[str] = ""

    aggregate_id: str
    caller: str
    at: datetime
    admin: bool = False
    command_id: str = ""

    @property
    def stream_id(self) -> str:
        from domain.events import stream_id_for

        return stream_id_for(self.aggregate, self.aggregate_id)

    def payload(self) -> JSON:
        """The command-specific fields (everything but the envelope)."""
        base = {f.name for f in dataclasses.fields(Command)}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in base
        }


# ---- uploads -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class InitiateUpload(Command):
    type: ClassVar[str] = "InitiateUpload"
    aggregate: ClassVar[str] = "uploads"

    file_name: str
    file_size: int | None
    chunk_size: int
    content_type: str = "application/octet-stream"
    sha256: str | None = None
    bucket: str = "default"
    metadata: dict[str, str] = field(default_factory=dict)
    # "chunks": numbered chunks (native API); "stream": bytes appended at an offset (tus);
    # "final": the concatenation of partial stream uploads (`parts`, `manifest`), complete.
    mode: str = "chunks"
    partial: bool = False
    parts: list[str] = field(default_factory=list)
    manifest: list[JSON] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class AppendBytes(Command):
    """Stream mode: `pieces` (already durable blobs, in order) continue the upload at `offset`."""

    type: ClassVar[str] = "AppendBytes"
    aggregate: ClassVar[str] = "uploads"

    offset: int
    pieces: list[JSON]


@dataclass(frozen=True, kw_only=True)
class DeclareLength(Command):
    """Stream mode with a deferred length: the total size becomes known."""

    type: ClassVar[str] = "DeclareLength"
    aggregate: ClassVar[str] = "uploads"

    file_size: int


@dataclass(frozen=True, kw_only=True)
class StoreChunk(Command):
    type: ClassVar[str] = "StoreChunk"
    aggregate: ClassVar[str] = "uploads"

    index: int
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class CompleteUpload(Command):
    """`sha256` is the digest of the assembled bytes, computed by the adapter."""

    type: ClassVar[str] = "CompleteUpload"
    aggregate: ClassVar[str] = "uploads"

    file_id: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class AbortUpload(Command):
    type: ClassVar[str] = "AbortUpload"
    aggregate: ClassVar[str] = "uploads"


@dataclass(frozen=True, kw_only=True)
class FailUpload(Command):
    type: ClassVar[str] = "FailUpload"
    aggregate: ClassVar[str] = "uploads"

    reason: str


@dataclass(frozen=True, kw_only=True)
class ExpireUpload(Command):
    """Expire an upload idle since `idle_before`: refused if it saw activity after that, so
    a chunk that lands between the sweeper's check and this command keeps the upload alive."""

    type: ClassVar[str] = "ExpireUpload"
    aggregate: ClassVar[str] = "uploads"

    idle_before: datetime | None = None


# ---- files ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CreateFile(Command):
    type: ClassVar[str] = "CreateFile"
    aggregate: ClassVar[str] = "files"

    owner: str
    name: str
    size: int
    content_type: str
    sha256: str
    manifest: list[JSON]
    bucket: str = "default"
    metadata: dict[str, str] = field(default_factory=dict)
    upload_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeleteFile(Command):
    type: ClassVar[str] = "DeleteFile"
    aggregate: ClassVar[str] = "files"


# ---- fetches -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RequestFetch(Command):
    """Fetch `url` (already validated and normalised by the adapter) into a file."""

    type: ClassVar[str] = "RequestFetch"
    aggregate: ClassVar[str] = "fetches"

    owner: str
    url: str
    generation: int = 0
    bucket: str = "default"
    key: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, kw_only=True)
class StartFetch(Command):
    """A fetch worker (`runner`, unique per take-over) holds the fetch's lease and starts."""

    type: ClassVar[str] = "StartFetch"
    aggregate: ClassVar[str] = "fetches"

    runner: str


@dataclass(frozen=True, kw_only=True)
class RecordFetchResponse(Command):
    """The origin answered: its validators; `restart` drops every byte kept so far."""

    type: ClassVar[str] = "RecordFetchResponse"
    aggregate: ClassVar[str] = "fetches"

    runner: str
    restart: bool
    reason: str = ""
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None
    content_type: str | None = None
    file_name: str | None = None
    accept_ranges: bool = False


@dataclass(frozen=True, kw_only=True)
class AppendFetchBytes(Command):
    """Durable pieces (content-addressed blobs, in order) continue the fetch at `offset`."""

    type: ClassVar[str] = "AppendFetchBytes"
    aggregate: ClassVar[str] = "fetches"

    runner: str
    offset: int
    pieces: list[JSON]


@dataclass(frozen=True, kw_only=True)
class RecordFetchAttemptError(Command):
    """One attempt failed with a retryable error; the worker retries after a backoff."""

    type: ClassVar[str] = "RecordFetchAttemptError"
    aggregate: ClassVar[str] = "fetches"

    runner: str
    error: str
    retry_in: float


@dataclass(frozen=True, kw_only=True)
class CompleteFetch(Command):
    type: ClassVar[str] = "CompleteFetch"
    aggregate: ClassVar[str] = "fetches"

    runner: str
    sha256: str
    size: int
    file_id: str


@dataclass(frozen=True, kw_only=True)
class FailFetch(Command):
    type: ClassVar[str] = "FailFetch"
    aggregate: ClassVar[str] = "fetches"

    runner: str
    error: str
    details: JSON = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PauseFetch(Command):
    type: ClassVar[str] = "PauseFetch"
    aggregate: ClassVar[str] = "fetches"


@dataclass(frozen=True, kw_only=True)
class ResumeFetch(Command):
    type: ClassVar[str] = "ResumeFetch"
    aggregate: ClassVar[str] = "fetches"


@dataclass(frozen=True, kw_only=True)
class CancelFetch(Command):
    type: ClassVar[str] = "CancelFetch"
    aggregate: ClassVar[str] = "fetches"


@dataclass(frozen=True, kw_only=True)
class RetryFetch(Command):
    type: ClassVar[str] = "RetryFetch"
    aggregate: ClassVar[str] = "fetches"


COMMANDS: dict[str, type[Command]] = {
    c.type: c
    for c in (
        InitiateUpload,
        AppendBytes,
        DeclareLength,
        StoreChunk,
        CompleteUpload,
        AbortUpload,
        FailUpload,
        ExpireUpload,
        CreateFile,
        DeleteFile,
        RequestFetch,
        StartFetch,
        RecordFetchResponse,
        AppendFetchBytes,
        RecordFetchAttemptError,
        CompleteFetch,
        FailFetch,
        PauseFetch,
        ResumeFetch,
        CancelFetch,
        RetryFetch,
    )
}


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
