"""Pure unit tests of UpdateFile: rename, move between buckets, user metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import files
from domain.commands import CreateFile, DeleteFile, UpdateFile
from domain.errors import InvalidInput, NotFound
from domain.files import FileState
from domain.files.events import FileUpdated
from domain.values import MAX_METADATA_BYTES

T0 = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
H = "a" * 64


def made() -> FileState:
    cmd = CreateFile(
        aggregate_id="f1",
        caller="alice",
        at=T0,
        owner="alice",
        name="a.txt",
        size=3,
        content_type="text/plain",
        sha256=H,
        manifest=[{"sha256": H, "size": 3}],
        metadata={"k": "v"},
    )
    st = None
    for e in files.decide(None, cmd):
        st = files.evolve(st, e)
    assert st is not None
    return st


def update(**kw: Any) -> UpdateFile:
    return UpdateFile(**{"aggregate_id": "f1", "caller": "alice", "at": T1, **kw})


def test_rename_move_and_metadata_in_one_event_with_all_values() -> None:
    st = made()
    evs = files.decide(st, update(name="b.txt"))
    assert evs == [FileUpdated(name="b.txt", bucket="default", metadata={"k": "v"}, at=T1)]
    st2 = files.evolve(st, evs[0])
    assert st2 is not None and (st2.name, st2.updated_at, st2.created_at) == ("b.txt", T1, T0)

    evs = files.decide(st2, update(bucket="pics", metadata={"x": "ü"}))
    st3 = files.evolve(st2, evs[0])
    assert st3 is not None and (st3.bucket, st3.metadata, st3.name) == ("pics", {"x": "ü"}, "b.txt")
    # Back to no bucket; empty metadata clears it.
    st4 = files.evolve(st3, files.decide(st3, update(bucket="default", metadata={}))[0])
    assert st4 is not None and (st4.bucket, st4.metadata) == ("default", {})


def test_no_change_records_nothing() -> None:
    st = made()
    assert files.decide(st, update()) == []
    assert files.decide(st, update(name="a.txt", bucket="default", metadata={"k": "v"})) == []


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"name": ""}, "invalid_name"),
        ({"name": "a/b"}, "invalid_name"),
        ({"name": ".."}, "invalid_name"),
        ({"name": "x\x00y"}, "invalid_name"),
        ({"name": "n" * 1025}, "invalid_name"),
        ({"bucket": "Not_A_Bucket"}, "invalid_bucket_name"),
        ({"metadata": {"k": "v" * MAX_METADATA_BYTES}}, "invalid_metadata"),
        ({"metadata": {"": "v"}}, "invalid_metadata"),
        ({"metadata": {"k": 1}}, "invalid_metadata"),
    ],
)
def test_bad_updates_are_refused(kw: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidInput) as e:
        files.decide(made(), update(**kw))
    assert e.value.code == code


def test_metadata_at_the_limit_is_accepted() -> None:
    md = {"k": "v" * (MAX_METADATA_BYTES - 1)}
    assert len(files.decide(made(), update(metadata=md))) == 1


def test_someone_elses_or_a_deleted_file_is_not_found() -> None:
    st = made()
    with pytest.raises(NotFound):
        files.decide(st, update(caller="bob", name="b.txt"))
    assert files.decide(st, update(caller="root", admin=True, name="b.txt"))
    gone = files.evolve(
        st, files.decide(st, DeleteFile(aggregate_id="f1", caller="alice", at=T1))[0]
    )
    with pytest.raises(NotFound):
        files.decide(gone, update(name="b.txt"))
