"""An upload naming a bucket key whose API died after its last bytes: the handler
completes it under the object's id and makes it that object, with the very command the API
would have sent (so the actor applies it once, whoever sends it first)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bus.blobs import manifests
from bus.blobs.factory import open_blob_store
from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.buckets.commands import CreateBucket
from domain.events import EventMeta, RecordedEvent
from domain.files import AGGREGATE as FILES
from domain.files.commands import CreateFile, PutObject
from domain.files.keys import object_file_id
from domain.registry import AGGREGATES
from domain.uploads import AGGREGATE as UPLOADS
from domain.uploads.commands import AppendBytes, CompleteUpload, InitiateUpload
from handlers import files_from_uploads

AT = datetime(2026, 1, 1, tzinfo=UTC)


class _Upload:
    """One upload's stream, driven by deciding commands against what it recorded."""

    def __init__(self, store: PostgresEventStore, uid: str) -> None:
        self.store = store
        self.stream = UPLOADS.stream_id(uid)
        self.recorded: list[RecordedEvent] = []
        self.env: dict[str, Any] = {"aggregate_id": uid, "caller": "ann", "at": AT}

    async def initiate(self, name: str, size: int, chunk: int, **extra: Any) -> None:
        """A tus (stream mode) upload of `size` bytes."""
        await self.run(
            InitiateUpload(
                **self.env, file_name=name, file_size=size, chunk_size=chunk, mode="stream",
                **extra,
            )
        )  # fmt: skip

    async def run(self, cmd: object) -> None:
        new = UPLOADS.decide(UPLOADS.fold(self.recorded), cmd)  # type: ignore[arg-type]
        self.recorded += await self.store.append(
            self.stream, len(self.recorded), new, EventMeta(AT, owner="ann")
        )


async def test_a_keyed_upload_becomes_its_object_through_the_handler(
    event_store: PostgresEventStore, tmp_path: Path
) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"hello object"

    sha, size = await blobs.put_stream(chunks())
    uid = "6c1d3b64-2222-4333-8444-a55566667777"
    upload = _Upload(event_store, uid)
    run, recorded, env = upload.run, upload.recorded, upload.env
    # The bucket is ann's (the handler asks, tests/handlers/test_files_from_uploads_bucket.py).
    made = CreateBucket(aggregate_id="pics", caller="ann", at=AT)
    await event_store.append(
        "bucket-pics", 0, AGGREGATES["buckets"].decide(None, made), EventMeta(AT, owner="ann")
    )
    stored = {"cache-control": "max-age=60", "content-language": "en"}
    await upload.initiate("o.txt", size, size, bucket="pics", key="dir/../o.txt", headers=stored)
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
    assert put.headers == stored  # the upload's stored headers: the object keeps them
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


class _Counting:
    """The event store, counting its reads and lookups."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.calls: list[str] = []

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        self.calls.append("read_stream")
        return await self.store.read_stream(stream_id, from_version)

    async def applied_commands(self, command_ids: Sequence[str]) -> set[str]:
        self.calls.append("applied_commands")
        return await self.store.applied_commands(command_ids)


async def test_a_batch_of_whole_uploads_is_checked_with_one_lookup(
    event_store: PostgresEventStore, tmp_path: Path
) -> None:
    """A small upload's bytes and completion come in one batch: the bytes need no
    completing (no stream read), and every completion's file is looked up in one query."""
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")

    async def chunks():  # type: ignore[no-untyped-def]
        yield b"small"

    sha, size = await blobs.put_stream(chunks())
    batch: list[RecordedEvent] = []
    uids = ["8e3f5d86-4444-4555-a666-c77788889999", "9f406e97-5555-4666-b777-d8889999aaaa"]
    for uid in uids:
        init = InitiateUpload(
            aggregate_id=uid, caller="ann", at=AT, file_name="s.txt", file_size=size,
            chunk_size=size, mode="stream",
        )  # fmt: skip
        whole = policies.initiate_complete(init, [{"sha256": sha, "size": size}], sha)
        batch += await event_store.append(
            UPLOADS.stream_id(uid), 0, UPLOADS.decide(None, whole), EventMeta(AT, owner="ann")
        )
    # The first upload's file exists already (the actor's follow-up); the second's not yet.
    create = policies.file_from_upload(UPLOADS.fold(batch[:3]), "text/plain")
    await event_store.append(
        f"file-{create.aggregate_id}",
        0,
        FILES.decide(None, create),
        EventMeta(AT, owner="ann"),
        command_id=create.command_id,
    )
    assert [e.type for e in batch] == [
        "UploadInitiated",
        "UploadBytesAppended",
        "UploadCompleted",
    ] * 2

    store = _Counting(event_store)
    ahead = await files_from_uploads.look_ahead(batch, store)  # type: ignore[arg-type]
    assert store.calls == ["applied_commands"]
    assert ahead.completed == {uids[0]: 3, uids[1]: 3}
    assert ahead.files_applied == {uids[0]}
    cmds = [await files_from_uploads.command_for(e, store, blobs, ahead) for e in batch]  # type: ignore[arg-type]
    assert cmds[:5] == [None] * 5
    assert isinstance(cmds[5], CreateFile) and cmds[5].command_id == policies.file_command_id(
        uids[1]
    )
    assert store.calls == ["applied_commands", "read_stream"]  # the second file's upload only

    # Alone (no batch), the bytes event reads its stream, and finds it completed.
    store.calls.clear()
    assert await files_from_uploads.command_for(batch[4], store, blobs) is None  # type: ignore[arg-type]
    assert store.calls == ["read_stream"]


