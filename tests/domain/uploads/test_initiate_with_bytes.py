"""Creation with its bytes (issue 13): one InitiateUpload that carries a small file's
pieces, and its completion, decides exactly what InitiateUpload + AppendBytes +
CompleteUpload would, by the same rules; any refusal refuses the whole command."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from domain import policies
from domain.commands import AppendBytes, Command, CompleteUpload, InitiateUpload
from domain.errors import Conflict, DomainError, InvalidInput, Unprocessable
from domain.uploads import UploadState, UploadStatus, decide, evolve
from domain.uploads.events import UploadBytesAppended, UploadCompleted, UploadInitiated

T = datetime(2026, 5, 1, tzinfo=UTC)
DIGEST = hashlib.sha256(b"whole").hexdigest()
PIECES = [{"sha256": hashlib.sha256(b"a").hexdigest(), "size": 6}, {"sha256": "b" * 64, "size": 4}]


def init(**kw: Any) -> InitiateUpload:
    base: dict[str, Any] = dict(
        aggregate_id="u1", caller="alice", at=T, file_name="f", file_size=10, chunk_size=4
    )
    base.update({"mode": "stream", **kw})
    return InitiateUpload(**base)


def fold(state: UploadState | None, events: list[Any]) -> UploadState:
    for ev in events:
        state = evolve(state, ev)
    assert state is not None
    return state


def step_by_step(*cmds: Command) -> UploadState:
    state: UploadState | None = None
    for cmd in cmds:
        state = fold(state, decide(state, cmd))
    assert state is not None
    return state


def test_one_command_decides_what_three_would() -> None:
    whole = policies.initiate_complete(init(), PIECES, DIGEST)
    events = decide(None, whole)
    assert [type(e) for e in events] == [UploadInitiated, UploadBytesAppended, UploadCompleted]
    one = fold(None, events)
    three = step_by_step(
        init(),
        AppendBytes(aggregate_id="u1", caller="alice", at=T, offset=0, pieces=PIECES),
        policies.complete(step_by_step(init()), DIGEST, caller="alice", at=T),
    )
    assert one == three
    assert one.status == UploadStatus.COMPLETED and one.completed_sha256 == DIGEST
    assert one.file_id == policies.completion_file_id("u1")
    # The file follows from it exactly as from the step-by-step upload.
    assert policies.file_from_upload(one) == policies.file_from_upload(three)
    # Replayed: already applied.
    assert decide(one, whole) == []


def test_an_object_key_completes_into_the_objects_file() -> None:
    cmd = policies.initiate_complete(init(bucket="photos", key="a/b.jpg"), PIECES, DIGEST)
    state = fold(None, decide(None, cmd))
    expected = policies.complete(state, DIGEST, caller="alice", at=T).file_id
    assert state.file_id == expected


def test_bytes_without_completion_leave_the_upload_open() -> None:
    state = fold(None, decide(None, init(file_size=20, pieces=PIECES)))
    assert state.status == UploadStatus.IN_PROGRESS and state.offset == 10
    # A partial upload takes its bytes but is never completed by itself: with all of them
    # it is finished (PARTIAL_COMPLETE, no file), short of its length in progress.
    state = fold(None, decide(None, init(partial=True, pieces=PIECES)))
    assert state.offset == 10 and state.status == UploadStatus.PARTIAL_COMPLETE
    assert state.file_id is None
    state = fold(None, decide(None, init(partial=True, file_size=20, pieces=PIECES)))
    assert state.offset == 10 and state.status == UploadStatus.IN_PROGRESS


@pytest.mark.parametrize(
    ("cmd", "error", "code"),
    [
        # short of the length: cannot complete
        (policies.initiate_complete(init(file_size=11), PIECES, DIGEST), Conflict, None),
        # past the length
        (init(file_size=9, pieces=PIECES), InvalidInput, "length_exceeded"),
        # a declared sha256 the bytes do not have
        (
            policies.initiate_complete(init(sha256="c" * 64), PIECES, DIGEST),
            Unprocessable,
            "checksum_mismatch",
        ),
        # a partial upload is completed by concatenation only
        (policies.initiate_complete(init(partial=True), PIECES, DIGEST), Conflict, None),
        # numbered chunks take no bytes at creation
        (init(mode="chunks", pieces=PIECES), InvalidInput, "invalid_mode"),
        (init(pieces=[{"sha256": "x", "size": 1}]), InvalidInput, "invalid_piece"),
        (init(complete_file_id="f1", complete_sha256="nope", pieces=PIECES), InvalidInput, None),
    ],
)
def test_any_refusal_refuses_the_whole_command(
    cmd: InitiateUpload, error: type[DomainError], code: str | None
) -> None:
    with pytest.raises(error) as e:
        decide(None, cmd)
    if code is not None:
        assert e.value.code == code


def test_the_step_by_step_commands_still_work_after_it() -> None:
    state = fold(None, decide(None, init(file_size=20, pieces=PIECES)))
    more = [{"sha256": "d" * 64, "size": 10}]
    state = fold(
        state,
        decide(state, AppendBytes(aggregate_id="u1", caller="alice", at=T, offset=10, pieces=more)),
    )
    done = CompleteUpload(aggregate_id="u1", caller="alice", at=T, file_id="f", sha256=DIGEST)
    state = fold(state, decide(state, done))
    assert state.status == UploadStatus.COMPLETED and state.offset == 20
