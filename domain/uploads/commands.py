"""The upload aggregate's commands, as they travel on the bus (see domain.commands)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from domain.kernel import JSON, Command


@dataclass(frozen=True, kw_only=True)
class UploadCommand(Command):
    aggregate: ClassVar[str] = "uploads"
    stream_prefix: ClassVar[str] = "upload"


@dataclass(frozen=True, kw_only=True)
class InitiateUpload(UploadCommand):
    type: ClassVar[str] = "InitiateUpload"

    file_name: str
    file_size: int | None
    chunk_size: int
    content_type: str = "application/octet-stream"
    sha256: str | None = None
    bucket: str = "default"
    metadata: dict[str, str] = field(default_factory=dict)
    # The object key in `bucket` the completed upload becomes (None: a plain file).
    key: str | None = None
    # "chunks": numbered chunks (native API); "stream": bytes appended at an offset (tus);
    # "final": the concatenation of partial stream uploads (`parts`, `manifest`), complete.
    mode: str = "chunks"
    partial: bool = False
    parts: list[str] = field(default_factory=list)
    # Pieces as JSON ({"sha256", "size"}): validated by `decide`, which refuses bad ones.
    manifest: list[JSON] = field(default_factory=list)
    # Creation with its bytes (a small file in one request, issue 13): stream mode only.
    # `pieces` (already durable blobs, in order) are appended at offset 0 as AppendBytes
    # would; with `complete_file_id` the upload then completes as CompleteUpload(file_id,
    # sha256=complete_sha256) would. One decision instead of three commands, same rules.
    pieces: list[JSON] = field(default_factory=list)
    complete_file_id: str | None = None
    complete_sha256: str | None = None
    # The type the adapter detected from the bytes, for the file: given with a completion,
    # the file follows in the same step (domain.policies.follow_ups).
    file_content_type: str | None = None
    # S3's stored headers the object gets (domain/files/headers.py; lower-case names): only
    # with a key, as a plain file keeps none (decide refuses them without one).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AppendBytes(UploadCommand):
    """Stream mode: `pieces` (already durable blobs, in order) continue the upload at `offset`."""

    type: ClassVar[str] = "AppendBytes"

    offset: int
    pieces: list[JSON]


@dataclass(frozen=True, kw_only=True)
class DeclareLength(UploadCommand):
    """Stream mode with a deferred length: the total size becomes known."""

    type: ClassVar[str] = "DeclareLength"

    file_size: int


@dataclass(frozen=True, kw_only=True)
class StoreChunk(UploadCommand):
    type: ClassVar[str] = "StoreChunk"

    index: int
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class CompleteUpload(UploadCommand):
    """`sha256` is the digest of the assembled bytes, computed by the adapter."""

    type: ClassVar[str] = "CompleteUpload"

    file_id: str
    sha256: str
    # The type the adapter detected from the bytes, for the file: given, the file follows
    # in the same step (domain.policies.follow_ups).
    file_content_type: str | None = None


@dataclass(frozen=True, kw_only=True)
class AbortUpload(UploadCommand):
    type: ClassVar[str] = "AbortUpload"


@dataclass(frozen=True, kw_only=True)
class FailUpload(UploadCommand):
    type: ClassVar[str] = "FailUpload"

    reason: str


@dataclass(frozen=True, kw_only=True)
class ExpireUpload(UploadCommand):
    """Expire an upload idle since `idle_before`: refused if it saw activity after that, so
    a chunk that lands between the sweeper's check and this command keeps the upload alive."""

    type: ClassVar[str] = "ExpireUpload"

    idle_before: datetime | None = None


COMMANDS = (
    InitiateUpload,
    AppendBytes,
    DeclareLength,
    StoreChunk,
    CompleteUpload,
    AbortUpload,
    FailUpload,
    ExpireUpload,
)
