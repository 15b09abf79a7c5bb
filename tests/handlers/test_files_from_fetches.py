"""A completed fetch whose worker died before creating the file: the handler creates it,
with the same ids the worker would have used; a file that exists is left alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus.blobs.factory import open_blob_store
from bus.store.eventstore import PostgresEventStore
from domain.events import EventMeta
from domain.fetches import AGGREGATE as FETCHES
from domain.fetches.commands import (
    AppendFetchBytes,
    CompleteFetch,
    RecordFetchResponse,
    RequestFetch,
    StartFetch,
)
from domain.files import AGGREGATE as FILES
from domain.files.commands import CreateFile, PutObject
from domain.files.keys import object_file_id
from domain.policies import fetch_file_command_id, fetch_file_id, put_object
from domain.ports import DuplicateCommand
from handlers import files_from_fetches

AT = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_completed_fetch_without_its_file_gets_one(
    event_store: PostgresEventStore, tmp_path: Path
) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"hello fetch"

    sha, size = await blobs.put_stream(chunks())
    fid = "5b0c2a53-1111-4222-8333-944455556666"
    env = {"aggregate_id": fid, "caller": "ann", "at": AT}
    commands = [
        RequestFetch(**env, owner="ann", url="http://example.com/h.txt"),
        StartFetch(**env, runner="r"),
        RecordFetchResponse(**env, runner="r", restart=False, total=size, file_name="h.txt"),
        AppendFetchBytes(**env, runner="r", offset=0, pieces=[{"sha256": sha, "size": size}]),
        CompleteFetch(**env, runner="r", sha256=sha, size=size, file_id=fetch_file_id(fid)),
    ]
    stream = FETCHES.stream_id(fid)
    state = None
    version = 0
    recorded = []
    for cmd in commands:
        new = FETCHES.decide(state, cmd)
        recorded += await event_store.append(stream, version, new, EventMeta(AT, owner="ann"))
        version += len(new)
        state = FETCHES.fold(recorded)

    cmd = await files_from_fetches.command_for(recorded[-1], event_store, blobs)
    assert isinstance(cmd, CreateFile)
    assert cmd.aggregate_id == fetch_file_id(fid)
    assert cmd.command_id == fetch_file_command_id(fid)
    assert (cmd.owner, cmd.name, cmd.size, cmd.sha256) == ("ann", "h.txt", size, sha)
    assert cmd.content_type.startswith("text/plain")
    # once the file exists, nothing more to do
    await event_store.append(
        FILES.stream_id(cmd.aggregate_id), 0, FILES.decide(None, cmd), EventMeta(AT, owner="ann")
    )
    assert await files_from_fetches.command_for(recorded[-1], event_store, blobs) is None
    await blobs.close()


async def test_a_fetch_into_a_key_puts_that_object_once_even_over_a_later_version(
    event_store: PostgresEventStore, tmp_path: Path
) -> None:
    """The handler always sends the object's put (the key may hold an older version), with
    the worker's command id: applied once, so a redelivered completion after a later PUT
    of the key does not bring the fetched bytes back."""
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")

    async def chunks(data: bytes):  # type: ignore[no-untyped-def]
        yield data

    sha, size = await blobs.put_stream(chunks(b"fetched bytes"))
    fid = "5b0c2a53-2222-4222-8333-944455556666"
    bucket, key = "fx-bucket", "models/m.bin"
    env = {"aggregate_id": fid, "caller": "ann", "at": AT}
    file_id = object_file_id(bucket, key)
    commands = [
        RequestFetch(**env, owner="ann", url="http://example.com/m.bin", bucket=bucket, key=key),
        StartFetch(**env, runner="r"),
        RecordFetchResponse(**env, runner="r", restart=False, total=size, file_name="m.bin"),
        AppendFetchBytes(**env, runner="r", offset=0, pieces=[{"sha256": sha, "size": size}]),
        CompleteFetch(**env, runner="r", sha256=sha, size=size, file_id=file_id),
    ]
    stream = FETCHES.stream_id(fid)
    recorded = []
    for cmd in commands:
        new = FETCHES.decide(FETCHES.fold(recorded), cmd)
        recorded += await event_store.append(stream, len(recorded), new, EventMeta(AT, owner="ann"))
    meta = EventMeta(AT, owner="ann")
    obj = FILES.stream_id(file_id)
    # the key holds an older version already
    older = put_object(bucket=bucket, key=key, owner="ann", size=3, sha256="c" * 64,
                       manifest=[("c" * 64, 3)], content_type="text/plain", caller="ann",
                       at=AT)  # fmt: skip
    await event_store.append(obj, 0, FILES.decide(None, older), meta)

    cmd = await files_from_fetches.command_for(recorded[-1], event_store, blobs)
    assert isinstance(cmd, PutObject)
    assert (cmd.aggregate_id, cmd.bucket, cmd.key) == (file_id, bucket, key)
    assert cmd.command_id == fetch_file_command_id(fid)
    assert (cmd.owner, cmd.sha256, cmd.size) == ("ann", sha, size)
    state = FILES.fold(await event_store.read_stream(obj))
    await event_store.append(obj, 1, FILES.decide(state, cmd), meta, command_id=cmd.command_id)
    assert FILES.fold(await event_store.read_stream(obj)).sha256 == sha  # type: ignore[union-attr]
    # a later PUT of the key, then the completion redelivered: refused as a duplicate
    newer = put_object(bucket=bucket, key=key, owner="ann", size=3, sha256="d" * 64,
                       manifest=[("d" * 64, 3)], content_type="text/plain", caller="ann",
                       at=AT)  # fmt: skip
    state = FILES.fold(await event_store.read_stream(obj))
    await event_store.append(obj, 2, FILES.decide(state, newer), meta)
    again = await files_from_fetches.command_for(recorded[-1], event_store, blobs)
    assert again == cmd
    state = FILES.fold(await event_store.read_stream(obj))
    with pytest.raises(DuplicateCommand):
        await event_store.append(
            obj, 3, FILES.decide(state, again), meta, command_id=again.command_id
        )
    assert FILES.fold(await event_store.read_stream(obj)).sha256 == "d" * 64  # type: ignore[union-attr]
    await blobs.close()
