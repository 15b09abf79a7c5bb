"""The actors' decide-append loop against the real Postgres store (no Kafka needed here)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from bus.actors.host import Actors
from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.commands import (
    AppendFetchBytes,
    CompleteFetch,
    InitiateUpload,
    RequestFetch,
    StartFetch,
    StoreChunk,
)
from domain.files.commands import UpdateFile
from tests.bus.actors.uploads import AT, H, chunk, initiate


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


async def test_a_command_whose_events_cannot_be_stored_is_refused_not_retried(
    event_store: PostgresEventStore,
) -> None:
    # A NUL in text (here a content type, which the domain does not look into): PostgreSQL
    # refuses it the same way every time, so it is a refusal like any other, and the next
    # command goes through (no batch rewound and retried for ever behind it).
    actors = Actors(event_store)
    uid = str(uuid.uuid4())
    reply = await actors.execute(replace(initiate(uid), content_type="text/plain\x00"))
    assert reply["ok"] is False and reply["error"]["code"] == "unstorable_input"
    assert reply["error"]["kind"] == "invalid"  # a 400
    assert await event_store.stream_version(f"upload-{uid}") == 0
    ok = await actors.execute(initiate(uid))
    assert ok["ok"] is True and await event_store.stream_version(f"upload-{uid}") == 1


def whole(uid: str, content_type: str | None) -> InitiateUpload:
    """A small file created with its bytes and completed by one command."""
    stream = replace(initiate(uid), file_size=10, mode="stream")
    return policies.initiate_complete(stream, [{"sha256": H, "size": 10}], H, content_type)


async def test_a_completion_carrying_the_type_creates_the_file_in_the_same_step(
    event_store: PostgresEventStore,
) -> None:
    uid = str(uuid.uuid4())
    file_id = policies.completion_file_id(uid)
    reply = await Actors(event_store).execute(whole(uid, "image/png"))
    assert reply["ok"] and [e["type"] for e in reply["events"]][-1] == "UploadCompleted"
    [follow] = reply["follow_ups"]
    assert follow["ok"] and follow["command_id"] == policies.file_command_id(uid)
    assert [e["type"] for e in follow["events"]] == ["FileCreated"]
    [created] = await event_store.read_stream(f"file-{file_id}")
    assert created.payload.content_type == "image/png"  # type: ignore[union-attr]
    assert created.causation_id == policies.file_command_id(uid)
    assert await event_store.applied_commands([policies.file_command_id(uid)])
    # Redelivered after a crash (another host, empty cache): applied once, both of them.
    again = await Actors(event_store).execute(whole(uid, "image/png"))
    assert again["ok"] and again["events"] == []  # the upload's state recognises it
    [follow_again] = again["follow_ups"]
    assert follow_again["ok"] and follow_again["events"] == []  # and the file's
    assert await event_store.stream_version(f"file-{file_id}") == 1
    # Without the type nothing follows: the adapter sends the file itself.
    other = str(uuid.uuid4())
    plain = await Actors(event_store).execute(whole(other, None))
    assert plain["ok"] and "follow_ups" not in plain
    assert await event_store.stream_version(f"file-{policies.completion_file_id(other)}") == 0


async def test_the_file_owner_serves_a_file_another_host_created(
    event_store: PostgresEventStore,
) -> None:
    uid = str(uuid.uuid4())
    file_id = policies.completion_file_id(uid)
    uploads_host, files_host = Actors(event_store), Actors(event_store)
    rename = UpdateFile(aggregate_id=file_id, caller="alice", at=AT, command_id="r1", name="g")
    # The file's own host is asked about it before it exists: refused, and not remembered.
    assert (await files_host.execute(rename))["error"]["kind"] == "not_found"
    assert (await uploads_host.execute(whole(uid, "text/plain")))["follow_ups"][0]["ok"]
    # So once the other host created it, its owner serves it from the store.
    renamed = await files_host.execute(replace(rename, command_id="r2"))
    assert renamed["ok"] and renamed["state"]["name"] == "g"
    # And the creating host kept no stale copy: the rename shows there too.
    assert (await uploads_host.execute(replace(rename, command_id="r3", name="h")))["ok"]
    events = await event_store.read_stream(f"file-{file_id}")
    names = [getattr(e.payload, "name", None) for e in events]
    assert names == ["f", "g", "h"]


class _CountingStore:
    """The real store, counting the streams read."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.reads: list[str] = []

    async def read_stream(self, stream_id: str):  # type: ignore[no-untyped-def]
        self.reads.append(stream_id)
        return await self.store.read_stream(stream_id)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)


