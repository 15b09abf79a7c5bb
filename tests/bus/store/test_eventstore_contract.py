"""One contract, every event store: in-memory and Postgres must behave the same."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from domain.events import EventMeta, NewEvent
from domain.ports import ConcurrencyError, DuplicateCommand, EventStore, UnstorableEvent

META = EventMeta(occurred_at=datetime(2026, 1, 1, tzinfo=UTC), owner="alice", correlation_id="c1")


def ev(n: int) -> NewEvent:
    return NewEvent("Thing", {"n": n})


async def test_append_and_read_stream(store: EventStore) -> None:
    out = await store.append("upload-a", 0, [ev(1), ev(2)], META)
    assert [e.version for e in out] == [1, 2]
    assert out[0].position < out[1].position
    got = await store.read_stream("upload-a")
    assert [(e.version, e.data["n"]) for e in got] == [(1, 1), (2, 2)]
    assert got[0].owner == "alice" and got[0].correlation_id == "c1"
    assert await store.stream_version("upload-a") == 2
    assert await store.stream_version("upload-none") == 0


async def test_read_streams_gives_several_whole_streams_in_one_call(store: EventStore) -> None:
    # The task worker's and the API's batch read of many files (read_streams is not in the
    # EventStore protocol: both stores have it, the callers hold a PostgresEventStore).
    await store.append("file-a", 0, [ev(1), ev(2)], META)
    await store.append("file-b", 0, [ev(3)], META)
    await store.append("file-a", 2, [ev(4)], META)
    got = await store.read_streams(["file-b", "file-none", "file-a"])  # type: ignore[attr-defined]
    assert set(got) == {"file-a", "file-b"}
    assert [(e.version, e.data["n"]) for e in got["file-a"]] == [(1, 1), (2, 2), (3, 4)]
    assert [e.data["n"] for e in got["file-b"]] == [3]
    assert await store.read_streams([]) == {}  # type: ignore[attr-defined]


async def test_an_event_naming_its_owner_is_recorded_as_that_owner_s(store: EventStore) -> None:
    """A name taken again by someone else (a deleted bucket's, an object key's) continues
    the stream: the creation names the new owner, and it and what follows in the same
    append are recorded (published, streamed) as the new owner's, not the previous one's."""
    await store.append("bucket-x", 0, [NewEvent("BucketCreated", {}, owner="alice")], META)
    later = await store.append(
        "bucket-x",
        1,
        [ev(1), NewEvent("BucketCreated", {}, owner="bob"), ev(2)],
        META,
    )
    assert [e.owner for e in later] == ["alice", "bob", "bob"]
    stored = await store.read_stream("bucket-x")
    assert [e.owner for e in stored] == ["alice", "alice", "bob", "bob"]


async def test_wrong_expected_version_is_refused_and_changes_nothing(store: EventStore) -> None:
    await store.append("upload-a", 0, [ev(1)], META)
    with pytest.raises(ConcurrencyError):
        await store.append("upload-a", 0, [ev(2)], META)
    with pytest.raises(ConcurrencyError):
        await store.append("upload-a", 5, [ev(2)], META)
    assert [e.data["n"] for e in await store.read_stream("upload-a")] == [1]


async def test_read_all_in_position_order_from_a_position(store: EventStore) -> None:
    await store.append("upload-a", 0, [ev(1)], META)
    await store.append("upload-b", 0, [ev(2), ev(3)], META)
    await store.append("upload-a", 1, [ev(4)], META)
    all_ = await store.read_all(0)
    assert [e.data["n"] for e in all_] == [1, 2, 3, 4]
    assert [e.position for e in all_] == sorted(e.position for e in all_)
    tail = await store.read_all(all_[1].position)
    assert [e.data["n"] for e in tail] == [3, 4]
    assert [e.data["n"] for e in await store.read_all(0, limit=2)] == [1, 2]


async def test_concurrent_appends_to_one_stream_exactly_one_wins(store: EventStore) -> None:
    await store.append("upload-a", 0, [ev(0)], META)
    results = await asyncio.gather(
        *[store.append("upload-a", 1, [ev(i)], META) for i in range(1, 11)], return_exceptions=True
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(wins) == 1 and len(losses) == 9
    assert await store.stream_version("upload-a") == 2


async def test_concurrent_appends_to_different_streams_all_win(store: EventStore) -> None:
    await asyncio.gather(*[store.append(f"upload-{i}", 0, [ev(i), ev(i)], META) for i in range(20)])
    all_ = await store.read_all(0, limit=100)
    assert len(all_) == 40
    assert len({e.position for e in all_}) == 40
    for i in range(20):
        assert [e.version for e in await store.read_stream(f"upload-{i}")] == [1, 2]


async def test_command_id_is_applied_once(store: EventStore) -> None:
    first = await store.append("upload-a", 0, [ev(1), ev(2)], META, command_id="cmd-1")
    with pytest.raises(DuplicateCommand) as info:
        await store.append("upload-a", 2, [ev(1), ev(2)], META, command_id="cmd-1")
    assert [e.id for e in info.value.events] == [e.id for e in first]
    assert await store.stream_version("upload-a") == 2


async def test_applied_commands_names_the_commands_that_appended(store: EventStore) -> None:
    assert await store.applied_commands(["cmd-1"]) == set()
    assert await store.applied_commands([]) == set()
    await store.append("upload-a", 0, [ev(1)], META, command_id="cmd-1")
    await store.append("upload-a", 1, [ev(2)], META)
    await store.append("upload-c", 0, [ev(1)], META, command_id="cmd-4")
    assert await store.applied_commands(["cmd-1"]) == {"cmd-1"}
    assert await store.applied_commands(["cmd-2"]) == set()
    assert await store.append("upload-b", 0, [], META, command_id="cmd-3") == []
    # cmd-3 appended nothing; cmd-2 never ran
    assert await store.applied_commands(["cmd-4", "cmd-1", "cmd-2", "cmd-3"]) == {"cmd-1", "cmd-4"}


async def test_applied_event_types_says_what_each_applied_command_appended(
    store: EventStore,
) -> None:
    assert await store.applied_event_types([]) == {}
    await store.append("upload-a", 0, [ev(1)], META, command_id="cmd-1")
    await store.append("upload-a", 1, [ev(2), NewEvent("Other", {})], META, command_id="cmd-2")
    await store.append("upload-b", 0, [ev(3)], META)
    got = await store.applied_event_types(["cmd-2", "cmd-1", "cmd-never"])
    assert got == {"cmd-1": [ev(1).type], "cmd-2": [ev(2).type, "Other"]}


async def test_empty_append_is_a_no_op(store: EventStore) -> None:
    assert await store.append("upload-a", 0, [], META) == []
    assert await store.stream_version("upload-a") == 0


@pytest.mark.parametrize(
    "data", [{"name": "a\x00b"}, {"meta": {"k\x00": "v"}}, {"list": ["ok", ["x\x00"]]}]
)
async def test_text_the_store_cannot_hold_is_refused_and_changes_nothing(
    store: EventStore, data: dict[str, object]
) -> None:
    # PostgreSQL stores no NUL in text or jsonb: refused as such, never a retryable error.
    with pytest.raises(UnstorableEvent):
        await store.append("upload-a", 0, [ev(1), NewEvent("Thing", data)], META, command_id="c")
    assert await store.read_stream("upload-a") == []
    assert await store.applied_commands(["c"]) == set()
    assert [e.version for e in await store.append("upload-a", 0, [ev(1)], META)] == [1]


async def test_an_unstorable_append_fails_alone_among_concurrent_ones(store: EventStore) -> None:
    # Grouped into one write with others (the Postgres store's group commit), it must not
    # take them down with it.
    bad = NewEvent("Thing", {"name": "\x00"})
    outcomes = await asyncio.gather(
        *[store.append(f"upload-{i}", 0, [bad if i == 3 else ev(i)], META) for i in range(8)],
        return_exceptions=True,
    )
    assert isinstance(outcomes[3], UnstorableEvent)
    assert all(isinstance(o, list) and len(o) == 1 for i, o in enumerate(outcomes) if i != 3)
    assert await store.stream_version("upload-3") == 0
