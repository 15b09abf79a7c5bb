"""The fetch aggregate's events: one class per event type, at its current schema version."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from domain.kernel import Event, Stamped
from domain.values import Piece


@dataclass(frozen=True, kw_only=True)
class FetchRequested(Event):
    type: ClassVar[str] = "FetchRequested"

    fetch_id: str
    owner: str
    url: str
    generation: int = 0
    bucket: str = "default"
    key: str | None = None
    sha256: str | None = None
    at: datetime


@dataclass(frozen=True, kw_only=True)
class FetchStarted(Event):
    """A worker run (`runner`) took the fetch: anything an earlier run records is refused."""

    type: ClassVar[str] = "FetchStarted"

    runner: str
    attempt: int
    at: datetime


@dataclass(frozen=True, kw_only=True)
class FetchResponseReceived(Event):
    """The origin's validators; `restart`: the bytes held so far are dropped (the origin
    changed or ignored the range), the fetch starts again from byte 0. `content_encoding`:
    the body's Content-Encoding when not identity (the bytes are kept as sent)."""

    type: ClassVar[str] = "FetchResponseReceived"

    restart: bool
    reason: str = ""
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None
    content_type: str | None = None
    file_name: str | None = None
    accept_ranges: bool = False
    at: datetime
    content_encoding: str | None = None


@dataclass(frozen=True, kw_only=True)
class FetchSegmented(Event):
    """The body is fetched as these byte ranges (`[start, end)`, in order) in parallel."""

    type: ClassVar[str] = "FetchSegmented"

    plan: str
    bounds: tuple[tuple[int, int], ...]
    at: datetime


@dataclass(frozen=True, kw_only=True)
class FetchBytesAppended(Event):
    type: ClassVar[str] = "FetchBytesAppended"

    offset: int
    pieces: tuple[Piece, ...]
    size: int
    at: datetime


@dataclass(frozen=True, kw_only=True)
class FetchSegmentBytesAppended(Event):
    """Pieces continue segment `segment` at `offset` (absolute in the body)."""

    type: ClassVar[str] = "FetchSegmentBytesAppended"

    segment: int
    offset: int
    pieces: tuple[Piece, ...]
    size: int
    at: datetime


@dataclass(frozen=True, kw_only=True)
class FetchAttemptFailed(Event):
    type: ClassVar[str] = "FetchAttemptFailed"

    error: str
    retry_in: float
    at: datetime


@dataclass(frozen=True, kw_only=True)
class FetchCompleted(Event):
    type: ClassVar[str] = "FetchCompleted"

    sha256: str
    size: int
    file_id: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class FetchFailed(Event):
    type: ClassVar[str] = "FetchFailed"

    error: str
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime


@dataclass(frozen=True, kw_only=True)
class FetchPaused(Stamped):
    type: ClassVar[str] = "FetchPaused"


@dataclass(frozen=True, kw_only=True)
class FetchResumed(Stamped):
    type: ClassVar[str] = "FetchResumed"


@dataclass(frozen=True, kw_only=True)
class FetchCancelled(Stamped):
    type: ClassVar[str] = "FetchCancelled"


@dataclass(frozen=True, kw_only=True)
class FetchRetried(Stamped):
    type: ClassVar[str] = "FetchRetried"


EVENTS = (
    FetchRequested,
    FetchStarted,
    FetchResponseReceived,
    FetchSegmented,
    FetchBytesAppended,
    FetchSegmentBytesAppended,
    FetchAttemptFailed,
    FetchCompleted,
    FetchFailed,
    FetchPaused,
    FetchResumed,
    FetchCancelled,
    FetchRetried,
)