async def test_a_command_that_creates_its_stream_reads_nothing(
    event_store: PostgresEventStore,
) -> None:
    uid = str(uuid.uuid4())
    counting = _CountingStore(event_store)
    host = Actors(counting)  # type: ignore[arg-type]
    reply = await host.execute(initiate(uid))
    assert reply["ok"] and reply["version"] == 1
    assert counting.reads == []
    assert (await host.execute(chunk(uid, 0, "c0")))["ok"]  # from the cache
    assert counting.reads == []


async def test_an_unknown_stream_that_exists_is_read_before_deciding(
    event_store: PostgresEventStore,
) -> None:
    uid = str(uuid.uuid4())
    await Actors(event_store).execute(initiate(uid))
    counting = _CountingStore(event_store)
    host = Actors(counting)  # type: ignore[arg-type]
    # Refused against an empty stream (no such upload), so the stream is read: applied.
    assert (await host.execute(chunk(uid, 0, "c0")))["ok"]
    assert counting.reads == [f"upload-{uid}"]
    # A creation replayed on a host that does not hold the stream: decided as new, the
    # append finds the stream (and the command id), so the stream is read and the
    # command decided against it, as if read first: the state recognises it.
    other_store = _CountingStore(event_store)
    again = await Actors(other_store).execute(initiate(uid))  # type: ignore[arg-type]
    assert again["ok"] and again["events"] == [] and again["version"] == 2
    assert other_store.reads == [f"upload-{uid}"]
    # The same upload id with other parameters: the stream exists, so the domain refuses.
    other = replace(initiate(uid), command_id="init-2", file_size=40)
    refused = await Actors(event_store).execute(other)
    assert not refused["ok"] and refused["error"]["code"] == "upload_exists"
    assert await event_store.stream_version(f"upload-{uid}") == 2


async def test_a_fetch_completion_carrying_the_type_creates_the_file_in_the_same_step(
    event_store: PostgresEventStore,
) -> None:
    fid = str(uuid.uuid4())
    env: dict[str, Any] = {"aggregate_id": fid, "caller": "alice", "at": AT}
    host = Actors(event_store)
    for cmd in (
        RequestFetch(**env, owner="alice", url="http://origin.test/a.txt"),
        StartFetch(**env, runner="r"),
        AppendFetchBytes(**env, runner="r", offset=0, pieces=[{"sha256": H, "size": 10}]),
    ):
        assert (await host.execute(cmd))["ok"]
    file_id = policies.fetch_file_id(fid)
    complete = CompleteFetch(
        **env, runner="r", sha256=H, size=10, file_id=file_id, file_content_type="text/plain"
    )
    reply = await host.execute(complete)
    assert reply["ok"] and [e["type"] for e in reply["events"]] == ["FetchCompleted"]
    [follow] = reply["follow_ups"]
    assert follow["ok"] and follow["command_id"] == policies.fetch_file_command_id(fid)
    # The file exists by the time the completion is answered: nobody sees it missing.
    [created] = await event_store.read_stream(f"file-{file_id}")
    assert created.payload.content_type == "text/plain"  # type: ignore[union-attr]
    assert created.payload.size == 10  # type: ignore[union-attr]
    # Redelivered after the host died before committing (another host, empty cache): both
    # are applied once.
    again = await Actors(event_store).execute(complete)
    assert again["ok"] and again["events"] == []
    # The file's state alone refuses a second CreateFile (file_exists); its command id
    # says it is the same one.
    [follow_again] = again["follow_ups"]
    assert follow_again["ok"] and follow_again["duplicate"] and follow_again["events"] == []
    assert await event_store.stream_version(f"file-{file_id}") == 1
    assert await event_store.stream_version(f"fetch-{fid}") == 4
