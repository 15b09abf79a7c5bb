"""Pure unit tests of PutObject (create or replace an object in one event), the key rules
and the object id, built through `domain.policies.put_object`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import files, policies
from domain.commands import DeleteFile, UpdateFile
from domain.errors import Conflict, InvalidInput, PreconditionFailed
from domain.files import FileState
from domain.files.events import FileCreated, FileDeleted, FileReplaced
from domain.files.keys import object_file_id, object_key_problem, object_name
from domain.kernel import Event

T0 = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
H1, H2 = "a" * 64, "b" * 64


def put(key: str = "k/x.txt", sha: str = H1, at: datetime = T0, **kw: object) -> object:
    return policies.put_object(
        bucket="bkt", key=key, owner="alice", size=3, sha256=sha, manifest=[(sha, 3)],
        content_type="text/plain", caller="alice", at=at, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def apply(st: FileState | None, events: list[Event]) -> FileState | None:
    for e in events:
        st = files.evolve(st, e)
    return st


def test_first_put_creates_then_replaces_in_one_event() -> None:
    ev = files.decide(None, put())  # type: ignore[arg-type]
    assert [type(e) for e in ev] == [FileCreated]
    st = apply(None, ev)
    assert st is not None and (st.key, st.bucket, st.name, st.sha256) == (
        "k/x.txt",
        "bkt",
        "x.txt",
        H1,
    )
    assert st.id == object_file_id("bkt", "k/x.txt")
    later = T0 + timedelta(minutes=1)
    ev = files.decide(st, put(sha=H2, at=later))  # type: ignore[arg-type]
    assert [type(e) for e in ev] == [FileReplaced]
    st2 = apply(st, ev)
    assert st2 is not None and st2.sha256 == H2 and st2.manifest == ((H2, 3),)
    assert st2.created_at == later and st2.key == "k/x.txt"  # Last-Modified: this version


def test_put_after_delete_creates_again() -> None:
    st = apply(None, files.decide(None, put()))  # type: ignore[arg-type]
    fid = object_file_id("bkt", "k/x.txt")
    st = apply(st, files.decide(st, DeleteFile(aggregate_id=fid, caller="alice", at=T0)))
    assert st is not None and st.deleted
    ev = files.decide(st, put(sha=H2, if_none_match=True))  # type: ignore[arg-type]
    assert [type(e) for e in ev] == [FileCreated]
    assert not apply(st, ev).deleted  # type: ignore[union-attr]


def test_conditions() -> None:
    st = apply(None, files.decide(None, put()))  # type: ignore[arg-type]
    with pytest.raises(PreconditionFailed) as e:
        files.decide(st, put(if_none_match=True))  # type: ignore[arg-type]
    assert e.value.code == "object_exists"
    with pytest.raises(PreconditionFailed):
        files.decide(st, put(if_match=H2))  # type: ignore[arg-type]
    with pytest.raises(PreconditionFailed):
        files.decide(None, put(if_match="*"))  # type: ignore[arg-type]
    assert files.decide(st, put(sha=H2, if_match=H1))  # type: ignore[arg-type]
    assert files.decide(st, put(sha=H2, if_match="*"))  # type: ignore[arg-type]


def test_a_conditional_delete_needs_the_live_version() -> None:
    st = apply(None, files.decide(None, put()))  # type: ignore[arg-type]
    fid = object_file_id("bkt", "k/x.txt")

    def delete(if_match: str) -> DeleteFile:
        return DeleteFile(aggregate_id=fid, caller="alice", at=T0, if_match=if_match)

    with pytest.raises(PreconditionFailed) as e:
        files.decide(st, delete(H2))
    assert e.value.code == "etag_mismatch"
    assert files.decide(st, delete("*")) and files.decide(st, delete(H1))
    gone = apply(st, files.decide(st, delete(H1)))
    for tag in (H1, "*"):  # nothing is live: no tag matches, `*` neither
        with pytest.raises(PreconditionFailed):
            files.decide(gone, delete(tag))
    # An unconditional retry of a delete stays a no-op.
    assert files.decide(gone, DeleteFile(aggregate_id=fid, caller="alice", at=T0)) == []


def test_a_previous_owners_leftover_is_not_the_new_owners_object() -> None:
    """A bucket name deleted with an object left in it and taken by someone else: their
    PUT of that key finds no object of theirs (If-None-Match passes, If-Match finds
    nothing), and the leftover is deleted before the key is created for them."""
    st = apply(None, files.decide(None, put()))  # type: ignore[arg-type]

    def bobs(**kw: object) -> object:
        return policies.put_object(
            bucket="bkt", key="k/x.txt", owner="bob", size=3, sha256=H2, manifest=[(H2, 3)],
            content_type="text/plain", caller="bob", at=T0, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    with pytest.raises(PreconditionFailed):
        files.decide(st, bobs(if_match="*"))  # type: ignore[arg-type]
    ev = files.decide(st, bobs(if_none_match=True))  # type: ignore[arg-type]
    assert [type(e) for e in ev] == [FileDeleted, FileCreated]
    after = apply(st, ev)
    assert after is not None and (after.owner, after.sha256, after.deleted) == ("bob", H2, False)


def test_the_same_upload_again_is_already_applied() -> None:
    st = apply(None, files.decide(None, put(upload_id="u1")))  # type: ignore[arg-type]
    assert files.decide(st, put(upload_id="u1")) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", "k" * 1025, "é" * 513, "a\x00b", "\udcff", "/", "///"])
def test_bad_keys_are_refused(key: str) -> None:
    assert object_key_problem(key) is not None
    with pytest.raises(InvalidInput):
        files.decide(None, put(key=key))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key", ["..", "../../etc/passwd", "a/./b", "k" * 1024, "é" * 512, "d/", "/d", "/ /"]
)
def test_odd_keys_are_ordinary(key: str) -> None:
    assert object_key_problem(key) is None
    assert apply(None, files.decide(None, put(key=key))).key == key  # type: ignore[arg-type,union-attr]


def test_the_id_must_be_the_keys() -> None:
    cmd = put()
    wrong = type(cmd)(**{**cmd.__dict__, "aggregate_id": object_file_id("bkt", "other")})  # type: ignore[call-arg]
    with pytest.raises(InvalidInput):
        files.decide(None, wrong)


def test_an_object_cannot_move_bucket_but_can_be_renamed() -> None:
    st = apply(None, files.decide(None, put()))  # type: ignore[arg-type]
    fid = object_file_id("bkt", "k/x.txt")
    with pytest.raises(Conflict):
        files.decide(st, UpdateFile(aggregate_id=fid, caller="alice", at=T0, bucket="other"))
    assert files.decide(st, UpdateFile(aggregate_id=fid, caller="alice", at=T0, name="y.txt"))


def test_ids_and_names() -> None:
    assert object_file_id("bkt", "k") == object_file_id("bkt", "k")
    assert object_file_id("bkt", "k") != object_file_id("bkt", "K")
    assert object_name("a/b/c.txt") == "c.txt" and object_name("dir/") == "dir"
    assert object_name("/") == "/"


def test_object_from_file_shares_the_chunks() -> None:
    st = apply(None, files.decide(None, put()))  # type: ignore[arg-type]
    assert st is not None
    cmd = policies.object_from_file(st, "bkt2", "copy", owner="alice", caller="alice", at=T0)
    assert cmd.aggregate_id == object_file_id("bkt2", "copy")
    assert cmd.manifest == [{"sha256": H1, "size": 3}] and cmd.sha256 == H1


def test_object_from_file_create_only_refuses_a_live_key() -> None:
    # A move (api/object_move.py) never overwrites: the taken key's aggregate refuses it.
    src = apply(None, files.decide(None, put()))  # type: ignore[arg-type]
    dst = apply(None, files.decide(None, put(key="taken", sha=H2)))  # type: ignore[arg-type]
    assert src is not None and dst is not None
    cmd = policies.object_from_file(
        src, "bkt", "taken", owner="alice", caller="alice", at=T0, if_none_match=True
    )
    assert cmd.if_none_match
    with pytest.raises(PreconditionFailed) as refused:
        files.decide(dst, cmd)
    assert refused.value.code == "object_exists"
    # A free key: created, from the same chunks.
    free = policies.object_from_file(
        src, "bkt", "free", owner="alice", caller="alice", at=T0, if_none_match=True
    )
    ev = files.decide(None, free)
    assert [type(e) for e in ev] == [FileCreated]
    made = apply(None, ev)
    assert made is not None and made.sha256 == H1 and made.key == "free"


def test_a_put_carries_its_metadata_and_refuses_bad_metadata() -> None:
    st = apply(None, files.decide(None, put(metadata={"a": "1"})))  # type: ignore[arg-type]
    assert st is not None and st.metadata == {"a": "1"}
    # A replace brings its own metadata (S3: none given, none kept).
    st = apply(st, files.decide(st, put(sha=H2)))  # type: ignore[arg-type]
    assert st is not None and st.metadata == {}
    for bad in ({"k": "v" * 8192}, {"": "v"}, {"k" * 256: "v"}, {"k": "a\x00b"}):
        with pytest.raises(InvalidInput) as e:
            files.decide(st, put(metadata=bad))  # type: ignore[arg-type]
        assert e.value.code == "invalid_metadata"