class _CountingBlobs:
    """The local blob store, counting the chunks hashed in place."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.hashed = 0

    def hash_into(self, hasher: Any, sha256: str, size: int) -> None:
        self.hashed += 1
        self.store.hash_into(hasher, sha256, size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class _ApiCompletesMeanwhile:
    """The event store; the first time the handler asks for the stream's version (it does
    so while hashing), the API's completion is appended first, for real."""

    def __init__(self, store: PostgresEventStore, complete: Callable[[], Awaitable[None]] | None):
        self.store = store
        self.complete = complete
        self.asked = 0

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        return await self.store.read_stream(stream_id, from_version)

    async def stream_version(self, stream_id: str) -> int:
        self.asked += 1
        if self.asked == 1 and self.complete is not None:
            await self.complete()
        return await self.store.stream_version(stream_id)


@pytest.mark.parametrize("api_completes", [True, False], ids=["api-completes", "api-died"])
async def test_the_handler_stops_hashing_once_the_api_completed_the_upload(
    event_store: PostgresEventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_completes: bool,
) -> None:
    """A tus upload that reached its length: the handler hashes it in case the API died,
    but asks between chunks whether the stream moved on; when the API completed it
    meanwhile, the hash stops there and nothing is sent."""
    monkeypatch.setattr(manifests, "CHECK_EVERY_BYTES", 2 * 1024 * 1024)
    blobs = _CountingBlobs(open_blob_store(f"file://{tmp_path / 'blobs'}"))
    data = [os.urandom(1024 * 1024) for _ in range(6)]
    pieces = []
    for d in data:

        async def one(d: bytes = d):  # type: ignore[no-untyped-def]
            yield d

        sha, size = await blobs.put_stream(one())
        pieces.append({"sha256": sha, "size": size})
    upload = _Upload(event_store, "a0517fa8-6666-4777-8888-e9990000bbbb")
    run, recorded, env = upload.run, upload.recorded, upload.env
    await upload.initiate("big.bin", 6 * 1024 * 1024, 1024 * 1024)
    await run(AppendBytes(**env, offset=0, pieces=pieces))
    full = recorded[-1]
    whole = hashlib.sha256(b"".join(data)).hexdigest()

    async def api_complete() -> None:
        state = UPLOADS.fold(recorded)
        await run(policies.complete(state, whole, caller="ann", at=AT, command_id="api-complete"))

    store = _ApiCompletesMeanwhile(event_store, api_complete if api_completes else None)
    cmd = await files_from_uploads.command_for(full, store, blobs)  # type: ignore[arg-type]
    if api_completes:
        assert cmd is None
        assert recorded[-1].type == "UploadCompleted"
        assert (blobs.hashed, store.asked) == (2, 1)  # 2 MiB hashed, then it stopped
    else:
        assert isinstance(cmd, CompleteUpload) and cmd.sha256 == whole
        assert (blobs.hashed, store.asked) == (6, 2)  # asked before the 3rd and 5th piece
