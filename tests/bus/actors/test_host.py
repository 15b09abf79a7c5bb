"""The actors' decide-append loop against the real Postgres store (no Kafka needed here)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from bus.actors.host import Actors
from bus.store.eventstore import PostgresEventStore
from domain.commands import InitiateUpload, StoreChunk

AT = datetime(2026, 1, 1, tzinfo=UTC)
H = "ab" * 32


def initiate(uid: str) -> InitiateUpload:
    return InitiateUpload(
        aggregate_id=uid,
        caller="alice",
        at=AT,
        command_id=f"init-{uid}",
        file_name="f",
        file_size=30,
        chunk_size=10,
    )


def chunk(uid: str, i: int, command_id: str) -> StoreChunk:
    return StoreChunk(
        aggregate_id=uid, caller="alice", at=AT, command_id=command_id, index=i, size=10, sha256=H
    )


async def test_redelivered_command_after_a_crash_is_applied_once(
    event_store: PostgresEventStore,
) -> None:
    uid = str(uuid.uuid4())
    first_host = Actors(event_store)
    await first_host.execute(initiate(uid))
    reply = await first_host.execute(chunk(uid, 0, "cmd-a"))
    assert reply["ok"] and len(reply["events"]) == 1
    # The host dies after the append but before committing the Kafka offset; a new host
    # (empty cache) receives the same command again.
    second_host = Actors(event_store)
    again = await second_host.execute(chunk(uid, 0, "cmd-a"))
    # Caught by the state (the chunk is there with the same digest) or by the command id:
    # either way the answer is success and nothing is appended again.
    assert again["ok"] and again["state"]["chunks_received"] == 1
    assert await event_store.stream_version(f"upload-{uid}") == 2
    # A command whose effect the state alone would not recognise is caught by its id.
    dup = await second_host.execute(chunk(uid, 1, "cmd-a"))
    assert dup["ok"] and dup["duplicate"]
    assert [e["id"] for e in dup["events"]] == [e["id"] for e in reply["events"]]
    assert await event_store.stream_version(f"upload-{uid}") == 2


async def test_stale_cache_conflict_reloads_and_decides_again(
    event_store: PostgresEventStore,
) -> None:
    uid = str(uuid.uuid4())
    a, b = Actors(event_store), Actors(event_store)
    await a.execute(initiate(uid))
    assert (await b.execute(chunk(uid, 0, "c0")))["ok"]  # b caches version 2
    assert (await a.execute(chunk(uid, 1, "c1")))["ok"]  # a's cache (v1) is stale: conflict, reload
    reply = await b.execute(chunk(uid, 2, "c2"))  # b's cache (v2) is stale too
    assert reply["ok"] and reply["state"]["chunks_received"] == 3
    # a decides on fresh state: chunk 1 again with other bytes is a conflict, not a duplicate
    other = StoreChunk(
        aggregate_id=uid,
        caller="alice",
        at=AT,
        command_id="c1b",
        index=1,
        size=10,
        sha256="cd" * 32,
    )
    refused = await a.execute(other)
    assert not refused["ok"] and refused["error"]["code"] == "chunk_conflict"
    versions = [e.version for e in await event_store.read_stream(f"upload-{uid}")]
    assert versions == [1, 2, 3, 4]


async def test_refusals_append_nothing(event_store: PostgresEventStore) -> None:
    uid = str(uuid.uuid4())
    actors = Actors(event_store)
    await actors.execute(initiate(uid))
    bad = StoreChunk(
        aggregate_id=uid, caller="alice", at=AT, command_id="x", index=9, size=10, sha256=H
    )
    reply = await actors.execute(bad)
    assert (
        reply == {"ok": False, "error": reply["error"]}
        and reply["error"]["code"] == "chunk_index_out_of_range"
    )
    mallory = StoreChunk(
        aggregate_id=uid, caller="mallory", at=AT, command_id="y", index=0, size=10, sha256=H
    )
    assert (await actors.execute(mallory))["error"]["kind"] == "not_found"
    assert await event_store.stream_version(f"upload-{uid}") == 1
