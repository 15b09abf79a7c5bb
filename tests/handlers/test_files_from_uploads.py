"""An upload naming a bucket key whose API died after its last bytes: the handler
completes it under the object's id and makes it that object, with the very command the API
would have sent (so the actor applies it once, whoever sends it first)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bus.blobs.factory import open_blob_store
from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.events import EventMeta
from domain.files import AGGREGATE as FILES
from domain.files.commands import CreateFile, PutObject
from domain.files.keys import object_file_id
from domain.uploads import AGGREGATE as UPLOADS
from domain.uploads.commands import AppendBytes, CompleteUpload, InitiateUpload
from handlers import files_from_uploads

AT = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_keyed_upload_becomes_its_object_through_the_handler(
    event_store: PostgresEventStore, tmp_path: Path
) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"hello object"

    sha, size = await blobs.put_stream(chunks())
    uid = "6c1d3b64-2222-4333-8444-a55566667777"
    env = {"aggregate_id": uid, "caller": "ann", "at": AT}
    stream = UPLOADS.stream_id(uid)
    recorded = []

    async def run(cmd: object) -> None:
        nonlocal recorded
        new = UPLOADS.decide(UPLOADS.fold(recorded), cmd)  # type: ignore[arg-type]
        recorded += await event_store.append(stream, len(recorded), new, EventMeta(AT, owner="ann"))

    await run(
        InitiateUpload(
            **env,
            file_name="o.txt",
            file_size=size,
            chunk_size=size,
            mode="stream",
            bucket="pics",
            key="dir/../o.txt",
        )
    )
    await run(AppendBytes(**env, offset=0, pieces=[{"sha256": sha, "size": size}]))
    complete = await files_from_uploads.command_for(recorded[-1], event_store, blobs)
    assert isinstance(complete, CompleteUpload)
    assert complete.file_id == object_file_id("pics", "dir/../o.txt")
    await run(complete)
    put = await files_from_uploads.command_for(recorded[-1], event_store, blobs)
    assert isinstance(put, PutObject)
    assert put.command_id == policies.file_command_id(uid)
    assert (put.bucket, put.key, put.size, put.upload_id) == ("pics", "dir/../o.txt", size, uid)
    assert put.content_type.startswith("text/plain")  # detected from the bytes, as the API does
    assert put == policies.file_from_upload(UPLOADS.fold(recorded), put.content_type)


async def test_the_handler_sends_nothing_for_a_file_already_created(
    event_store: PostgresEventStore, tmp_path: Path
) -> None:
    """The actor usually created the file right after the completion (or the API did): the
    handler checks the command id and sends nothing; until then it sends the CreateFile."""
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"plain bytes"

    sha, size = await blobs.put_stream(chunks())
    uid = "7d2e4c75-3333-4444-9555-b66677778888"
    init = InitiateUpload(
        aggregate_id=uid,
        caller="ann",
        at=AT,
        file_name="p.txt",
        file_size=size,
        chunk_size=size,
        mode="stream",
    )
    whole = policies.initiate_complete(init, [{"sha256": sha, "size": size}], sha)
    recorded = await event_store.append(
        UPLOADS.stream_id(uid), 0, UPLOADS.decide(None, whole), EventMeta(AT, owner="ann")
    )
    completed = recorded[-1]
    create = await files_from_uploads.command_for(completed, event_store, blobs)
    assert isinstance(create, CreateFile) and create.command_id == policies.file_command_id(uid)
    await event_store.append(
        f"file-{create.aggregate_id}",
        0,
        FILES.decide(None, create),
        EventMeta(AT, owner="ann"),
        command_id=create.command_id,
    )
    assert await files_from_uploads.command_for(completed, event_store, blobs) is None
