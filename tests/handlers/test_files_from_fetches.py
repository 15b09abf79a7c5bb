"""A completed fetch whose worker died before creating the file: the handler creates it,
with the same ids the worker would have used; a file that exists is left alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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
from domain.files.commands import CreateFile
from domain.policies import fetch_file_command_id, fetch_file_id
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
