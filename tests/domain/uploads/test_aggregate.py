"""Pure unit tests of the upload aggregate: `decide` refuses or emits, `evolve` folds."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import uploads
from domain.commands import (
    AbortUpload,
    Command,
    CompleteUpload,
    ExpireUpload,
    FailUpload,
    InitiateUpload,
    StoreChunk,
)
from domain.errors import Conflict, DomainError, Gone, InvalidInput, NotFound, Unprocessable
from domain.events import NewEvent
from domain.kernel import Event
from domain.registry import AGGREGATES
from domain.uploads import UploadState, UploadStatus
from domain.values import MAX_METADATA_BYTES
from tests.domain.deciding import refused_by, run_all
from tests.domain.recorded import recorded

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
UID = "0b7e5b1c-upload"
STREAM = f"upload-{UID}"
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def sha(x: object) -> str:
    return hashlib.sha256(repr(x).encode()).hexdigest()


FULL_SHA = sha("the whole file")


def initiate(**kw: Any) -> InitiateUpload:
    base: dict[str, Any] = {
        "aggregate_id": UID,
        "caller": "alice",
        "at": T0,
        "file_name": "report.pdf",
        "file_size": 25,
        "chunk_size": 10,
    }
    base.update(kw)
    return InitiateUpload(**base)


def store(index: int, size: int, digest: str | None = None, **kw: Any) -> StoreChunk:
    base: dict[str, Any] = {"aggregate_id": UID, "caller": "alice", "at": T0 + timedelta(1)}
    base.update(kw)
    return StoreChunk(
        index=index, size=size, sha256=digest if digest is not None else sha(index), **base
    )


def complete(digest: str = FULL_SHA, file_id: str = "file-1", **kw: Any) -> CompleteUpload:
    base: dict[str, Any] = {"aggregate_id": UID, "caller": "alice", "at": T0 + timedelta(2)}
    base.update(kw)
    return CompleteUpload(file_id=file_id, sha256=digest, **base)


def abort(**kw: Any) -> AbortUpload:
    return AbortUpload(**{"aggregate_id": UID, "caller": "alice", "at": T0, **kw})


def fail(reason: str = "disk on fire", **kw: Any) -> FailUpload:
    return FailUpload(reason=reason, **{"aggregate_id": UID, "caller": "alice", "at": T0, **kw})


def expire(**kw: Any) -> ExpireUpload:
    return ExpireUpload(**{"aggregate_id": UID, "caller": "alice", "at": T0, **kw})


def apply(state: UploadState | None, cmd: Command) -> tuple[UploadState, list[NewEvent]]:
    events = uploads.decide(state, cmd)
    for e in events:
        state = uploads.evolve(state, e)
    assert state is not None
    return state, events


def run(*cmds: Command, state: UploadState | None = None) -> UploadState:
    return run_all(uploads.decide, uploads.evolve, cmds, state)


def refused(state: UploadState | None, cmd: Command, kind: type[DomainError]) -> DomainError:
    return refused_by(uploads.decide, state, cmd, kind)


# ---- initiate ---------------------------------------------------------------------------


def test_initiate_emits_initiated_and_folds_to_initiated_state() -> None:
    cmd = initiate(
        content_type="application/pdf",
        sha256=FULL_SHA,
        bucket="docs",
        metadata={"project": "cairn"},
    )
    events = uploads.decide(None, cmd)
    assert [e.type for e in events] == ["UploadInitiated"]
    assert events[0].schema_version == 2
    state = AGGREGATES["uploads"].fold(recorded(events, STREAM, T0))
    assert state.id == UID
    assert state.owner == "alice"
    assert state.file_name == "report.pdf"
    assert state.file_size == 25
    assert state.chunk_size == 10
    assert state.total_chunks == 3
    assert state.content_type == "application/pdf"
    assert state.sha256 == FULL_SHA
    assert state.bucket == "docs"
    assert state.metadata == {"project": "cairn"}
    assert state.status == UploadStatus.INITIATED
    assert state.created_at == T0 == state.updated_at
    assert state.chunks == {}
    assert state.bytes_received == 0
    assert state.missing_chunks == [0, 1, 2]


def test_initiate_does_not_alias_the_commands_metadata() -> None:
    meta = {"k": "v"}
    events = uploads.decide(None, initiate(metadata=meta))
    meta["k"] = "changed"
    assert events[0].data["metadata"] == {"k": "v"}


@pytest.mark.parametrize(
    "file_name",
    [
        "",
        "   ",
        "a\nb",
        "a\rb",
        "tab\there",
        "nul\x00",
        "esc\x1b[31m",
        "del\x7f",
        "x" * (uploads.MAX_FILE_NAME + 1),
    ],
)
def test_initiate_rejects_bad_file_names(file_name: str) -> None:
    err = refused(None, initiate(file_name=file_name), InvalidInput)
    assert err.code == "invalid_file_name"


@pytest.mark.parametrize("file_name", ["nel\x85name", "csi\x9b31m"])
def test_initiate_rejects_c1_control_characters(file_name: str) -> None:
    err = refused(None, initiate(file_name=file_name), InvalidInput)
    assert err.code == "invalid_file_name"


@pytest.mark.parametrize(
    "file_name", ["x" * uploads.MAX_FILE_NAME, "résumé ✓.pdf", " leading space", "a b.c"]
)
def test_initiate_accepts_reasonable_file_names(file_name: str) -> None:
    state = run(initiate(file_name=file_name))
    assert state.file_name == file_name


@pytest.mark.parametrize(
    "metadata",
    [
        {"k": "v" * MAX_METADATA_BYTES},  # over the bound: its events would not fit the bus
        {f"k{i}": "v" * 100 for i in range(90)},
        {"": "v"},
        {"k" * 256: "v"},
        {"k": "a\x00b"},  # PostgreSQL cannot store it
        {"k": 1},
    ],
)
def test_initiate_rejects_metadata_a_file_could_not_hold(metadata: Any) -> None:
    err = refused(None, initiate(metadata=metadata), InvalidInput)
    assert err.code == "invalid_metadata" and err.details == {"max_bytes": MAX_METADATA_BYTES}


def test_initiate_accepts_metadata_up_to_the_bound() -> None:
    metadata = {"k": "v" * (MAX_METADATA_BYTES - len("k") - len("filename")), "filename": ""}
    assert run(initiate(metadata=metadata)).metadata == metadata


@pytest.mark.parametrize("file_size", [-1, -(2**40), True, False, 1.5, "25", None])
def test_initiate_rejects_bad_file_size(file_size: Any) -> None:
    err = refused(None, initiate(file_size=file_size), InvalidInput)
    assert err.code == "invalid_file_size"


@pytest.mark.parametrize("chunk_size", [0, -1, -(8 * MiB), True, False, 8.0, "10", None])
def test_initiate_rejects_bad_chunk_size(chunk_size: Any) -> None:
    err = refused(None, initiate(chunk_size=chunk_size), InvalidInput)
    assert err.code == "invalid_chunk_size"


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "abc",
        FULL_SHA[:-1],
        FULL_SHA + "0",
        FULL_SHA.upper(),
        "g" * 64,
        " " + FULL_SHA[1:],
    ],
)
def test_initiate_rejects_bad_sha256(digest: str) -> None:
    err = refused(None, initiate(sha256=digest), InvalidInput)
    assert err.code == "invalid_sha256"


def test_initiate_rejects_sha256_with_trailing_newline() -> None:
    err = refused(None, initiate(sha256=FULL_SHA + "\n"), InvalidInput)
    assert err.code == "invalid_sha256"


@pytest.mark.parametrize(
    ("file_size", "chunk_size", "expected"),
    [
        (0, 10, 0),
        (1, 10, 1),
        (10, 10, 1),
        (11, 10, 2),
        (25, 10, 3),
        (30, 10, 3),
        (1, 1, 1),
        (5 * GiB, 8 * MiB, 640),
        (5 * GiB + 1, 8 * MiB, 641),
        (2 * GiB, 2 * GiB, 1),
        (2 * GiB + 1, 2 * GiB, 2),
        (3 * GiB, 1 * GiB, 3),
        (2**40, 2**20, 2**20),
    ],
)
def test_total_chunks(file_size: int, chunk_size: int, expected: int) -> None:
    state = run(initiate(file_size=file_size, chunk_size=chunk_size))
    assert state.total_chunks == expected
    assert state.file_size == file_size
    assert len(state.missing_chunks) == expected


def test_large_upload_last_chunk_size_past_2_gib() -> None:
    """5 GiB + 3 bytes in 8 MiB chunks: 641 chunks, the last one 3 bytes at offset 5 GiB."""
    state = run(initiate(file_size=5 * GiB + 3, chunk_size=8 * MiB))
    assert state.total_chunks == 641
    refused(state, store(640, 8 * MiB), InvalidInput)
    state, events = apply(state, store(640, 3))
    assert events[0].data["offset"] == 5 * GiB
    assert state.chunks[640].size == 3
    state, events = apply(state, store(639, 8 * MiB))
    assert events[0].data["offset"] == 5 * GiB - 8 * MiB


def test_reinitiate_same_caller_same_params_is_idempotent() -> None:
    cmd = initiate(sha256=FULL_SHA, metadata={"a": "b"}, bucket="docs", content_type="x/y")
    state = run(cmd)
    assert uploads.decide(state, cmd) == []
    # ... also once chunks have arrived, and with a later timestamp.
    state = run(store(0, 10), state=state)
    replay = dataclasses.replace(cmd, at=T0 + timedelta(hours=1), command_id="again")
    assert uploads.decide(state, replay) == []


@pytest.mark.parametrize(
    "change",
    [
        {"file_name": "other.pdf"},
        {"file_size": 26},
        {"caller": "bob"},
    ],
)
def test_reinitiate_with_other_name_size_or_caller_conflicts(change: dict[str, Any]) -> None:
    state = run(initiate())
    err = refused(state, initiate(**change), Conflict)
    assert err.code == "upload_exists"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"chunk_size": 5}, id="chunk_size"),
        pytest.param({"sha256": sha("other")}, id="sha256"),
        pytest.param({"content_type": "text/plain"}, id="content_type"),
        pytest.param({"bucket": "other"}, id="bucket"),
        pytest.param({"metadata": {"x": "y"}}, id="metadata"),
    ],
)
def test_reinitiate_with_other_params_conflicts(change: dict[str, Any]) -> None:
    state = run(initiate(sha256=FULL_SHA))
    err = refused(state, initiate(**{"sha256": FULL_SHA, **change}), Conflict)
    assert err.code == "upload_exists"


def test_reinitiate_is_validated_first() -> None:
    state = run(initiate())
    refused(state, initiate(file_name=""), InvalidInput)


# ---- store chunk ------------------------------------------------------------------------


def test_first_chunk_moves_initiated_to_in_progress() -> None:
    state = run(initiate())
    assert state.status == UploadStatus.INITIATED
    state, events = apply(state, store(1, 10))
    assert [e.type for e in events] == ["UploadChunkStored"]
    assert events[0].data == {
        "index": 1,
        "offset": 10,
        "size": 10,
        "sha256": sha(1),
        "at": (T0 + timedelta(1)).isoformat(),
    }
    assert state.status == UploadStatus.IN_PROGRESS
    assert state.updated_at == T0 + timedelta(1)
    assert state.created_at == T0
    assert state.bytes_received == 10
    assert state.missing_chunks == [0, 2]
    state = run(store(2, 5), state=state)
    assert state.status == UploadStatus.IN_PROGRESS
    assert state.bytes_received == 15
    assert state.chunks[2] == uploads.Chunk(index=2, offset=20, size=5, sha256=sha(2))


@pytest.mark.parametrize("index", [-1, -100, 3, 4, 10**12])
def test_chunk_index_out_of_range(index: int) -> None:
    state = run(initiate())
    err = refused(state, store(index, 10), InvalidInput)
    assert err.code == "chunk_index_out_of_range"
    assert err.details["index"] == index


def test_zero_byte_upload_has_no_valid_chunk_index() -> None:
    state = run(initiate(file_size=0))
    err = refused(state, store(0, 0), InvalidInput)
    assert err.code == "chunk_index_out_of_range"


@pytest.mark.parametrize(("index", "size"), [(0, 9), (0, 11), (1, 0), (1, 5), (0, -10)])
def test_middle_chunk_must_be_exactly_chunk_size(index: int, size: int) -> None:
    state = run(initiate())
    err = refused(state, store(index, size), InvalidInput)
    assert err.code == "wrong_chunk_size"
    assert err.details["expected"] == 10
    assert err.details["received"] == size


@pytest.mark.parametrize("size", [10, 4, 6, 0, 25])
def test_last_chunk_must_be_exactly_the_remainder(size: int) -> None:
    state = run(initiate())  # 25 bytes in 10-byte chunks: the last one is 5 bytes
    err = refused(state, store(2, size), InvalidInput)
    assert err.code == "wrong_chunk_size"
    assert err.details["expected"] == 5
    assert run(store(2, 5), state=state).chunks[2].size == 5


def test_last_chunk_of_an_exact_multiple_is_full_size() -> None:
    state = run(initiate(file_size=30))
    refused(state, store(2, 0), InvalidInput)
    refused(state, store(2, 5), InvalidInput)
    assert run(store(2, 10), state=state).bytes_received == 10


def test_single_short_chunk() -> None:
    state = run(initiate(file_size=3, chunk_size=10))
    refused(state, store(0, 10), InvalidInput)
    state = run(store(0, 3), complete(), state=state)
    assert state.status == UploadStatus.COMPLETED


@pytest.mark.parametrize("digest", ["", "abc", sha(0).upper(), "z" * 64, sha(0)[:-1]])
def test_chunk_with_bad_sha256_is_refused(digest: str) -> None:
    state = run(initiate())
    err = refused(state, store(0, 10, digest), InvalidInput)
    assert err.code == "invalid_sha256"


def test_chunk_sha256_with_trailing_newline_is_refused() -> None:
    state = run(initiate())
    err = refused(state, store(0, 10, sha(0) + "\n"), InvalidInput)
    assert err.code == "invalid_sha256"


def test_same_chunk_again_is_idempotent() -> None:
    state = run(initiate(), store(0, 10))
    assert uploads.decide(state, store(0, 10)) == []
    # A replay from another moment is still the same chunk.
    assert uploads.decide(state, store(0, 10, at=T0 + timedelta(days=3))) == []


@pytest.mark.parametrize(("size", "digest"), [(10, sha("other bytes")), (9, sha(0))])
def test_same_chunk_with_other_bytes_conflicts(size: int, digest: str) -> None:
    state = run(initiate(), store(0, 10))
    err = refused(state, store(0, size, digest), Conflict)
    assert err.code == "chunk_conflict"
    assert err.details["index"] == 0
    assert state.chunks[0].sha256 == sha(0)


def test_chunk_replay_after_completion_is_idempotent_but_other_bytes_conflict() -> None:
    state = run(initiate(), store(0, 10), store(1, 10), store(2, 5), complete())
    assert state.status == UploadStatus.COMPLETED
    assert uploads.decide(state, store(1, 10)) == []
    err = refused(state, store(1, 10, sha("x")), Conflict)
    assert err.code == "chunk_conflict"


@pytest.mark.parametrize("end", [abort, lambda: fail("boom")], ids=["aborted", "failed"])
def test_chunk_on_a_terminated_upload_conflicts(end: Any) -> None:
    state = run(initiate(), store(0, 10), end())
    for cmd in (store(1, 10), store(0, 10)):  # a new chunk and a replay alike
        err = refused(state, cmd, Conflict)
        assert err.code == "upload_not_active"
        assert err.details["status"] == state.status.value


def test_chunk_on_an_expired_upload_is_gone() -> None:
    state = run(initiate(), store(0, 10), expire())
    err = refused(state, store(1, 10), Gone)
    assert err.code == "upload_expired"


# ---- ownership ------------------------------------------------------------------------


def _all_non_initiate(**kw: Any) -> list[Command]:
    return [store(0, 10, **kw), complete(**kw), abort(**kw), fail(**kw), expire(**kw)]


@pytest.mark.parametrize("stage", ["initiated", "in_progress", "completed", "aborted"])
def test_another_users_upload_is_indistinguishable_from_a_missing_one(stage: str) -> None:
    cmds: list[Command] = [initiate()]
    if stage != "initiated":
        cmds.append(store(0, 10))
    if stage == "completed":
        cmds += [store(1, 10), store(2, 5), complete()]
    if stage == "aborted":
        cmds.append(abort())
    state = run(*cmds)
    for cmd in _all_non_initiate(caller="bob"):
        theirs = refused(state, cmd, NotFound)
        missing = refused(None, cmd, NotFound)
        assert theirs.to_dict() == missing.to_dict()
        assert str(theirs) == str(missing)


def test_unknown_id_is_not_found_even_for_admin() -> None:
    for cmd in _all_non_initiate(admin=True):
        err = refused(None, cmd, NotFound)
        assert err.details == {"id": UID}


def test_wrong_chunk_of_another_users_upload_is_still_not_found() -> None:
    """Validation must not run before the ownership check, or it would leak the upload."""
    state = run(initiate())
    refused(state, store(99, 1, "bad", caller="bob"), NotFound)
    refused(state, complete(caller="bob"), NotFound)


def test_admin_may_act_on_any_upload() -> None:
    state = run(initiate())
    state = run(
        store(0, 10, caller="root", admin=True),
        store(1, 10, caller="root", admin=True),
        store(2, 5),
        complete(caller="root", admin=True),
        state=state,
    )
    assert state.status == UploadStatus.COMPLETED
    assert state.owner == "alice"
    for end in (abort, fail, expire):
        s = run(initiate(), end(caller="root", admin=True))
        assert s.status != UploadStatus.INITIATED
        assert s.owner == "alice"


# ---- complete -------------------------------------------------------------------------


def test_complete_with_missing_chunks_lists_them() -> None:
    state = run(initiate(file_size=45), store(0, 10), store(2, 10))
    err = refused(state, complete(), Conflict)
    assert err.code == "chunks_missing"
    assert err.details["missing_chunks"] == [1, 3, 4]
    assert err.details["missing_count"] == 3


def test_complete_with_no_chunks_lists_every_chunk() -> None:
    state = run(initiate())
    err = refused(state, complete(), Conflict)
    assert err.details["missing_chunks"] == [0, 1, 2]


def test_complete_with_mismatching_declared_checksum_is_unprocessable() -> None:
    state = run(initiate(sha256=FULL_SHA), store(0, 10), store(1, 10), store(2, 5))
    err = refused(state, complete(sha("something else")), Unprocessable)
    assert err.code == "checksum_mismatch"
    assert err.details == {"declared": FULL_SHA, "actual": sha("something else")}
    assert state.status == UploadStatus.IN_PROGRESS


def test_complete_emits_manifest_in_index_order() -> None:
    state = run(initiate(file_size=45, sha256=FULL_SHA))
    for i in (4, 1, 3, 0, 2):
        state = run(store(i, 5 if i == 4 else 10), state=state)
    state, events = apply(state, complete(FULL_SHA, file_id="file-42"))
    assert [e.type for e in events] == ["UploadCompleted"]
    data = events[0].data
    assert data["file_id"] == "file-42"
    assert data["sha256"] == FULL_SHA
    assert data["size"] == 45
    assert data["manifest"] == [
        {"sha256": sha(0), "size": 10},
        {"sha256": sha(1), "size": 10},
        {"sha256": sha(2), "size": 10},
        {"sha256": sha(3), "size": 10},
        {"sha256": sha(4), "size": 5},
    ]
    assert state.status == UploadStatus.COMPLETED
    assert state.file_id == "file-42"
    assert state.completed_sha256 == FULL_SHA
    assert state.updated_at == T0 + timedelta(2)


def test_complete_without_declared_checksum_takes_the_computed_one() -> None:
    state = run(initiate(file_size=10), store(0, 10))
    state, events = apply(state, complete(sha("computed")))
    assert events[0].data["sha256"] == sha("computed")
    assert state.completed_sha256 == sha("computed")


def test_complete_twice_is_idempotent() -> None:
    state = run(initiate(), store(0, 10), store(1, 10), store(2, 5), complete())
    assert uploads.decide(state, complete()) == []
    assert state.file_id == "file-1"


def test_zero_byte_upload_completes_with_empty_manifest() -> None:
    state = run(initiate(file_size=0, sha256=hashlib.sha256(b"").hexdigest()))
    assert state.missing_chunks == []
    state, events = apply(state, complete(hashlib.sha256(b"").hexdigest(), file_id="empty"))
    assert events[0].data["manifest"] == []
    assert events[0].data["size"] == 0
    assert state.status == UploadStatus.COMPLETED
    assert state.file_id == "empty"


def test_complete_on_aborted_conflicts_and_on_expired_is_gone() -> None:
    full = [initiate(), store(0, 10), store(1, 10), store(2, 5)]
    err = refused(run(*full, abort()), complete(), Conflict)
    assert err.code == "upload_not_active"
    refused(run(*full, fail()), complete(), Conflict)
    refused(run(*full, expire()), complete(), Gone)


# ---- abort / fail / expire --------------------------------------------------------------

ENDINGS = [
    (abort, "UploadAborted", UploadStatus.ABORTED),
    (fail, "UploadFailed", UploadStatus.FAILED),
    (expire, "UploadExpired", UploadStatus.EXPIRED),
]


@pytest.mark.parametrize(("make", "event_type", "status"), ENDINGS)
@pytest.mark.parametrize("chunks", [0, 1])
def test_ending_an_active_upload(
    make: Any, event_type: str, status: UploadStatus, chunks: int
) -> None:
    state = run(initiate(), *[store(i, 10) for i in range(chunks)])
    later = T0 + timedelta(days=7)
    state, events = apply(state, make(at=later))
    assert [e.type for e in events] == [event_type]
    assert state.status == status
    assert state.updated_at == later
    assert state.bytes_received == 10 * chunks
    # idempotent
    assert uploads.decide(state, make(at=later + timedelta(1))) == []


def test_fail_records_the_reason() -> None:
    state = run(initiate(), fail("blob store unreachable"))
    assert state.failure == "blob store unreachable"


@pytest.mark.parametrize(("make", "event_type", "status"), ENDINGS)
def test_ending_a_completed_upload_conflicts(
    make: Any, event_type: str, status: UploadStatus
) -> None:
    state = run(initiate(file_size=0), complete())
    err = refused(state, make(), Conflict)
    assert err.code == "upload_not_active"
    assert err.details["status"] == "COMPLETED"


@pytest.mark.parametrize(("first", "_t", "first_status"), ENDINGS)
@pytest.mark.parametrize(("second", "_t2", "second_status"), ENDINGS)
def test_one_ending_excludes_another(
    first: Any,
    _t: str,
    first_status: UploadStatus,
    second: Any,
    _t2: str,
    second_status: UploadStatus,
) -> None:
    state = run(initiate(), first())
    if first is second:
        assert uploads.decide(state, second()) == []
        return
    expected = Gone if first_status == UploadStatus.EXPIRED else Conflict
    refused(state, second(), expected)
    assert state.status == first_status


# ---- evolve ---------------------------------------------------------------------------


def test_evolve_ignores_unknown_event_types() -> None:
    state = run(initiate(), store(0, 10))
    fold = AGGREGATES["uploads"].fold
    unknown = NewEvent("SomethingNew", {"at": "2030-01-01T00:00:00+00:00"})
    assert fold(recorded([unknown], STREAM, T0), state) is state  # a newer producer's type: skipped
    assert uploads.evolve(state, Event()) is state
    assert fold(recorded([NewEvent("SomethingNew", {})], STREAM, T0)) is None


def test_evolve_of_non_initiating_events_without_state_stays_none() -> None:
    events = [
        *uploads.decide(run(initiate()), store(0, 10)),
        *uploads.decide(run(initiate()), abort()),
        *uploads.decide(run(initiate()), fail()),
        *uploads.decide(run(initiate()), expire()),
        *uploads.decide(run(initiate(file_size=0)), complete()),
    ]
    assert len(events) == 5
    for e in events:
        assert uploads.evolve(None, e) is None


def test_fold_through_the_registry_equals_folding_by_hand() -> None:
    state: UploadState | None = None
    produced: list[NewEvent] = []
    for cmd in (initiate(), store(2, 5), store(0, 10), store(1, 10), complete()):
        state, events = apply(state, cmd)
        produced += events
    assert AGGREGATES["uploads"].fold(recorded(produced, STREAM, T0)) == state
    # Folding is resumable from any prefix.
    mid = AGGREGATES["uploads"].fold(recorded(produced[:2], STREAM, T0))
    assert AGGREGATES["uploads"].fold(recorded(produced, STREAM, T0)[2:], mid) == state


# ---- properties -----------------------------------------------------------------------


@st.composite
def upload_shapes(draw: st.DrawFn) -> tuple[int, int, int]:
    """(file_size, chunk_size, expected number of chunks), sizes up to tens of GiB."""
    chunk_size = draw(st.integers(1, 4 * GiB))
    n = draw(st.integers(0, 40))
    file_size = 0 if n == 0 else draw(st.integers((n - 1) * chunk_size + 1, n * chunk_size))
    return file_size, chunk_size, n


@settings(max_examples=200, deadline=None)
@given(shape=upload_shapes(), data=st.data())
def test_storing_every_chunk_in_any_order_then_completing_succeeds(
    shape: tuple[int, int, int], data: st.DataObject
) -> None:
    file_size, chunk_size, n = shape
    state = run(initiate(file_size=file_size, chunk_size=chunk_size))
    assert state.total_chunks == n
    order = data.draw(st.permutations(range(n)))
    sizes = {i: chunk_size for i in range(n)}
    if n:
        sizes[n - 1] = file_size - (n - 1) * chunk_size
        assert 0 < sizes[n - 1] <= chunk_size
    received = 0
    for i in order:
        state, events = apply(state, store(i, sizes[i]))
        assert len(events) == 1
        assert events[0].data["offset"] == i * chunk_size
        received += sizes[i]
        assert state.bytes_received == received
        assert state.status == UploadStatus.IN_PROGRESS
    assert state.missing_chunks == []
    state, events = apply(state, complete())
    manifest = events[0].data["manifest"]
    assert [c["sha256"] for c in manifest] == [sha(i) for i in range(n)]
    assert sum(c["size"] for c in manifest) == file_size
    assert events[0].data["size"] == file_size
    assert state.status == UploadStatus.COMPLETED


# A small vocabulary of commands, good and bad, against a 25-byte upload in 10-byte chunks.
_callers = st.sampled_from([("alice", False), ("bob", False), ("root", True)])
_digests = st.sampled_from([sha(0), sha(1), sha(2), FULL_SHA, "nothex", sha(9)])


@st.composite
def commands(draw: st.DrawFn) -> Command:
    caller, admin = draw(_callers)
    kw: dict[str, Any] = {
        "caller": caller,
        "admin": admin,
        "at": T0 + timedelta(draw(st.integers(0, 9))),
    }
    kind = draw(st.sampled_from(["initiate", "store", "store", "store", "complete", "end"]))
    if kind == "initiate":
        return initiate(
            file_size=draw(st.sampled_from([25, 26, -1])),
            file_name=draw(st.sampled_from(["report.pdf", "", "b.txt"])),
            sha256=draw(st.sampled_from([None, FULL_SHA])),
            **kw,
        )
    if kind == "store":
        return store(
            draw(st.integers(-1, 3)), draw(st.sampled_from([10, 5, 0, 11])), draw(_digests), **kw
        )
    if kind == "complete":
        return complete(draw(st.sampled_from([FULL_SHA, sha("nope")])), **kw)
    end = draw(st.sampled_from(["abort", "fail", "expire"]))
    if end == "abort":
        return abort(**kw)
    return fail(**kw) if end == "fail" else expire(**kw)


TERMINAL = {UploadStatus.COMPLETED, UploadStatus.ABORTED, UploadStatus.FAILED, UploadStatus.EXPIRED}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cmds=st.lists(commands(), max_size=25))
def test_decide_is_pure_and_evolve_total_over_random_histories(cmds: list[Command]) -> None:
    state: UploadState | None = None
    produced: list[NewEvent] = []
    for cmd in cmds:
        before = copy.deepcopy(state)
        try:
            events = uploads.decide(state, cmd)
        except DomainError:
            assert state == before  # refusing changes nothing
            continue
        assert state == before  # deciding changes nothing either
        assert uploads.decide(state, cmd) == events  # and is deterministic
        for e in events:
            new = uploads.evolve(state, e)  # never raises for its own events
            assert isinstance(new, UploadState)
            assert state == before  # evolve does not mutate the previous state
            if state is not None:
                assert new.id == state.id and new.owner == state.owner
                if state.status in TERMINAL:
                    # Only a chunk replay could reach here, and replays emit nothing.
                    pytest.fail(f"{e.type} emitted on a {state.status} upload")
            state = new
            before = copy.deepcopy(state)
        produced += events
        if state is not None:
            assert state.bytes_received <= state.file_size
            assert set(state.chunks) <= set(range(state.total_chunks))
    if produced:
        assert AGGREGATES["uploads"].fold(recorded(produced, STREAM, T0)) == state
