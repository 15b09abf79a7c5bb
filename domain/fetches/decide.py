"""`decide` for fetches: one small function per command, picked from a table."""

from __future__ import annotations

from typing import Any

from domain.buckets.names import is_bucket_name
from domain.errors import Conflict, InvalidInput
from domain.fetches.commands import (
    AppendFetchBytes,
    AppendFetchSegmentBytes,
    CancelFetch,
    CompleteFetch,
    FailFetch,
    PauseFetch,
    PlanFetchSegments,
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
    FetchSegmentBytesAppended,
    FetchSegmented,
    FetchStarted,
)
from domain.fetches.state import RUNNABLE, FetchState, FetchStatus
from domain.files.keys import object_key_problem
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
            # A declared sha256 is a check the caller asked for: joining a fetch that
            # checks another digest (or none), or holds a file of another, would hand them
            # bytes nobody checked against theirs. (The API fetches a completed one of
            # another digest again, as a new generation; this is the rule under races.)
            held = state.completed_sha256 if state.status == FetchStatus.COMPLETED else state.sha256
            if cmd.sha256 is not None and cmd.sha256 != held:
                raise Conflict(
                    "fetch_sha256_conflict",
                    "this URL's fetch declares another sha256; cancel it, or wait for it"
                    " and fetch again",
                    {"id": state.id, "sha256": held, "status": state.status.value},
                )
            return []  # the same request again (20 at once make one fetch)
        raise Conflict("fetch_exists", "a fetch with this id exists", {"id": cmd.aggregate_id})
    if not isinstance(cmd.url, str) or not cmd.url or len(cmd.url) > MAX_URL:
        raise InvalidInput("invalid_url", f"url must be 1 to {MAX_URL} characters")
    if cmd.sha256 is not None and not is_sha256(cmd.sha256):
        raise InvalidInput("invalid_sha256", "sha256 must be 64 lowercase hex digits")
    if cmd.key is not None:
        if (problem := object_key_problem(cmd.key)) is not None:
            raise InvalidInput("invalid_key", problem)
        if not is_bucket_name(cmd.bucket):
            raise InvalidInput("key_needs_bucket", "an object key needs a bucket")
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
            content_encoding=cmd.content_encoding,
        )
    ]


def _plan(state: FetchState | None, cmd: PlanFetchSegments) -> list[Event]:
    st = _running(state, cmd, cmd.runner)
    if st.segments:
        if st.plan == cmd.plan:
            return []
        raise Conflict("fetch_segmented", "the fetch is segmented already", {"id": st.id})
    if st.total is None or st.bytes != 0:
        raise Conflict(
            "fetch_not_segmentable",
            "only an empty fetch of a known length can be segmented",
            {"id": st.id, "bytes": st.bytes},
        )
    if not isinstance(cmd.plan, str) or not cmd.plan:
        raise InvalidInput("invalid_plan", "plan must be a non-empty string")
    bounds: list[tuple[int, int]] = []
    at = 0
    for b in cmd.bounds:
        if (
            not isinstance(b, list | tuple)
            or len(b) != 2
            or not all(is_count(x) for x in b)
            or b[0] != at
            or b[1] <= b[0]
        ):
            raise InvalidInput(
                "invalid_segments", "segments must be non-empty [start, end) ranges in order"
            )
        bounds.append((int(b[0]), int(b[1])))
        at = int(b[1])
    if len(bounds) < 2 or at != st.total:
        raise InvalidInput(
            "invalid_segments", f"segments must be two or more and cover {st.total} bytes"
        )
    return [FetchSegmented(plan=cmd.plan, bounds=tuple(bounds), at=cmd.at)]


def _pieces(raw: list[Any]) -> list[Piece]:
    pieces = []
    for p in raw:
        size = p.get("size") if isinstance(p, dict) else None
        if not isinstance(p, dict) or not is_sha256(p.get("sha256")):
            raise InvalidInput("invalid_manifest", "pieces need sha256 digests")
        if not is_count(size) or size == 0:
            raise InvalidInput("invalid_manifest", "pieces need positive sizes")
        pieces.append(Piece.from_json(p))
    return pieces


def _wrong_offset(st: FetchState, expected: int, offset: int) -> Conflict:
    return Conflict(
        "wrong_offset",
        f"the fetch holds {expected} bytes, not {offset}",
        {"id": st.id, "offset": expected},
    )


def _append(state: FetchState | None, cmd: AppendFetchBytes) -> list[Event]:
    st = _running(state, cmd, cmd.runner)
    if st.segments:
        raise Conflict("fetch_segmented", "the fetch is segmented: append to a segment", {})
    if cmd.offset != st.bytes:
        raise _wrong_offset(st, st.bytes, cmd.offset)
    pieces = _pieces(cmd.pieces)
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


def _append_segment(state: FetchState | None, cmd: AppendFetchSegmentBytes) -> list[Event]:
    st = _running(state, cmd, cmd.runner)
    # Pieces of a split that was dropped (the origin changed) must never land in a later
    # split: the plan id tells them apart.
    if not st.segments or cmd.plan != st.plan:
        raise Conflict(
            "wrong_segment_plan",
            "the pieces belong to another segment plan",
            {"id": st.id, "plan": st.plan},
        )
    if not is_count(cmd.segment) or cmd.segment >= len(st.segments):
        raise InvalidInput("invalid_segment", "no such segment")
    seg = st.segments[cmd.segment]
    if cmd.offset != seg.offset:
        raise _wrong_offset(st, seg.offset, cmd.offset)
    pieces = _pieces(cmd.pieces)
    if not pieces:
        return []
    size = sum(p.size for p in pieces)
    if size > seg.end - seg.offset:
        raise InvalidInput(
            "segment_overflow", f"the segment has room for {seg.end - seg.offset} bytes"
        )
    return [
        FetchSegmentBytesAppended(
            segment=cmd.segment, offset=cmd.offset, pieces=tuple(pieces), size=size, at=cmd.at
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
    if any(not s.done for s in st.segments):
        raise Conflict("segments_incomplete", "a segment is not complete", {"id": st.id})
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
    PlanFetchSegments: _plan,
    AppendFetchBytes: _append,
    AppendFetchSegmentBytes: _append_segment,
    RecordFetchAttemptError: _attempt_failed,
    CompleteFetch: _complete,
    FailFetch: _fail,
    PauseFetch: _pause,
    ResumeFetch: _resume,
    CancelFetch: _cancel,
    RetryFetch: _retry,
}

decide = by_command("fetches", _DECIDERS)
