"""The files handler completes an upload, and makes it a file, only while its bucket is
still its owner's (handlers/destination.py reads the bucket's own stream): a bucket
deleted between the upload's creation and its last bytes, or deleted and made again by
another user, gets nothing, and the handler sends nothing (no retry either: the event is
handled). Made again by the upload's owner, the upload completes into it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bus.blobs.factory import open_blob_store
from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.buckets.commands import CreateBucket, DeleteBucket
from domain.events import EventMeta, RecordedEvent
from domain.files.commands import PutObject
from domain.registry import AGGREGATES
from domain.uploads import AGGREGATE as UPLOADS
from domain.uploads.commands import AppendBytes, CompleteUpload, InitiateUpload
from handlers import files_from_uploads

AT = datetime(2026, 1, 1, tzinfo=UTC)
BUCKETS = AGGREGATES["buckets"]


class _Streams:
    """An upload's stream and its bucket's, driven by deciding commands on what they hold."""

    def __init__(self, store: PostgresEventStore, upload_id: str, bucket: str) -> None:
        self.store = store
        self.upload_id, self.bucket = upload_id, bucket
        self.recorded: list[RecordedEvent] = []

    async def _run(self, aggregate: Any, stream: str, cmd: Any, owner: str) -> list[RecordedEvent]:
        have = await self.store.read_stream(stream)
        new = aggregate.decide(aggregate.fold(have), cmd)
        return await self.store.append(stream, len(have), new, EventMeta(AT, owner=owner))

    async def upload(self, cmd: Any) -> None:
        self.recorded += await self._run(UPLOADS, UPLOADS.stream_id(self.upload_id), cmd, "ann")

    async def bucket_by(self, who: str, make: bool) -> None:
        cmd = (CreateBucket if make else DeleteBucket)(aggregate_id=self.bucket, caller=who, at=AT)
        await self._run(BUCKETS, BUCKETS.stream_id(self.bucket), cmd, who)


class _NoHashing:
    """A blob store that must not be read: the handler asks for the bucket first."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the blob store was used ({name}) for a bucket that is gone")


@pytest.mark.parametrize("taken", [False, True], ids=["deleted", "taken-by-another"])
async def test_an_upload_whose_bucket_went_is_not_completed(
    event_store: PostgresEventStore, tmp_path: Path, taken: bool
) -> None:
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")
    halves = [b"first half, ", b"second half"]
    pieces = []
    for half in halves:

        async def one(b: bytes = half):  # type: ignore[no-untyped-def]
            yield b

        sha, size = await blobs.put_stream(one())
        pieces.append({"sha256": sha, "size": size})
    total = sum(p["size"] for p in pieces)
    s = _Streams(event_store, "c1a2b3c4-1111-4222-8333-944455556666", f"pics-{int(taken)}")
    env = {"aggregate_id": s.upload_id, "caller": "ann", "at": AT}
    await s.bucket_by("ann", make=True)
    await s.upload(
        InitiateUpload(
            **env, file_name="o.txt", file_size=total, chunk_size=total, mode="stream",
            bucket=s.bucket, key="dir/o.txt",
        )
    )  # fmt: skip
    await s.upload(AppendBytes(**env, offset=0, pieces=pieces[:1]))
    await s.bucket_by("ann", make=False)
    if taken:
        await s.bucket_by("bob", make=True)
    await s.upload(AppendBytes(**env, offset=pieces[0]["size"], pieces=pieces[1:]))
    full = s.recorded[-1]
    # The last bytes are in, the bucket is gone: nothing to send, nothing hashed.
    assert await files_from_uploads.command_for(full, event_store, _NoHashing()) is None  # type: ignore[arg-type]
    assert await files_from_uploads.command_for(s.recorded[0], event_store, _NoHashing()) is None  # type: ignore[arg-type]

    # The bucket its owner's again: the same event completes the upload, into it.
    if taken:
        await s.bucket_by("bob", make=False)
    await s.bucket_by("ann", make=True)
    complete = await files_from_uploads.command_for(full, event_store, blobs)
    assert isinstance(complete, CompleteUpload)
    await s.upload(complete)
    put = await files_from_uploads.command_for(s.recorded[-1], event_store, blobs)
    assert isinstance(put, PutObject) and (put.bucket, put.key) == (s.bucket, "dir/o.txt")


@pytest.mark.parametrize("taken", [False, True], ids=["deleted", "taken-by-another"])
async def test_a_completed_upload_whose_bucket_went_is_not_made_a_file(
    event_store: PostgresEventStore, tmp_path: Path, taken: bool
) -> None:
    """The API completed the upload and died before its file; the bucket went meanwhile:
    the handler does not make the file in a bucket that is no more (or someone else's)."""
    blobs = open_blob_store(f"file://{tmp_path / 'blobs'}")

    async def one():  # type: ignore[no-untyped-def]
        yield b"whole"

    sha, size = await blobs.put_stream(one())
    s = _Streams(event_store, "d2b3c4d5-2222-4333-9444-a55566667777", f"docs-{int(taken)}")
    await s.bucket_by("ann", make=True)
    init = InitiateUpload(
        aggregate_id=s.upload_id, caller="ann", at=AT, file_name="p.txt", file_size=size,
        chunk_size=size, mode="stream", bucket=s.bucket,
    )  # fmt: skip
    await s.upload(policies.initiate_complete(init, [{"sha256": sha, "size": size}], sha))
    completed = s.recorded[-1]
    assert completed.type == "UploadCompleted"
    await s.bucket_by("ann", make=False)
    if taken:
        await s.bucket_by("bob", make=True)
    assert await files_from_uploads.command_for(completed, event_store, blobs) is None
