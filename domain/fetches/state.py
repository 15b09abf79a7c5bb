"""The fetch aggregate's state, and `evolve`: how each event changes it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from domain.fetches.events import (
    FetchAttemptFailed,
    FetchBytesAppended,
    FetchCancelled,
    FetchCompleted,
    FetchFailed,
    FetchPaused,
    FetchRequested,
    FetchResponseReceived,
    FetchResumed,
    FetchRetried,
    FetchSegmentBytesAppended,
    FetchSegmented,
    FetchStarted,
)
from domain.kernel import JSON, Event


class FetchStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# A worker may pick these up (PENDING) or take them over (IN_PROGRESS, lease expired).
RUNNABLE = (FetchStatus.PENDING, FetchStatus.IN_PROGRESS)
ACTIVE = (FetchStatus.PENDING, FetchStatus.IN_PROGRESS, FetchStatus.PAUSED)

# The media type of a body kept as its Content-Encoding made it (see FetchState.stored_type).
ENCODED_TYPES = {
    "gzip": "application/gzip",
    "x-gzip": "application/gzip",
    "deflate": "application/zlib",
    "zstd": "application/zstd",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
    "x-compress": "application/x-compress",
}


@dataclass(frozen=True)
class Segment:
    """One byte range `[start, end)` of a segmented fetch and its durable prefix."""

    start: int
    end: int
    pieces: tuple[tuple[str, int], ...] = ()
    bytes: int = 0

    @property
    def offset(self) -> int:
        """Where this segment continues."""
        return self.start + self.bytes

    @property
    def done(self) -> bool:
        return self.bytes >= self.end - self.start


@dataclass(frozen=True)
class FetchState:
    id: str
    owner: str
    url: str
    generation: int
    bucket: str
    key: str | None
    sha256: str | None
    status: FetchStatus
    created_at: datetime
    updated_at: datetime
    runner: str | None = None
    attempts: int = 0
    last_error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None
    content_type: str | None = None
    file_name: str | None = None
    accept_ranges: bool = False
    content_encoding: str | None = None
    # The body's pieces in order: the durable prefix, or (segmented) every segment's
    # pieces in segment order, which is the whole body once every segment is done.
    pieces: tuple[tuple[str, int], ...] = ()
    # Bytes held: the prefix's length, or the sum over the segments.
    bytes: int = 0
    segments: tuple[Segment, ...] = ()
    plan: str | None = None
    file_id: str | None = None
    completed_sha256: str | None = None

    @property
    def stored_type(self) -> str:
        """The media type the held bytes are declared as (without parameters). A body sent
        with a Content-Encoding, although the worker asks for identity, is kept as sent,
        as curl, wget and aria2 keep it: a `.tar.gz` an origin labels `application/x-tar`
        with `Content-Encoding: gzip` is a gzip stream, and its file says so."""
        if self.content_encoding:
            return ENCODED_TYPES.get(self.content_encoding.lower(), "application/octet-stream")
        return (self.content_type or "").split(";")[0].strip()

    def manifest(self) -> list[JSON]:
        return [{"sha256": sha, "size": n} for sha, n in self.pieces]


def evolve(state: FetchState | None, event: Event) -> FetchState | None:
    """Pure and total: apply one (upcast, decoded) event."""
    if isinstance(event, FetchRequested):
        return FetchState(
            id=event.fetch_id,
            owner=event.owner,
            url=event.url,
            generation=event.generation,
            bucket=event.bucket or "default",
            key=event.key,
            sha256=event.sha256,
            status=FetchStatus.PENDING,
            created_at=event.at,
            updated_at=event.at,
        )
    if state is None:
        return None
    at = getattr(event, "at", None)
    st = replace(state, updated_at=at) if isinstance(at, datetime) else state
    match event:
        case FetchStarted(runner=runner, attempt=attempt):
            return replace(st, status=FetchStatus.IN_PROGRESS, runner=runner, attempts=attempt)
        case FetchResponseReceived():
            st = replace(
                st,
                etag=event.etag,
                last_modified=event.last_modified,
                total=event.total,
                content_type=event.content_type,
                file_name=event.file_name,
                accept_ranges=event.accept_ranges,
                content_encoding=event.content_encoding,
            )
            if event.restart:
                return replace(st, pieces=(), bytes=0, segments=(), plan=None)
            return st
        case FetchSegmented(plan=plan, bounds=bounds):
            segments = tuple(Segment(int(a), int(b)) for a, b in bounds)
            return replace(st, segments=segments, plan=plan, pieces=(), bytes=0)
        case FetchBytesAppended(pieces=pieces, size=size):
            added = tuple((p.sha256, p.size) for p in pieces)
            return replace(st, pieces=st.pieces + added, bytes=st.bytes + size)
        case FetchSegmentBytesAppended(pieces=pieces, size=size, segment=segment):
            if not 0 <= segment < len(st.segments):
                return st
            added = tuple((p.sha256, p.size) for p in pieces)
            seg = st.segments[segment]
            seg = replace(seg, pieces=seg.pieces + added, bytes=seg.bytes + size)
            segments = (*st.segments[:segment], seg, *st.segments[segment + 1 :])
            return replace(
                st,
                segments=segments,
                pieces=tuple(p for s in segments for p in s.pieces),
                bytes=st.bytes + size,
            )
        case FetchAttemptFailed(error=error):
            return replace(st, last_error=error)
        case FetchCompleted(sha256=sha256, file_id=file_id, size=size):
            # A body of no announced length (chunked) has one once complete: its size, so
            # that `total` and `progress` end at what was fetched.
            return replace(
                st,
                total=size,
                status=FetchStatus.COMPLETED,
                file_id=file_id,
                completed_sha256=sha256,
                runner=None,
            )
        case FetchFailed(error=error):
            return replace(st, status=FetchStatus.FAILED, last_error=error, runner=None)
        case FetchPaused():
            return replace(st, status=FetchStatus.PAUSED, runner=None)
        case FetchResumed():
            return replace(st, status=FetchStatus.PENDING)
        case FetchCancelled():
            return replace(st, status=FetchStatus.CANCELLED, runner=None)
        case FetchRetried():
            return replace(st, status=FetchStatus.PENDING, attempts=0, last_error=None)
    return st
