"""The fetch aggregate's state, and `evolve`: how each event changes it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
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
from domain.sequences import PieceSeq, fold_in_runs


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
    pieces: PieceSeq = field(default_factory=PieceSeq)
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
    # An unsegmented fetch's pieces in order: the durable prefix of the body (`pieces`).
    prefix: PieceSeq = field(default_factory=PieceSeq)
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

    @property
    def pieces(self) -> PieceSeq:
        """The body's pieces in order: the durable prefix, or (segmented) every segment's
        pieces in segment order, which is the whole body once every segment is done.

        A segmented fetch's are joined here, where they are read (its completion, a reuse),
        not on each segment's append: joining all segments per append made folding a fetch
        of 40,000 pieces quadratic. Not JSON: `list()` it or use `manifest()`."""
        if not self.segments:
            return self.prefix
        return PieceSeq(p for s in self.segments for p in s.pieces)

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
    run = _Run()
    if run.add(state, event):
        return run.settle(state)
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
                return replace(st, prefix=PieceSeq(), bytes=0, segments=(), plan=None)
            return st
        case FetchSegmented(plan=plan, bounds=bounds):
            segments = tuple(Segment(int(a), int(b)) for a, b in bounds)
            return replace(st, segments=segments, plan=plan, prefix=PieceSeq(), bytes=0)
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


def fold(state: FetchState | None, events: Iterable[Event]) -> FetchState | None:
    """`evolve` over `events`, in time linear in them.

    A fetch may hold 40,000 pieces, each append an event. Each used to copy the whole piece
    tuple (a segmented fetch's: join every segment's pieces again), so folding a fetch's
    stream from the start was quadratic. With PieceSeq an append costs about the same
    whatever came before; beyond that, a run of appends is gathered in lists this fold
    owns and put into the state once, at the run's end, instead of one state per event
    (`fold_in_runs`, as domain/uploads/state.py `fold` does). The state it began from is
    left as it was."""
    return fold_in_runs(state, events, evolve, _Run)


@dataclass
class _Run:
    """What a run of appends adds to a state, while `fold` (or `evolve`) gathers it."""

    prefix: list[tuple[str, int]] | None = None
    segments: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    segment_bytes: dict[int, int] = field(default_factory=dict)
    bytes: int = 0
    at: datetime | None = None

    def add(self, state: FetchState, event: Event) -> bool:
        """Gather `event` if it is an append to `state`, whose segments a run does not
        change (see domain.sequences.Run)."""
        if not isinstance(event, FetchBytesAppended | FetchSegmentBytesAppended):
            return False
        self.at = event.at
        added = ((p.sha256, p.size) for p in event.pieces)
        if isinstance(event, FetchBytesAppended):
            if self.prefix is None:
                self.prefix = []
            self.prefix.extend(added)
            self.bytes += event.size
        elif 0 <= event.segment < len(state.segments):
            self.segments.setdefault(event.segment, []).extend(added)
            self.segment_bytes[event.segment] = (
                self.segment_bytes.get(event.segment, 0) + event.size
            )
            self.bytes += event.size
        # else a stale segment's pieces: only the time moves, as for any event
        return True

    def settle(self, state: FetchState | None) -> FetchState | None:
        if state is None or self.at is None:
            return state
        segments = state.segments
        if self.segments:
            changed = list(segments)
            for i, pieces in self.segments.items():
                seg = changed[i]
                changed[i] = replace(
                    seg,
                    pieces=seg.pieces.extended(pieces),
                    bytes=seg.bytes + self.segment_bytes[i],
                )
            segments = tuple(changed)
        return replace(
            state,
            prefix=state.prefix if self.prefix is None else state.prefix.extended(self.prefix),
            segments=segments,
            bytes=state.bytes + self.bytes,
            updated_at=self.at,
        )
