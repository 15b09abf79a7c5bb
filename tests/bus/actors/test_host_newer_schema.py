"""A command on a stream that holds an event of a newer schema version than this code reads
(a newer deployment wrote it): refused with a retryable `upgrade_in_progress`, never decided
on a misread state; the host keeps serving other streams. Against the real Postgres store,
the newer event inserted as a raw row the way a newer deployment would store it."""

from __future__ import annotations

import uuid

import asyncpg

from bus.actors.host import Actors
from bus.store.eventstore import PostgresEventStore
from domain.commands import StoreChunk
from domain.uploads.events import UploadChunkStored
from tests.bus.actors.uploads import AT, H, chunk, initiate
from tests.bus.store.test_upcasting import insert_raw

NEWER = UploadChunkStored.schema_version + 1
# A newer deployment's chunk event: field names this code knows, whose meaning may differ.
NEWER_CHUNK = {"index": 0, "offset": 0, "size": 10, "sha256": H, "at": AT.isoformat()}


def assert_upgrade_in_progress(reply: dict[str, object]) -> None:
    assert not reply["ok"]
    error = reply["error"]
    assert isinstance(error, dict)
    assert error["kind"] == "unavailable"
    assert error["code"] == "upgrade_in_progress"
    assert error["details"] == {
        "event_type": "UploadChunkStored",
        "stored_version": NEWER,
        "known_version": NEWER - 1,
    }


async def test_a_command_on_a_stream_with_a_newer_event_is_refused_retryably(
    pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    uid = str(uuid.uuid4())
    stream = f"upload-{uid}"
    writer = Actors(event_store)
    assert (await writer.execute(initiate(uid)))["ok"]  # cached here at version 1
    await insert_raw(pool, stream, 2, "UploadChunkStored", NEWER, NEWER_CHUNK)

    # A host that never saw the stream reads it, and a host whose cache is behind finds
    # the newer event when its append conflicts: both refuse, neither appends.
    for actors in (Actors(event_store), writer):
        reply = await actors.execute(chunk(uid, 1, f"c1-{id(actors)}"))
        assert_upgrade_in_progress(reply)
        # Decided on the misread state, chunk 0 again would have been a no-op "already
        # stored": refused as well.
        assert_upgrade_in_progress(await actors.execute(chunk(uid, 0, f"c0-{id(actors)}")))
    assert await event_store.stream_version(stream) == 2

    # Every other stream is served as before.
    other = str(uuid.uuid4())
    assert (await writer.execute(initiate(other)))["ok"]
    assert (await writer.execute(chunk(other, 0, "other-0")))["ok"]
    assert await event_store.stream_version(f"upload-{other}") == 2


async def test_a_creation_on_a_stream_with_a_newer_event_is_refused_too(
    pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    """The host decides a creation against the empty stream first (it does not read the
    stream); the append's version check sends it to read the stream, where it must stop."""
    uid = str(uuid.uuid4())
    stream = f"upload-{uid}"
    await insert_raw(pool, stream, 1, "UploadInitiated", 99, {"upload_id": uid})
    reply = await Actors(event_store).execute(initiate(uid))
    assert not reply["ok"] and reply["error"]["code"] == "upgrade_in_progress"
    assert reply["error"]["details"]["event_type"] == "UploadInitiated"
    assert await event_store.stream_version(stream) == 1


async def test_someone_elses_stream_with_a_newer_event_is_not_found_not_unavailable(
    pool: asyncpg.Pool, event_store: PostgresEventStore
) -> None:
    """The refusal must not tell another user that the id exists."""
    uid = str(uuid.uuid4())
    actors = Actors(event_store)
    assert (await actors.execute(initiate(uid)))["ok"]
    await insert_raw(pool, f"upload-{uid}", 2, "UploadChunkStored", NEWER, NEWER_CHUNK)
    theirs = StoreChunk(
        aggregate_id=uid, caller="bob", at=AT, command_id="bob-1", index=1, size=10, sha256=H
    )
    reply = await actors.execute(theirs)
    assert not reply["ok"]
    assert reply["error"]["kind"] == "not_found"
    assert reply["error"]["code"] == "upload_not_found"
    # An admin may know it exists: told to retry.
    admin = StoreChunk(
        aggregate_id=uid,
        caller="root",
        admin=True,
        at=AT,
        command_id="root-1",
        index=1,
        size=10,
        sha256=H,
    )
    assert (await actors.execute(admin))["error"]["code"] == "upgrade_in_progress"
