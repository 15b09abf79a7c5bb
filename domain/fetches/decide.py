"""`decide` for fetches: one small function per command, picked from a table."""

from __future__ import annotations

from domain.errors import Conflict, InvalidInput
from domain.fetches.commands import (
    AppendFetchBytes,
    CancelFetch,
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
    FetchStarted,
)
from domain.fetches.state import RUNNABLE, FetchState, FetchStatus
from domain.kernel import Command, Event, Step, by_command, owned
from domain.values import Piece, is_count, is_sha256

MAX_URL = 8192


def _conflict(state: FetchState, action: str) -> Conflict:
    return Conflict(
        "fetch_state_conflict",
        f"cannot {action} a fetch that is {state.status.value}",
        {"id": state.id, "status": state.status.value},
    )


def _running(state: FetchState | None, cmd: Command, runner: str) -> FetchState:
    """Worker commands: only the current run of an IN_PROGRESS fetch may record anything,
    so a worker whose fetch was taken over (or paused, or cancelled) cannot write."""
    st = owned(state, cmd)
    if st.status != FetchStatus.IN_PROGRESS or st.runner != runner:
        raise Conflict(
            "fetch_not_running",
            "this worker no longer runs the fetch",
            {"id": st.id, "status": st.status.value},
        )
    return st


def _request(state: FetchState | None, cmd: RequestFetch) -> list[Event]:
    if state is not None:
        if state.owner == cmd.caller and state.url == cmd.url:
            return []  # the same request again (20 at once make one fetch)
        raise Conflict("fetch_exists", "a fetch with this id exists", {"id": cmd.aggregate_id})
    if not isinstance(cmd.url, str) or not cmd.url or len(cmd.url) > MAX_URL:
        raise InvalidInput("invalid_url", f"url must be 1 to {MAX_URL} characters")
    if cmd.sha256 is not None and not is_sha256(cmd.sha256):
        raise InvalidInput("invalid_sha256", "sha256 must be 64 lowercase hex digits")
    return [
        FetchRequested(
            fetch_id=cmd.aggregate_id,
            owner=cmd.owner,
            url=cmd.url,
            generation=cmd.generation,
            bucket=cmd.bucket,
            key=cmd.key,
            sha256=cmd.sha256,
            at=cmd.at,
        )
    ]


def _start(state: FetchState | None, cmd: StartFetch) -> list[Event]:
    st = owned(state, cmd)
    if st.status == FetchStatus.IN_PROGRESS and st.runner == cmd.runner:
        return []
    if st.status not in RUNNABLE:
        raise _conflict(st, "start")
    return [FetchStarted(runner=cmd.runner, attempt=st.attempts + 1, at=cmd.at)]


def _response(state: FetchState | None, cmd: RecordFetchResponse) -> list[Event]:
    _running(state, cmd, cmd.runner)
    if cmd.total is not None and not is_count(cmd.total):
        raise InvalidInput("invalid_total", "total must be a non-negative integer")
    return [
        FetchResponseReceived(
            restart=cmd.restart,
            reason=cmd.reason,
            etag=cmd.etag,
            last_modified=cmd.last_modified,
            total=cmd.total,
            content_type=cmd.content_type,
            file_name=cmd.file_name,
            accept_ranges=cmd.accept_ranges,
            at=cmd.at,
        )
    ]


def _append(state: FetchState | None, cmd: AppendFetchBytes) -> list[Event]:
    st = _running(state, cmd, cmd.runner)
    if cmd.offset != st.bytes:
        raise Conflict(
            "wrong_offset",
            f"the fetch holds {st.bytes} bytes, not {cmd.offset}",
            {"id": st.id, "offset": st.bytes},
        )
    pieces = []
    for p in cmd.pieces:
        size = p.get("size") if isinstance(p, dict) else None
        if not isinstance(p, dict) or not is_sha256(p.get("sha256")):
            raise InvalidInput("invalid_manifest", "pieces need sha256 digests")
        if not is_count(size) or size == 0:
            raise InvalidInput("invalid_manifest", "pieces need positive sizes")
        pieces.append(Piece.from_json(p))
    if not pieces:
        return []
    return [
        FetchBytesAppended(
            offset=cmd.offset,
            pieces=tuple(pieces),
            size=sum(p.size for p in pieces),
            at=cmd.at,
        )
    ]


def _attempt_failed(state: FetchState | None, cmd: RecordFetchAttemptError) -> list[Event]:
    _running(state, cmd, cmd.runner)
    return [FetchAttemptFailed(error=cmd.error, retry_in=cmd.retry_in, at=cmd.at)]


def _complete(state: FetchState | None, cmd: CompleteFetch) -> list[Event]:
    if state is not None and state.status == FetchStatus.COMPLETED:
        if state.file_id == cmd.file_id:
            return []
    st = _running(state, cmd, cmd.runner)
    if cmd.size != st.bytes:
        raise Conflict("wrong_size", f"the fetch holds {st.bytes} bytes", {"size": st.bytes})
    if not is_sha256(cmd.sha256):
        raise InvalidInput("invalid_sha256", "sha256 must be 64 lowercase hex digits")
    return [FetchCompleted(sha256=cmd.sha256, size=cmd.size, file_id=cmd.file_id, at=cmd.at)]


def _fail(state: FetchState | None, cmd: FailFetch) -> list[Event]:
    _running(state, cmd, cmd.runner)
    return [FetchFailed(error=cmd.error, details=dict(cmd.details), at=cmd.at)]


def _pause(state: FetchState | None, cmd: PauseFetch) -> list[Event]:
    st = owned(state, cmd)
    if st.status == FetchStatus.PAUSED:
        return []
    if st.status not in RUNNABLE:
        raise _conflict(st, "pause")
    return [FetchPaused(at=cmd.at)]


def _resume(state: FetchState | None, cmd: ResumeFetch) -> list[Event]:
    st = owned(state, cmd)
    if st.status in RUNNABLE:
        return []
    if st.status != FetchStatus.PAUSED:
        raise _conflict(st, "resume")
    return [FetchResumed(at=cmd.at)]


def _cancel(state: FetchState | None, cmd: CancelFetch) -> list[Event]:
    st = owned(state, cmd)
    if st.status == FetchStatus.CANCELLED:
        return []
    if st.status == FetchStatus.COMPLETED:
        raise _conflict(st, "cancel")
    return [FetchCancelled(at=cmd.at)]


def _retry(state: FetchState | None, cmd: RetryFetch) -> list[Event]:
    st = owned(state, cmd)
    if st.status != FetchStatus.FAILED:
        raise _conflict(st, "retry")
    return [FetchRetried(at=cmd.at)]


_DECIDERS: dict[type[Command], Step[FetchState]] = {
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

decide = by_command("fetches", _DECIDERS)
