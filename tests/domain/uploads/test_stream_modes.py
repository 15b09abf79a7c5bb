"""Stream mode (bytes appended at an offset, as tus does) and final (concatenated) uploads."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from domain.commands import (
    AppendBytes,
    Command,
    CompleteUpload,
    DeclareLength,
    InitiateUpload,
    StoreChunk,
)
from domain.errors import Conflict, DomainError, InvalidInput, NotFound
from domain.uploads import UploadState, UploadStatus, decide, evolve
from tests.domain.deciding import refused_by, run_all

T = datetime(2026, 5, 1, tzinfo=UTC)


def sha(x: object) -> str:
    return hashlib.sha256(str(x).encode()).hexdigest()


def run(*cmds: Command, state: UploadState | None = None) -> UploadState:
    return run_all(decide, evolve, cmds, state)


def init(**kw: Any) -> InitiateUpload:
    base: dict[str, Any] = dict(
        aggregate_id="u1",
        caller="alice",
        at=T,
        file_name="f",
        file_size=10,
        chunk_size=4,
        mode="stream",
    )
    base.update(kw)
    return InitiateUpload(**base)


def append(offset: int, *sizes: int, **kw: Any) -> AppendBytes:
    pieces = [{"sha256": sha((offset, i)), "size": n} for i, n in enumerate(sizes)]
    return AppendBytes(
        aggregate_id="u1",
        caller=kw.pop("caller", "alice"),
        at=T,
        offset=offset,
        pieces=pieces,
        **kw,
    )


def refused(state: UploadState | None, cmd: Command, kind: type[DomainError]) -> DomainError:
    return refused_by(decide, state, cmd, kind)


def test_appends_advance_the_offset_and_complete_at_the_length() -> None:
    s = run(init(), append(0, 4, 2), append(6, 4))
    assert s.offset == 10 and s.bytes_received == 10 and s.all_received
    assert s.status == UploadStatus.IN_PROGRESS
    assert [p["size"] for p in s.manifest()] == [4, 2, 4]
    done = run(
        CompleteUpload(aggregate_id="u1", caller="alice", at=T, file_id="F", sha256=sha("all")),
        state=s,
    )
    assert done.status == UploadStatus.COMPLETED and done.file_id == "F"


def test_wrong_offset_is_a_conflict_and_changes_nothing() -> None:
    s = run(init(), append(0, 4))
    err = refused(s, append(0, 4), Conflict)
    assert err.code == "offset_mismatch" and err.details["expected_offset"] == 4
    assert refused(s, append(5, 1), Conflict).code == "offset_mismatch"
    assert s.offset == 4


def test_bytes_past_the_length_are_refused() -> None:
    s = run(init(), append(0, 8))
    assert refused(s, append(8, 3), InvalidInput).code == "length_exceeded"


def test_incomplete_stream_upload_cannot_complete() -> None:
    s = run(init(), append(0, 4))
    cmd = CompleteUpload(aggregate_id="u1", caller="alice", at=T, file_id="F", sha256=sha(1))
    assert refused(s, cmd, Conflict).code == "upload_incomplete"


def test_deferred_length() -> None:
    s = run(init(file_size=None), append(0, 4), append(4, 4))
    assert s.file_size is None and not s.all_received
    assert (
        refused(
            s, DeclareLength(aggregate_id="u1", caller="alice", at=T, file_size=7), InvalidInput
        ).code
        == "invalid_file_size"
    )
    s = run(DeclareLength(aggregate_id="u1", caller="alice", at=T, file_size=9), state=s)
    assert s.file_size == 9
    assert decide(s, DeclareLength(aggregate_id="u1", caller="alice", at=T, file_size=9)) == []
    assert (
        refused(
            s, DeclareLength(aggregate_id="u1", caller="alice", at=T, file_size=10), Conflict
        ).code
        == "length_already_set"
    )
    s = run(append(8, 1), state=s)
    assert s.all_received


def test_modes_do_not_mix() -> None:
    s = run(init())
    chunk = StoreChunk(aggregate_id="u1", caller="alice", at=T, index=0, size=4, sha256=sha(0))
    assert refused(s, chunk, Conflict).code == "wrong_upload_mode"
    c = run(init(mode="chunks"))
    assert refused(c, append(0, 4), Conflict).code == "wrong_upload_mode"


def test_partial_uploads_complete_only_through_a_final() -> None:
    s = run(init(partial=True), append(0, 10))
    cmd = CompleteUpload(aggregate_id="u1", caller="alice", at=T, file_id="F", sha256=sha(1))
    assert refused(s, cmd, Conflict).code == "partial_upload"


def test_final_upload_is_the_concatenation_and_is_complete_at_once() -> None:
    manifest = [
        {"sha256": sha("a"), "size": 3},
        {"sha256": sha("b"), "size": 0},
        {"sha256": sha("c"), "size": 5},
    ]
    s = run(init(mode="final", file_size=8, parts=["p1", "p2"], manifest=manifest))
    assert s.offset == 8 and s.all_received and [p["size"] for p in s.manifest()] == [3, 0, 5]
    assert refused(s, append(8, 1), Conflict).code == "wrong_upload_mode"
    bad = init(aggregate_id="u2", mode="final", file_size=9, parts=["p1"], manifest=manifest)
    assert refused(None, bad, InvalidInput).code == "invalid_manifest"
    assert (
        refused(None, init(aggregate_id="u3", manifest=manifest), InvalidInput).code
        == "invalid_manifest"
    )


def test_other_users_cannot_append() -> None:
    s = run(init())
    assert refused(s, append(0, 4, caller="mallory"), NotFound).kind == "not_found"


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=20))
def test_any_split_of_the_bytes_adds_up(sizes: list[int]) -> None:
    total = sum(sizes)
    s = run(init(file_size=total))
    offset = 0
    for n in sizes:
        s = run(append(offset, n), state=s)
        offset += n
    assert s.offset == total and s.all_received
    assert sum(p["size"] for p in s.manifest()) == total


def test_expiry_is_refused_after_fresh_activity() -> None:
    from datetime import timedelta

    from domain.commands import ExpireUpload, command_from_dict, command_to_dict

    s = run(init(), append(0, 4))  # last activity at T
    late = ExpireUpload(
        aggregate_id="u1", caller="alice", at=T, idle_before=T - timedelta(seconds=1)
    )
    assert refused(s, late, Conflict).code == "upload_active"
    ok = ExpireUpload(aggregate_id="u1", caller="alice", at=T, idle_before=T + timedelta(seconds=1))
    assert run(ok, state=s).status == UploadStatus.EXPIRED
    # the cutoff survives the trip over the bus
    back = command_from_dict(command_to_dict(ok))
    assert isinstance(back, ExpireUpload) and back.idle_before == ok.idle_before
