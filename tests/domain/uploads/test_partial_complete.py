"""A tus partial upload (Upload-Concat: partial) that has all its bytes is finished, as tusd
has it: PARTIAL_COMPLETE, not IN_PROGRESS. It has no file of its own, and stays live (its
bytes usable in a final concatenation, terminable, expiring) until it expires."""

from __future__ import annotations

from datetime import timedelta

from domain.commands import (
    AbortUpload,
    CompleteUpload,
    DeclareLength,
    ExpireUpload,
    InitiateUpload,
)
from domain.errors import Conflict, InvalidInput
from domain.uploads import ACTIVE, LIVE, UploadStatus, decide, evolve, fold
from tests.domain.uploads.test_stream_modes import T, append, init, refused, run, sha


def _events(*cmds: object) -> list[object]:
    state = None
    out = []
    for cmd in cmds:
        for e in decide(state, cmd):  # type: ignore[arg-type]
            out.append(e)
            state = evolve(state, e)
    return out


def test_a_partial_upload_with_all_its_bytes_is_partial_complete() -> None:
    s = run(init(partial=True), append(0, 4))
    assert s.status == UploadStatus.IN_PROGRESS  # still receiving
    s = run(append(4, 6), state=s)
    assert s.status == UploadStatus.PARTIAL_COMPLETE
    assert s.file_id is None and s.all_received
    assert s.status in LIVE and s.status not in ACTIVE


def test_a_whole_upload_with_all_its_bytes_waits_for_its_completion() -> None:
    # Not partial: it completes (with its file) by CompleteUpload, as before.
    s = run(init(), append(0, 10))
    assert s.status == UploadStatus.IN_PROGRESS


def test_an_empty_partial_is_partial_complete_at_creation() -> None:
    s = run(init(partial=True, file_size=0))
    assert s.status == UploadStatus.PARTIAL_COMPLETE


def test_a_deferred_length_declared_at_the_offset_finishes_a_partial() -> None:
    s = run(init(partial=True, file_size=None), append(0, 3))
    assert s.status == UploadStatus.IN_PROGRESS
    s = run(DeclareLength(aggregate_id="u1", caller="alice", at=T, file_size=3), state=s)
    assert s.status == UploadStatus.PARTIAL_COMPLETE


def test_a_creation_with_every_byte_of_a_partial_is_partial_complete() -> None:
    cmd = init(partial=True, file_size=5, pieces=[{"sha256": sha("x"), "size": 5}])
    assert run(cmd).status == UploadStatus.PARTIAL_COMPLETE


def test_fold_gives_the_status_evolve_gives() -> None:
    # fold gathers runs of appends and settles them at once: the same state as evolve.
    events = _events(init(partial=True), append(0, 4), append(4, 3), append(7, 3))
    one_by_one = None
    for e in events:
        one_by_one = evolve(one_by_one, e)  # type: ignore[arg-type]
    folded = fold(None, events)  # type: ignore[arg-type]
    assert folded == one_by_one
    assert folded is not None and folded.status == UploadStatus.PARTIAL_COMPLETE


def test_a_partial_complete_upload_stays_usable_and_ends_as_an_active_one() -> None:
    s = run(init(partial=True), append(0, 10))
    # An empty PATCH at its length is a no-op (tus: 204), more bytes go past the length.
    assert decide(s, append(10)) == []
    assert refused(s, append(10, 1), InvalidInput).code == "length_exceeded"
    # It never completes by itself: only a final concatenation uses its bytes.
    done = CompleteUpload(aggregate_id="u1", caller="alice", at=T, file_id="F", sha256=sha(1))
    assert refused(s, done, Conflict).code == "partial_upload"
    # Termination and expiry end it (its bytes may then be collected).
    aborted = run(AbortUpload(aggregate_id="u1", caller="alice", at=T), state=s)
    assert aborted.status == UploadStatus.ABORTED
    idle = ExpireUpload(
        aggregate_id="u1", caller="alice", at=T, idle_before=T + timedelta(seconds=1)
    )
    assert run(idle, state=s).status == UploadStatus.EXPIRED
    late = ExpireUpload(
        aggregate_id="u1", caller="alice", at=T, idle_before=T - timedelta(seconds=1)
    )
    assert refused(s, late, Conflict).code == "upload_active"


def test_an_initiate_replay_of_a_partial_complete_upload_is_a_no_op() -> None:
    cmd: InitiateUpload = init(partial=True, file_size=0)
    s = run(cmd)
    assert decide(s, cmd) == []
