"""The fetch aggregate: a file Cairn downloads from a URL, resumable across pauses and crashes.

State moves PENDING -> IN_PROGRESS -> COMPLETED, or to PAUSED / FAILED / CANCELLED. The
bytes never come here: a fetch worker streams the origin's body into content-addressed
blobs and records them as pieces at an offset, so the stream's pieces are exactly the
durable prefix of the body. Only the worker that started the current run (`runner`) may
record anything; a worker whose run was taken over is refused and stops. A changed origin
(`restart`) drops every piece: bytes of two versions of a resource are never joined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.commands import (
    AppendFetchBytes,
    CancelFetch,
    Command,
    CompleteFetch,
    FailFetch,
    PauseFetch,
    RecordFetchAttemptError,
    RecordFetchResponse,
    RequestFetch,
    ResumeFetch,
    RetryFetch,
    StartFetch,
)
from domain.errors import Conflict, InvalidInput, NotFound
from domain.events import JSON, NewEvent, register_event
from domain.uploads import SHA256_RE

MAX_URL = 8192


class FetchStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# A worker may pick these up (PENDING) or take them over (IN_PROGRESS, lease expired).
RUNNABLE = (FetchStatus.PENDING, FetchStatus.IN_PROGRESS)
FINISHED = (FetchStatus.COMPLETED, FetchStatus.FAILED, FetchStatus.CANCELLED)

REQUESTED = "FetchRequested"
STARTED = "FetchStarted"
RESPONSE = "FetchResponseReceived"
BYTES_APPENDED = "FetchBytesAppended"
ATTEMPT_FAILED = "FetchAttemptFailed"
COMPLETED = "FetchCompleted"
FAILED = "FetchFailed"
PAUSED = "FetchPaused"
RESUMED = "FetchResumed"
CANCELLED = "FetchCancelled"
RETRIED = "FetchRetried"

for _t in (
    REQUESTED,
    STARTED,
    RESPONSE,
    BYTES_APPENDED,
    ATTEMPT_FAILED,
    COMPLETED,
    FAILED,
    PAUSED,
    RESUMED,
    CANCELLED,
    RETRIED,
):
    register_event(_t, 1)


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
    pieces: tuple[tuple[str, int], ...] = ()
    bytes: int = 0
    file_id: str | None = None
    completed_sha256: str | None = None

    def manifest(self) -> list[JSON]:
        return [{"sha256": sha, "size": n} for sha, n in self.pieces]


def _owned(state: FetchState | None, cmd: Command) -> FetchState:
    if state is None or (state.owner != cmd.caller and not cmd.admin):
        raise NotFound("fetch_not_found", "no such fetch", {"id": cmd.aggregate_id})
    return state


def _conflict(state: FetchState, action: str) -> Conflict:
    return Conflict(
        "fetch_state_conflict",
        f"cannot {action} a fetch that is {state.status.value}",
        {"id": state.id, "status": state.status.value},
    )


def _running(state: FetchState | None, cmd: Command, runner: str) -> FetchState:
    """Worker commands: only the current run of an IN_PROGRESS fetch may record anything."""
    st = _owned(state, cmd)
    if st.status != FetchStatus.IN_PROGRESS or st.runner != runner:
        raise Conflict(
            "fetch_not_running",
            "this worker no longer runs the fetch",
            {"id": st.id, "status": st.status.value},
        )
    return st


def _at(cmd: Command) -> str:
    return cmd.at.isoformat()


# ---- decide: one function per command ------------------------------------------------


def _request(state: FetchState | None, cmd: RequestFetch) -> list[NewEvent]:
    if state is not None:
        if state.owner == cmd.caller and state.url == cmd.url:
            return []  # the same request again (20 at once make one fetch)
        raise Conflict("fetch_exists", "a fetch with this id exists", {"id": cmd.aggregate_id})
    if not isinstance(cmd.url, str) or not cmd.url or len(cmd.url) > MAX_URL:
        raise InvalidInput("invalid_url", f"url must be 1 to {MAX_URL} characters")
    if cmd.sha256 is not None and not SHA256_RE.fullmatch(cmd.sha256):
        raise InvalidInput("invalid_sha256", "sha256 must be 64 lowercase hex digits")
    return [
        NewEvent(
            REQUESTED,
            {
                "fetch_id": cmd.aggregate_id,
                "owner": cmd.owner,
                "url": cmd.url,
                "generation": cmd.generation,
                "bucket": cmd.bucket,
                "key": cmd.key,
                "sha256": cmd.sha256,
                "at": _at(cmd),
            },
        )
    ]


def _start(state: FetchState | None, cmd: StartFetch) -> list[NewEvent]:
    st = _owned(state, cmd)
    if st.status == FetchStatus.IN_PROGRESS and st.runner == cmd.runner:
        return []
    if st.status not in RUNNABLE:
        raise _conflict(st, "start")
    return [NewEvent(STARTED, {"runner": cmd.runner, "attempt": st.attempts + 1, "at": _at(cmd)})]


def _response(state: FetchState | None, cmd: RecordFetchResponse) -> list[NewEvent]:
    _running(state, cmd, cmd.runner)
    if cmd.total is not None and cmd.total < 0:
        raise InvalidInput("invalid_total", "total must not be negative")
    return [
        NewEvent(
            RESPONSE,
            {
                "restart": cmd.restart,
                "reason": cmd.reason,
                "etag": cmd.etag,
                "last_modified": cmd.last_modified,
                "total": cmd.total,
                "content_type": cmd.content_type,
                "file_name": cmd.file_name,
                "accept_ranges": cmd.accept_ranges,
                "at": _at(cmd),
            },
        )
    ]


def _append(state: FetchState | None, cmd: AppendFetchBytes) -> list[NewEvent]:
    st = _running(state, cmd, cmd.runner)
    if cmd.offset != st.bytes:
        raise Conflict(
            "wrong_offset",
            f"the fetch holds {st.bytes} bytes, not {cmd.offset}",
            {"id": st.id, "offset": st.bytes},
        )
    pieces = []
    for p in cmd.pieces:
        sha, size = p.get("sha256"), p.get("size")
        if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha):
            raise InvalidInput("invalid_manifest", "pieces need sha256 digests")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise InvalidInput("invalid_manifest", "pieces need positive sizes")
        pieces.append({"sha256": sha, "size": size})
    if not pieces:
        return []
    return [
        NewEvent(
            BYTES_APPENDED,
            {
                "offset": cmd.offset,
                "pieces": pieces,
                "size": sum(p["size"] for p in pieces),
                "at": _at(cmd),
            },
        )
    ]


def _attempt_failed(state: FetchState | None, cmd: RecordFetchAttemptError) -> list[NewEvent]:
    _running(state, cmd, cmd.runner)
    return [
        NewEvent(ATTEMPT_FAILED, {"error": cmd.error, "retry_in": cmd.retry_in, "at": _at(cmd)})
    ]


def _complete(state: FetchState | None, cmd: CompleteFetch) -> list[NewEvent]:
    if state is not None and state.status == FetchStatus.COMPLETED:
        if state.file_id == cmd.file_id:
            return []
    st = _running(state, cmd, cmd.runner)
    if cmd.size != st.bytes:
        raise Conflict("wrong_size", f"the fetch holds {st.bytes} bytes", {"size": st.bytes})
    if not SHA256_RE.fullmatch(cmd.sha256):
        raise InvalidInput("invalid_sha256", "sha256 must be 64 lowercase hex digits")
    return [
        NewEvent(
            COMPLETED,
            {"sha256": cmd.sha256, "size": cmd.size, "file_id": cmd.file_id, "at": _at(cmd)},
        )
    ]


def _fail(state: FetchState | None, cmd: FailFetch) -> list[NewEvent]:
    _running(state, cmd, cmd.runner)
    return [NewEvent(FAILED, {"error": cmd.error, "details": dict(cmd.details), "at": _at(cmd)})]


def _pause(state: FetchState | None, cmd: PauseFetch) -> list[NewEvent]:
    st = _owned(state, cmd)
    if st.status == FetchStatus.PAUSED:
        return []
    if st.status not in RUNNABLE:
        raise _conflict(st, "pause")
    return [NewEvent(PAUSED, {"at": _at(cmd)})]


def _resume(state: FetchState | None, cmd: ResumeFetch) -> list[NewEvent]:
    st = _owned(state, cmd)
    if st.status in RUNNABLE:
        return []
    if st.status != FetchStatus.PAUSED:
        raise _conflict(st, "resume")
    return [NewEvent(RESUMED, {"at": _at(cmd)})]


def _cancel(state: FetchState | None, cmd: CancelFetch) -> list[NewEvent]:
    st = _owned(state, cmd)
    if st.status == FetchStatus.CANCELLED:
        return []
    if st.status == FetchStatus.COMPLETED:
        raise _conflict(st, "cancel")
    return [NewEvent(CANCELLED, {"at": _at(cmd)})]


def _retry(state: FetchState | None, cmd: RetryFetch) -> list[NewEvent]:
    st = _owned(state, cmd)
    if st.status != FetchStatus.FAILED:
        raise _conflict(st, "retry")
    return [NewEvent(RETRIED, {"at": _at(cmd)})]


_DECIDERS: dict[type[Command], Callable[[Any, Any], list[NewEvent]]] = {
    RequestFetch: _request,
    StartFetch: _start,
    RecordFetchResponse: _response,
    AppendFetchBytes: _append,
    RecordFetchAttemptError: _attempt_failed,
    CompleteFetch: _complete,
    FailFetch: _fail,
    PauseFetch: _pause,
    ResumeFetch: _resume,
    CancelFetch: _cancel,
    RetryFetch: _retry,
}


def decide(state: FetchState | None, cmd: Command) -> list[NewEvent]:
    fn = _DECIDERS.get(type(cmd))
    if fn is None:
        raise InvalidInput("unknown_command", f"fetches cannot handle {cmd.type}")
    return fn(state, cmd)


# ---- evolve --------------------------------------------------------------------------


def evolve(state: FetchState | None, type_: str, data: JSON) -> FetchState | None:
    at = datetime.fromisoformat(str(data["at"])) if isinstance(data.get("at"), str) else None
    if type_ == REQUESTED:
        assert at is not None
        return FetchState(
            id=str(data["fetch_id"]),
            owner=str(data["owner"]),
            url=str(data["url"]),
            generation=int(data.get("generation") or 0),
            bucket=str(data.get("bucket") or "default"),
            key=data.get("key"),
            sha256=data.get("sha256"),
            status=FetchStatus.PENDING,
            created_at=at,
            updated_at=at,
        )
    if state is None:
        return None
    st = replace(state, updated_at=at) if at is not None else state
    if type_ == STARTED:
        return replace(
            st,
            status=FetchStatus.IN_PROGRESS,
            runner=str(data["runner"]),
            attempts=int(data["attempt"]),
        )
    if type_ == RESPONSE:
        st = replace(
            st,
            etag=data.get("etag"),
            last_modified=data.get("last_modified"),
            total=data.get("total"),
            content_type=data.get("content_type"),
            file_name=data.get("file_name"),
            accept_ranges=bool(data.get("accept_ranges")),
        )
        return replace(st, pieces=(), bytes=0) if data.get("restart") else st
    if type_ == BYTES_APPENDED:
        added = tuple((str(p["sha256"]), int(p["size"])) for p in data["pieces"])
        return replace(st, pieces=st.pieces + added, bytes=st.bytes + int(data["size"]))
    if type_ == ATTEMPT_FAILED:
        return replace(st, last_error=str(data["error"]))
    if type_ == COMPLETED:
        return replace(
            st,
            status=FetchStatus.COMPLETED,
            file_id=str(data["file_id"]),
            completed_sha256=str(data["sha256"]),
            runner=None,
        )
    if type_ == FAILED:
        return replace(st, status=FetchStatus.FAILED, last_error=str(data["error"]), runner=None)
    if type_ == PAUSED:
        return replace(st, status=FetchStatus.PAUSED, runner=None)
    if type_ == RESUMED:
        return replace(st, status=FetchStatus.PENDING)
    if type_ == CANCELLED:
        return replace(st, status=FetchStatus.CANCELLED, runner=None)
    if type_ == RETRIED:
        return replace(st, status=FetchStatus.PENDING, attempts=0, last_error=None)
    return st
