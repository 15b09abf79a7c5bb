"""The upload aggregate's state, and `evolve`: how each event changes it.

State moves INITIATED -> IN_PROGRESS -> COMPLETED, or to ABORTED / FAILED / EXPIRED.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from domain.kernel import JSON, Event
from domain.uploads.events import (
    UploadAborted,
    UploadBytesAppended,
    UploadChunkStored,
    UploadCompleted,
    UploadExpired,
    UploadFailed,
    UploadInitiated,
    UploadLengthDeclared,
)

MODES = ("chunks", "stream", "final")


class UploadStatus(StrEnum):
    INITIATED = "INITIATED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    EXPIRED = "EXPIRED"


ACTIVE = (UploadStatus.INITIATED, UploadStatus.IN_PROGRESS)


def total_chunks_for(file_size: int, chunk_size: int) -> int:
    return -(-file_size // chunk_size) if file_size > 0 else 0


def expected_chunk_size(file_size: int, chunk_size: int, total_chunks: int, index: int) -> int:
    """Every chunk is `chunk_size` bytes except the last, which is the remainder."""
    if index == total_chunks - 1:
        return file_size - chunk_size * (total_chunks - 1)
    return chunk_size


@dataclass(frozen=True)
class Chunk:
    index: int
    offset: int
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadState:
    id: str
    owner: str
    file_name: str
    file_size: int | None  # None: stream mode with the length deferred
    chunk_size: int
    total_chunks: int
    content_type: str
    sha256: str | None
    bucket: str
    metadata: dict[str, str]
    status: UploadStatus
    created_at: datetime
    updated_at: datetime
    chunks: dict[int, Chunk] = field(default_factory=dict)
    file_id: str | None = None
    completed_sha256: str | None = None
    failure: str | None = None
    mode: str = "chunks"
    partial: bool = False
    parts: tuple[str, ...] = ()
    offset: int = 0  # stream and final modes: bytes received so far
    pieces: tuple[tuple[str, int], ...] = ()  # stream and final modes, in order
    key: str | None = None  # the object key in `bucket` it becomes (None: a plain file)

    @property
    def bytes_received(self) -> int:
        if self.mode == "chunks":
            return sum(c.size for c in self.chunks.values())
        return self.offset

    @property
    def missing_chunks(self) -> list[int]:
        return [i for i in range(self.total_chunks) if i not in self.chunks]

    @property
    def all_received(self) -> bool:
        if self.mode == "chunks":
            return not self.missing_chunks
        return self.file_size is not None and self.offset == self.file_size

    def expected_chunk_size(self, index: int) -> int:
        return expected_chunk_size(self.file_size or 0, self.chunk_size, self.total_chunks, index)

    def manifest(self) -> list[JSON]:
        """The file's pieces in order, in their JSON (command) form."""
        if self.mode != "chunks":
            return [{"sha256": sha, "size": n} for sha, n in self.pieces]
        return [
            {"sha256": self.chunks[i].sha256, "size": self.chunks[i].size}
            for i in range(self.total_chunks)
        ]


def _started(state: UploadState) -> UploadStatus:
    return UploadStatus.IN_PROGRESS if state.status == UploadStatus.INITIATED else state.status


def evolve(state: UploadState | None, event: Event) -> UploadState | None:
    """Pure and total: apply one (upcast, decoded) event."""
    if isinstance(event, UploadInitiated):
        return UploadState(
            id=event.upload_id,
            owner=event.owner,
            file_name=event.file_name,
            file_size=event.file_size,
            chunk_size=event.chunk_size,
            total_chunks=event.total_chunks,
            content_type=event.content_type or "application/octet-stream",
            sha256=event.sha256,
            bucket=event.bucket or "default",
            metadata=dict(event.metadata),
            status=UploadStatus.INITIATED,
            created_at=event.at,
            updated_at=event.at,
            mode=event.mode or "chunks",
            partial=event.partial,
            parts=event.parts,
            pieces=tuple((p.sha256, p.size) for p in event.manifest),
            offset=sum(p.size for p in event.manifest),
            key=event.key,
        )
    if state is None:
        return None
    match event:
        case UploadChunkStored(index=index, offset=offset, size=size, sha256=sha256, at=at):
            chunks = {**state.chunks, index: Chunk(index, offset, size, sha256)}
            return replace(state, chunks=chunks, status=_started(state), updated_at=at)
        case UploadBytesAppended(size=size, pieces=pieces, at=at):
            return replace(
                state,
                pieces=state.pieces + tuple((p.sha256, p.size) for p in pieces),
                offset=state.offset + size,
                status=_started(state),
                updated_at=at,
            )
        case UploadLengthDeclared(file_size=file_size, at=at):
            return replace(state, file_size=file_size, updated_at=at)
        case UploadCompleted(file_id=file_id, sha256=sha256, at=at):
            return replace(
                state,
                status=UploadStatus.COMPLETED,
                file_id=file_id,
                completed_sha256=sha256,
                updated_at=at,
            )
        case UploadAborted(at=at):
            return replace(state, status=UploadStatus.ABORTED, updated_at=at)
        case UploadFailed(reason=reason, at=at):
            return replace(state, status=UploadStatus.FAILED, failure=reason, updated_at=at)
        case UploadExpired(at=at):
            return replace(state, status=UploadStatus.EXPIRED, updated_at=at)
    return state
