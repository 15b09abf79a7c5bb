"""Pure unit tests of the bucket aggregate: names, ownership, create/update/delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import buckets
from domain.buckets import BucketState
from domain.buckets.commands import CreateBucket, DeleteBucket, UpdateBucket
from domain.buckets.events import BucketCreated, BucketDeleted, BucketUpdated
from domain.buckets.names import bucket_name_problem, is_bucket_name
from domain.commands import command_from_dict, command_to_dict
from domain.errors import Conflict, InvalidInput, NotFound
from domain.kernel import Command, Event
from domain.registry import AGGREGATES, COMMANDS, EVENTS, aggregate_of, stream_id_for

T0 = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)


def run(state: BucketState | None, *cmds: Command) -> tuple[BucketState | None, list[Event]]:
    out: list[Event] = []
    for cmd in cmds:
        evs = buckets.decide(state, cmd)
        for e in evs:
            state = buckets.evolve(state, e)
        out.extend(evs)
    return state, out


def create(name: str = "photos", caller: str = "alice", **kw: Any) -> CreateBucket:
    return CreateBucket(aggregate_id=name, caller=caller, at=T0, **kw)


def made(**kw: Any) -> BucketState:
    st, _ = run(None, create(**kw))
    assert st is not None
    return st


@pytest.mark.parametrize(
    "name",
    [
        "abc",
        "my-bucket",
        "my.bucket.01",
        "a" * 63,
        "0-0",
        "1.2.3",  # three parts: not an IP address
        "1.2.3.4.5",
        "v1.2.3.4",
    ],
)
def test_valid_names(name: str) -> None:
    assert bucket_name_problem(name) is None and is_bucket_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "ab",
        "a" * 64,
        "MyBucket",
        "my_bucket",
        "my bucket",
        "-bucket",
        "bucket-",
        ".bucket",
        "bucket.",
        "my..bucket",
        "my.-bucket",
        "my-.bucket",
        "192.168.5.4",
        # The shape, not only real addresses (S3, MinIO): leading zeros, octets over 255.
        "192.168.01.1",
        "1.2.3.999",
        "0001.2.3.4",
        "xn--bucket",
        "sthree-bucket",
        "bucket-s3alias",
        "bucket--ol-s3",
        "naïve",
        "a/b/c",
    ],
)
def test_names_s3_refuses(name: str) -> None:
    assert bucket_name_problem(name) is not None and not is_bucket_name(name)
    with pytest.raises(InvalidInput) as e:
        buckets.decide(None, create(name))
    assert e.value.code == "invalid_bucket_name"


def test_default_is_reserved() -> None:
    assert bucket_name_problem("default") is None and not is_bucket_name("default")
    with pytest.raises(InvalidInput) as e:
        buckets.decide(None, create("default"))
    assert e.value.code == "reserved_bucket_name"


def test_create_records_owner_flag_and_description() -> None:
    st, evs = run(None, create(public=True, description="cats"))
    assert evs == [
        BucketCreated(name="photos", owner="alice", public=True, description="cats", at=T0)
    ]
    assert st == BucketState("photos", "alice", True, "cats", T0, T0)
    assert st.visible_to("alice", False) and st.visible_to("root", True)
    assert not st.visible_to("bob", False) and not st.visible_to(None, False)


def test_create_again_same_is_a_noop_other_is_conflict() -> None:
    st = made()
    assert buckets.decide(st, create()) == []
    for cmd in (create(caller="bob"), create(public=True)):
        with pytest.raises(Conflict) as e:
            buckets.decide(st, cmd)
        assert e.value.code == "bucket_exists"


def test_description_is_bounded() -> None:
    with pytest.raises(InvalidInput):
        buckets.decide(None, create(description="x" * 1025))
    st = made()
    with pytest.raises(InvalidInput):
        buckets.decide(
            st, UpdateBucket(aggregate_id="photos", caller="alice", at=T0, description="x" * 1025)
        )


def test_update_changes_only_what_is_given() -> None:
    st = made(description="cats")
    t1 = T0 + timedelta(seconds=1)
    st2, evs = run(st, UpdateBucket(aggregate_id="photos", caller="alice", at=t1, public=True))
    assert evs == [BucketUpdated(public=True, description="cats", at=t1)]
    assert st2 is not None and st2.public and st2.description == "cats" and st2.updated_at == t1
    # Nothing changes: no event.
    assert buckets.decide(st2, UpdateBucket(aggregate_id="photos", caller="alice", at=t1)) == []


def test_other_users_bucket_is_not_found_admin_may() -> None:
    st = made()
    for cmd in (
        UpdateBucket(aggregate_id="photos", caller="bob", at=T0, public=True),
        DeleteBucket(aggregate_id="photos", caller="bob", at=T0),
    ):
        with pytest.raises(NotFound) as e:
            buckets.decide(st, cmd)
        assert e.value.code == "bucket_not_found"
    _, evs = run(st, DeleteBucket(aggregate_id="photos", caller="root", admin=True, at=T0))
    assert evs == [BucketDeleted(at=T0)]


def test_missing_bucket_is_not_found() -> None:
    with pytest.raises(NotFound):
        buckets.decide(None, DeleteBucket(aggregate_id="photos", caller="alice", at=T0))


def test_deleted_bucket_is_gone_and_its_name_free_again() -> None:
    st, _ = run(made(), DeleteBucket(aggregate_id="photos", caller="alice", at=T0, force=True))
    assert st is not None and st.deleted and not st.visible_to("alice", False)
    with pytest.raises(NotFound):
        buckets.decide(st, DeleteBucket(aggregate_id="photos", caller="alice", at=T0))
    st2, evs = run(st, create(caller="bob"))
    assert [type(e) for e in evs] == [BucketCreated]
    assert st2 is not None and st2.owner == "bob" and not st2.deleted


def test_registered_with_its_topic_and_stream_ids() -> None:
    assert AGGREGATES["buckets"] is buckets.AGGREGATE
    assert stream_id_for("buckets", "my.bucket-1") == "bucket-my.bucket-1"
    assert aggregate_of("bucket-my.bucket-1") == "buckets"
    for c in (CreateBucket, UpdateBucket, DeleteBucket):
        assert COMMANDS[c.type] is c
    for e in (BucketCreated, BucketUpdated, BucketDeleted):
        assert EVENTS[e.type] == ("buckets", e)


def test_commands_round_trip_the_bus_form() -> None:
    cmd = UpdateBucket(aggregate_id="photos", caller="alice", at=T0, public=False)
    assert command_from_dict(command_to_dict(cmd)) == cmd


def test_events_fold_from_their_stored_form() -> None:
    evs = [
        BucketCreated(name="photos", owner="alice", public=False, description="", at=T0),
        BucketUpdated(public=True, description="d", at=T0),
    ]

    class Stored:
        def __init__(self, e: Event) -> None:
            self.type, self.schema_version, self.data = e.type, e.schema_version, e.data

    st = buckets.AGGREGATE.fold([Stored(e) for e in evs])
    assert st == BucketState("photos", "alice", True, "d", T0, T0)
