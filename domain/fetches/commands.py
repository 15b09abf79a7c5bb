"""The fetch aggregate's commands, as they travel on the bus (see domain.commands).

The API sends RequestFetch and the controls (pause, resume, cancel, retry); a fetch worker
sends the rest, each carrying the `runner` id of its run (see domain.fetches)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from domain.kernel import JSON, Command


@dataclass(frozen=True, kw_only=True)
class FetchCommand(Command):
    aggregate: ClassVar[str] = "fetches"
    stream_prefix: ClassVar[str] = "fetch"


@dataclass(frozen=True, kw_only=True)
class RequestFetch(FetchCommand):
    """Fetch `url` (already validated and normalised by the adapter) into a file."""

    type: ClassVar[str] = "RequestFetch"

    owner: str
    url: str
    generation: int = 0
    bucket: str = "default"
    key: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, kw_only=True)
class StartFetch(FetchCommand):
    """A fetch worker (`runner`, unique per run) holds the fetch's lease and starts."""

    type: ClassVar[str] = "StartFetch"

    runner: str


@dataclass(frozen=True, kw_only=True)
class RecordFetchResponse(FetchCommand):
    """The origin answered: its validators; `restart` drops every byte kept so far."""

    type: ClassVar[str] = "RecordFetchResponse"

    runner: str
    restart: bool
    reason: str = ""
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None
    content_type: str | None = None
    file_name: str | None = None
    accept_ranges: bool = False
    content_encoding: str | None = None


@dataclass(frozen=True, kw_only=True)
class PlanFetchSegments(FetchCommand):
    """Split the (empty, known-length) body into byte ranges fetched in parallel.
    `bounds` are `[start, end)` pairs covering 0..total in order; `plan` names this split
    so that an append meant for an earlier, dropped split is refused."""

    type: ClassVar[str] = "PlanFetchSegments"

    runner: str
    plan: str
    bounds: list[list[int]]


@dataclass(frozen=True, kw_only=True)
class AppendFetchBytes(FetchCommand):
    """Durable pieces (content-addressed blobs, in order) continue the fetch at `offset`."""

    type: ClassVar[str] = "AppendFetchBytes"

    runner: str
    offset: int
    pieces: list[JSON]


@dataclass(frozen=True, kw_only=True)
class AppendFetchSegmentBytes(FetchCommand):
    """Durable pieces continue segment `segment` of split `plan` at `offset` (absolute)."""

    type: ClassVar[str] = "AppendFetchSegmentBytes"

    runner: str
    plan: str
    segment: int
    offset: int
    pieces: list[JSON]


@dataclass(frozen=True, kw_only=True)
class RecordFetchAttemptError(FetchCommand):
    """One attempt failed with a retryable error; the worker retries after `retry_in`."""

    type: ClassVar[str] = "RecordFetchAttemptError"

    runner: str
    error: str
    retry_in: float


@dataclass(frozen=True, kw_only=True)
class CompleteFetch(FetchCommand):
    type: ClassVar[str] = "CompleteFetch"

    runner: str
    sha256: str
    size: int
    file_id: str
    # The type the worker detected from the bytes, for the file: given, the file follows
    # in the same step (domain.policies.follow_ups), so no reader sees the fetch completed
    # and its file missing, whatever happens to the worker after it sent this.
    file_content_type: str | None = None


@dataclass(frozen=True, kw_only=True)
class FailFetch(FetchCommand):
    type: ClassVar[str] = "FailFetch"

    runner: str
    error: str
    details: JSON = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PauseFetch(FetchCommand):
    type: ClassVar[str] = "PauseFetch"


@dataclass(frozen=True, kw_only=True)
class ResumeFetch(FetchCommand):
    type: ClassVar[str] = "ResumeFetch"


@dataclass(frozen=True, kw_only=True)
class CancelFetch(FetchCommand):
    type: ClassVar[str] = "CancelFetch"


@dataclass(frozen=True, kw_only=True)
class RetryFetch(FetchCommand):
    type: ClassVar[str] = "RetryFetch"


COMMANDS = (
    RequestFetch,
    StartFetch,
    RecordFetchResponse,
    PlanFetchSegments,
    AppendFetchBytes,
    AppendFetchSegmentBytes,
    RecordFetchAttemptError,
    CompleteFetch,
    FailFetch,
    PauseFetch,
    ResumeFetch,
    CancelFetch,
    RetryFetch,
)
