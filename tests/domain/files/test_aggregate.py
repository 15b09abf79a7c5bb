"""Pure unit tests of the file aggregate."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import files
from domain.commands import Command, CreateFile, DeleteFile, StoreChunk
from domain.errors import Conflict, DomainError, InvalidInput, NotFound
from domain.events import NewEvent
from domain.files import FileState
from domain.files.decide import _owned
from domain.kernel import Event
from domain.registry import AGGREGATES
from tests.domain.deciding import refused_by, run_all
from tests.domain.recorded import recorded

T0 = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
FID = "f-123"
STREAM = f"file-{FID}"


def sha(x: object) -> str:
    return hashlib.sha256(repr(x).encode()).hexdigest()


MANIFEST = [
    {"sha256": sha(0), "size": 10},
    {"sha256": sha(1), "size": 10},
    {"sha256": sha(2), "size": 5},
]


def create(**kw: Any) -> CreateFile:
    base: dict[str, Any] = {
        "aggregate_id": FID,
        "caller": "alice",
        "at": T0,
        "owner": "alice",
        "name": "report.pdf",
        "size": 25,
        "content_type": "application/pdf",
        "sha256": sha("file"),
        "manifest": copy.deepcopy(MANIFEST),
        "upload_id": "up-1",
    }
    base.update(kw)
    return CreateFile(**base)


def delete(**kw: Any) -> DeleteFile:
    return DeleteFile(**{"aggregate_id": FID, "caller": "alice", "at": T0 + timedelta(1), **kw})


def run(*cmds: Command, state: FileState | None = None) -> FileState:
    return run_all(files.decide, files.evolve, cmds, state)


def refused(state: FileState | None, cmd: Command, kind: type[DomainError]) -> DomainError:
    return refused_by(files.decide, state, cmd, kind)


def test_create_emits_file_created_and_folds() -> None:
    events = files.decide(None, create(bucket="docs", metadata={"k": "v"}))
    assert [e.type for e in events] == ["FileCreated"]
    state = AGGREGATES["files"].fold(recorded(events, STREAM, T0))
    assert state == FileState(
        id=FID,
        owner="alice",
        name="report.pdf",
        size=25,
        content_type="application/pdf",
        sha256=sha("file"),
        manifest=((sha(0), 10), (sha(1), 10), (sha(2), 5)),
        bucket="docs",
        created_at=T0,
        updated_at=T0,
        metadata={"k": "v"},
        upload_id="up-1",
        deleted=False,
    )


def test_create_keeps_only_sha_and_size_of_manifest_entries() -> None:
    manifest = [{"sha256": sha(0), "size": 10, "offset": 0, "junk": True}]
    events = files.decide(None, create(size=10, manifest=manifest))
    assert events[0].data["manifest"] == [{"sha256": sha(0), "size": 10}]


def test_create_an_empty_file() -> None:
    state = run(create(size=0, manifest=[]))
    assert state.size == 0
    assert state.manifest == ()


def test_create_again_from_the_same_upload_is_idempotent() -> None:
    state = run(create())
    assert files.decide(state, create()) == []
    assert files.decide(state, create(at=T0 + timedelta(hours=1))) == []


@pytest.mark.parametrize("upload_id", ["up-2", None])
def test_create_again_from_another_upload_conflicts(upload_id: str | None) -> None:
    state = run(create())
    err = refused(state, create(upload_id=upload_id), Conflict)
    assert err.code == "file_exists"


def test_create_over_a_file_without_upload_conflicts() -> None:
    state = run(create(upload_id=None))
    refused(state, create(upload_id=None), Conflict)


@pytest.mark.parametrize(
    ("size", "manifest"),
    [
        (24, MANIFEST),
        (26, MANIFEST),
        (-1, []),
        (1, []),
        (0, [{"sha256": sha(0), "size": 1}]),
    ],
)
def test_manifest_not_adding_up_is_invalid(size: int, manifest: list[dict[str, Any]]) -> None:
    err = refused(None, create(size=size, manifest=manifest), InvalidInput)
    assert err.code == "invalid_manifest"


@pytest.mark.parametrize("bad", ["", "nothex", sha(0).upper(), sha(0)[:-1]])
def test_manifest_chunk_needs_a_sha256(bad: str) -> None:
    manifest = [{"sha256": sha(0), "size": 10}, {"sha256": bad, "size": 15}]
    err = refused(None, create(manifest=manifest), InvalidInput)
    assert err.code == "invalid_manifest"


def test_manifest_chunk_sizes_must_not_be_negative() -> None:
    manifest = [{"sha256": sha(0), "size": 30}, {"sha256": sha(1), "size": -5}]
    err = refused(None, create(size=25, manifest=manifest), InvalidInput)
    assert err.code == "invalid_manifest"


def test_delete() -> None:
    state = run(create())
    events = files.decide(state, delete())
    assert [e.type for e in events] == ["FileDeleted"]
    state = run(delete(), state=state)
    assert state.deleted is True
    assert state.updated_at == T0 + timedelta(1)
    assert state.created_at == T0
    assert state.manifest == ((sha(0), 10), (sha(1), 10), (sha(2), 5))


def test_delete_twice_is_idempotent() -> None:
    state = run(create(), delete())
    assert files.decide(state, delete()) == []
    assert files.decide(state, delete(caller="root", admin=True)) == []


def test_admin_may_delete_any_file() -> None:
    state = run(create(), delete(caller="root", admin=True))
    assert state.deleted is True


def test_other_users_file_is_indistinguishable_from_a_missing_one() -> None:
    state = run(create())
    theirs = refused(state, delete(caller="bob"), NotFound)
    missing = refused(None, delete(caller="bob"), NotFound)
    assert theirs.code == "file_not_found"
    assert theirs.to_dict() == missing.to_dict()


def test_deleted_file_is_not_found_for_other_users() -> None:
    state = run(create(), delete())
    theirs = refused(state, delete(caller="bob"), NotFound)
    assert theirs.to_dict() == refused(None, delete(caller="bob"), NotFound).to_dict()


def test_deleted_file_is_not_found_through_the_ownership_check() -> None:
    """Any command that needs an existing file (files._owned) sees a deleted one as missing."""
    state = run(create(), delete())
    for caller, admin in (("alice", False), ("root", True)):
        cmd = delete(caller=caller, admin=admin)
        with pytest.raises(NotFound) as info:
            _owned(state, cmd)
        assert info.value.code == "file_not_found"
    # ... while a live file passes it for its owner and an admin, not for others.
    live = run(create())
    assert _owned(live, delete()) is live
    assert _owned(live, delete(caller="root", admin=True)) is live
    with pytest.raises(NotFound):
        _owned(live, delete(caller="bob"))


def test_files_refuse_commands_for_other_aggregates() -> None:
    cmd = StoreChunk(aggregate_id=FID, caller="alice", at=T0, index=0, size=1, sha256=sha(0))
    err = refused(run(create()), cmd, InvalidInput)
    assert err.code == "unknown_command"


def test_evolve_ignores_unknown_events_and_events_without_state() -> None:
    state = run(create())
    fold = AGGREGATES["files"].fold
    unknown = NewEvent("SomethingNew", {"at": T0.isoformat()})
    assert fold(recorded([unknown], STREAM, T0), state) is state  # a newer producer's type: skipped
    assert files.evolve(state, Event()) is state
    assert fold(recorded([NewEvent("FileDeleted", {"at": T0.isoformat()})], STREAM, T0)) is None
    assert fold(recorded([NewEvent("SomethingNew", {})], STREAM, T0)) is None


def test_decide_does_not_mutate_state_and_evolve_returns_new_state() -> None:
    state = run(create())
    before = copy.deepcopy(state)
    events = files.decide(state, delete())
    assert state == before
    after = files.evolve(state, events[0])
    assert state == before
    assert after != state
