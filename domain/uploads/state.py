"""The upload aggregate's state, and `evolve`: how each event changes it.

State moves INITIATED -> IN_PROGRESS -> COMPLETED, or to ABORTED / FAILED / EXPIRED.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    # chunks mode: the sum of the chunks' sizes, kept as they arrive (summing 40,000 of
    # them for every chunk's reply made an upload's chunks quadratic).
    chunk_bytes: int = 0

    @property
    def bytes_received(self) -> int:
        if self.mode == "chunks":
            return self.chunk_bytes
        return self.offset

    @property
    def missing_chunks(self) -> list[int]:
        return [i for i in range(self.total_chunks) if i not in self.chunks]

    @property
    def all_received(self) -> bool:
        if self.mode == "chunks":
            # Chunk indexes are below total_chunks (decide refuses others).
            return len(self.chunks) >= self.total_chunks and not self.missing_chunks
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
        case UploadChunkStored():
            chunks = dict(state.chunks)
            return _chunk_stored(state, chunks, event)
        case UploadBytesAppended():
            pieces = list(state.pieces)
            return replace(_bytes_appended(state, pieces, event), pieces=tuple(pieces))
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


def _chunk_stored(
    state: UploadState, chunks: dict[int, Chunk], e: UploadChunkStored
) -> UploadState:
    """`state` with chunk `e` stored into `chunks`, a map this fold owns (no other state
    holds it), which becomes the new state's."""
    old = chunks.get(e.index)
    chunks[e.index] = Chunk(e.index, e.offset, e.size, e.sha256)
    received = state.chunk_bytes + e.size - (old.size if old is not None else 0)
    return replace(
        state, chunks=chunks, chunk_bytes=received, status=_started(state), updated_at=e.at
    )


def _bytes_appended(
    state: UploadState, pieces: list[tuple[str, int]], e: UploadBytesAppended
) -> UploadState:
    """`state` with `e`'s pieces added to `pieces` (owned by the fold; the caller sets the
    state's tuple from it)."""
    pieces.extend((p.sha256, p.size) for p in e.pieces)
    return replace(state, offset=state.offset + e.size, status=_started(state), updated_at=e.at)


def fold(state: UploadState | None, events: Iterable[Event]) -> UploadState | None:
    """`evolve` over `events`, in time linear in them.

    `evolve` copies the chunk map (or piece tuple) for each event, so folding a stream of
    40,000 chunk events from the start made n^2/2 copies (10 s of CPU). Here a run of chunk
    or append events updates one copy this fold owns, made at the run's start; the state it
    began from is left as it was, so states stay immutable for everyone holding them."""
    chunks: dict[int, Chunk] | None = None
    pieces: list[tuple[str, int]] | None = None
    for event in events:
        if state is not None and isinstance(event, UploadChunkStored):
            if chunks is None:
                chunks = dict(state.chunks)
            state = _chunk_stored(state, chunks, event)
            continue
        if state is not None and isinstance(event, UploadBytesAppended):
            if pieces is None:
                pieces = list(state.pieces)
            state = _bytes_appended(state, pieces, event)
            continue
        if pieces is not None and state is not None:
            state = replace(state, pieces=tuple(pieces))
        # The run's copies are the state's now: the next run copies again.
        chunks = pieces = None
        state = evolve(state, event)
    if pieces is not None and state is not None:
        state = replace(state, pieces=tuple(pieces))
    return state
