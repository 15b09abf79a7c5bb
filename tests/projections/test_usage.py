"""projections/usage.py quota reservations on the real PostgreSQL: one owner's checks are
decided one after another, each sees what the others hold, a hold for a file counts until
the files read model has it, objects (files without an upload) count, and a tus
concatenation's bytes count once, not again in its parts."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.buckets.commands import CreateBucket, DeleteBucket
from domain.commands import AbortUpload, AppendBytes, CreateFile, DeleteFile, InitiateUpload
from domain.files.keys import object_file_id
from projections.rebuild import rebuild
from projections.usage import keep, release, reserve, storage_used
from tests.projections.conftest import T0, Writer, sha

QUOTA = 100_000


async def held(
    store: PostgresEventStore, owner: str, requested: int, used: int | None = None, **kw: Any
) -> str:
    """Reserve `requested` bytes of `owner`'s QUOTA (`kw`: reserve's options), which must be
    granted (having seen `used` bytes besides, when given): the reservation's id."""
    rid, details, seen = await reserve(store, owner, QUOTA, requested, **kw)
    assert rid is not None and details is None, details
    assert used is None or seen == used, seen
    return rid


async def refused(
    store: PostgresEventStore, owner: str, requested: int, **kw: Any
) -> dict[str, int]:
    """Reserve as `held` does, which must be refused: the refusal's details."""
    rid, details, _ = await reserve(store, owner, QUOTA, requested, **kw)
    assert rid is None and details is not None, rid
    return details


async def _file(writer: Writer, owner: str, size: int, file_id: str) -> None:
    """A file made without an upload (as an object is), in the files read model (filled by
    `rebuild`, the live projector's apply path)."""
    await write_file(writer, owner, size, file_id)
    await rebuild(writer.store.pool, "files")


async def write_file(writer: Writer, owner: str, size: int, file_id: str) -> None:
    """A file made without an upload (as an object is), in the event store only."""
    await writer.run(
        CreateFile(
            aggregate_id=file_id,
            caller=owner,
            at=T0,
            owner=owner,
            name="o",
            size=size,
            content_type="x/y",
            sha256=sha(file_id),
            manifest=[{"sha256": sha(file_id), "size": size}],
            bucket="default",
        )
    )


async def test_concurrent_reservations_never_pass_together(
    event_store: PostgresEventStore,
) -> None:
    got = await asyncio.gather(*[reserve(event_store, "u1", QUOTA, 30_000) for _ in range(10)])
    held = [rid for rid, details, _ in got if rid is not None]
    refused = [details for rid, details, _ in got if rid is None]
    assert len(held) == 3 and len(refused) == 7
    assert all(d == {"quota": QUOTA, "used": 90_000, "requested": 30_000} for d in refused)
    assert await storage_used(event_store, "u1") == 90_000
    assert await storage_used(event_store, "someone else") == 0
    for rid in held:
        await release(event_store.pool, rid)
    assert await storage_used(event_store, "u1") == 0


async def test_a_hold_for_a_file_counts_until_the_file_is_listed(
    event_store: PostgresEventStore, writer: Writer
) -> None:
    pool = event_store.pool
    rid = await held(event_store, "u2", 60_000, used=0)
    fid = str(uuid.uuid4())
    await release(pool, rid, fid)  # the file is made, not listed yet
    assert await storage_used(event_store, "u2") == 60_000
    details = await refused(event_store, "u2", 50_000)
    assert details == {"quota": QUOTA, "used": 60_000, "requested": 50_000}
    await _file(writer, "u2", 60_000, fid)  # listed: it counts as a file, once
    assert await storage_used(event_store, "u2") == 60_000
    await held(event_store, "u2", 40_000)


async def test_resize_counts_the_new_size_once_and_keeps_the_old_when_refused(
    event_store: PostgresEventStore,
) -> None:
    rid = await held(event_store, "u3", 0)
    assert await held(event_store, "u3", 70_000, resize=rid) == rid
    assert await storage_used(event_store, "u3") == 70_000
    assert (await refused(event_store, "u3", 100_001, resize=rid))["used"] == 0
    assert await storage_used(event_store, "u3") == 70_000


@pytest.mark.parametrize("size", [1, 40_000])
async def test_files_made_without_an_upload_count(
    event_store: PostgresEventStore, writer: Writer, size: int
) -> None:
    await _file(writer, "u4", size, str(uuid.uuid4()))
    assert await storage_used(event_store, "u4") == size


async def _initiated(writer: Writer, owner: str, **fields: Any) -> str:
    """An upload of `owner`'s initiated with `fields` (InitiateUpload's; the events only):
    its id."""
    uid = str(uuid.uuid4())
    await writer.run(InitiateUpload(aggregate_id=uid, caller=owner, at=T0, **fields))
    return uid


async def _part(writer: Writer, owner: str, size: int) -> str:
    """A partial tus upload with all its `size` bytes (the events only)."""
    uid = await _initiated(
        writer, owner, file_name="p", file_size=size, chunk_size=size, mode="stream", partial=True
    )
    await writer.run(
        AppendBytes(
            aggregate_id=uid,
            caller=owner,
            at=T0,
            offset=0,
            pieces=[{"sha256": sha(uid), "size": size}],
        )
    )
    return uid


async def _final(writer: Writer, owner: str, *parts: tuple[str, int]) -> str:
    """A final upload concatenating `parts` (id, size), initiated (the events only)."""
    return await _initiated(
        writer,
        owner,
        file_name="f",
        file_size=sum(size for _, size in parts),
        chunk_size=1,
        mode="final",
        parts=[p for p, _ in parts],
        manifest=[{"sha256": sha(p), "size": size} for p, size in parts],
    )


async def test_a_concatenation_holds_its_parts_bytes_seen_or_not_by_the_projection(
    event_store: PostgresEventStore, writer: Writer
) -> None:
    """A final upload counts its parts' bytes from its initiation on, and its parts no
    longer do: whether the uploads read model has the final yet (read through the event
    store's tail) or not. Before, a part counted as well until it expired."""
    a, b = await _part(writer, "u5", 30_000), await _part(writer, "u5", 20_000)
    await rebuild(event_store.pool, "uploads")
    assert await storage_used(event_store, "u5") == 50_000
    # Reserving for a concatenation of them asks only for what its parts do not hold.
    rid = await held(event_store, "u5", 50_000, used=50_000, parts=[a, b, a])
    assert await storage_used(event_store, "u5") == 50_000
    await release(event_store.pool, rid)
    await _final(writer, "u5", (a, 30_000), (b, 20_000))  # not projected yet
    assert await storage_used(event_store, "u5") == 50_000
    await rebuild(event_store.pool, "uploads")
    assert await storage_used(event_store, "u5") == 50_000
    # A second final of a part held already: all of it is asked.
    details = await refused(event_store, "u5", 60_000, parts=[a, a])
    assert details == {"quota": QUOTA, "used": 50_000, "requested": 60_000}
    await _final(writer, "u5", (a, 30_000))
    assert await storage_used(event_store, "u5") == 80_000


async def _object(writer: Writer, owner: str, key: str, size: int) -> tuple[str, int]:
    """Put the object `key` (bucket "bkt") of `size` bytes, as a PUT's command does: (its file
    id, the stream version the put left). Not projected: `rebuild` does that."""
    fid = object_file_id("bkt", key)
    out = await writer.run(
        policies.put_object(
            bucket="bkt",
            key=key,
            owner=owner,
            size=size,
            sha256=sha(f"{key}{size}"),
            manifest=[(sha(f"{key}{size}"), size)],
            content_type="x/y",
            caller=owner,
            at=T0,
        )
    )
    return fid, out[-1].version


async def test_an_overwrite_asks_only_what_it_adds_to_its_key(
    event_store: PostgresEventStore, writer: Writer
) -> None:
    """An owner at the quota may replace an object with one no larger: the put is judged
    by what it adds to its key (new size minus what the key holds), not its whole size."""
    a, _ = await _object(writer, "u7", "a", 60_000)
    await _object(writer, "u7", "b", 40_000)
    await rebuild(event_store.pool, "files")
    assert await storage_used(event_store, "u7") == QUOTA
    rid = await held(event_store, "u7", 60_000, target=a)
    smaller = await held(event_store, "u7", 10_000, target=a)
    # Two puts of one key in flight: the key ends with one of them, so it counts the
    # largest of what it holds and what is on its way, not their sum.
    assert await storage_used(event_store, "u7") == QUOTA
    details = await refused(event_store, "u7", 60_001, target=a)
    assert details == {"quota": QUOTA, "used": QUOTA, "requested": 1, "replaced": 60_000}
    # A new key has nothing to replace.
    details = await refused(event_store, "u7", 1, target=object_file_id("bkt", "c"))
    assert details == {"quota": QUOTA, "used": QUOTA, "requested": 1}
    for r in (rid, smaller):
        await release(event_store.pool, r)
    assert await storage_used(event_store, "u7") == QUOTA


async def test_an_overwrite_racing_a_delete_keeps_its_bytes_counted(
    event_store: PostgresEventStore, writer: Writer
) -> None:
    """The key's old version is deleted while the overwrite that counted on it is in
    flight: the put will create the key afresh, so its bytes go on counting in full, and
    what the delete freed is not handed out twice."""
    a, _ = await _object(writer, "u8", "a", 60_000)
    await _object(writer, "u8", "b", 40_000)
    await rebuild(event_store.pool, "files")
    rid = await held(event_store, "u8", 60_000, target=a)
    await writer.run(DeleteFile(aggregate_id=a, caller="u8", at=T0))
    await rebuild(event_store.pool, "files")
    assert await storage_used(event_store, "u8") == QUOTA
    await refused(event_store, "u8", 1, target=object_file_id("bkt", "c"))
    _, version = await _object(writer, "u8", "a", 60_000)  # the put lands: created afresh
    await release(event_store.pool, rid, version=version)
    assert await storage_used(event_store, "u8") == QUOTA  # not projected yet: still held
    await rebuild(event_store.pool, "files")
    assert await storage_used(event_store, "u8") == QUOTA  # the file's now, counted once


async def test_a_grown_object_counts_its_new_size_before_the_read_model_has_it(
    event_store: PostgresEventStore, writer: Writer
) -> None:
    """A put that grew a key is applied; the files read model still shows the old size.
    The hold goes on counting the difference until the row has the put's version: before,
    it stopped at once (the row existed), and the growth went uncounted meanwhile."""
    a, _ = await _object(writer, "u9", "a", 10_000)
    await rebuild(event_store.pool, "files")
    rid = await held(event_store, "u9", 90_000, used=0, target=a)
    _, version = await _object(writer, "u9", "a", 90_000)
    await release(event_store.pool, rid, version=version)
    assert await storage_used(event_store, "u9") == 90_000
    details = await refused(event_store, "u9", 10_001)
    assert details == {"quota": QUOTA, "used": 90_000, "requested": 10_001}
    await rebuild(event_store.pool, "files")
    assert await storage_used(event_store, "u9") == 90_000
    # Counted by the file now, the hold is dropped by the owner's next check.
    rid = await held(event_store, "u9", 0)
    await release(event_store.pool, rid)
    left = await event_store.pool.fetchval(
        "SELECT count(*) FROM api.quota_reservations WHERE owner = 'u9'"
    )
    assert left == 0


async def _upload_into(writer: Writer, owner: str, bucket: str, size: int) -> str:
    """A tus upload of `size` declared bytes into `bucket`, initiated (the events only)."""
    return await _initiated(
        writer,
        owner,
        file_name="f",
        file_size=size,
        chunk_size=size,
        mode="stream",
        bucket=bucket,
        key="k",
    )


async def test_an_upload_whose_bucket_went_holds_only_what_it_received(
    event_store: PostgresEventStore, writer: Writer
) -> None:
    """Its bucket deleted after it began, an upload can no longer complete as it is: it
    holds what it received, not its declared size (read from the event store: the buckets
    read model may lag), and stays so when the bucket is made again (another bucket, for
    the upload's purposes); completing it then asks for the rest. An upload begun after
    the bucket was made again counts as any does."""
    await writer.run(CreateBucket(aggregate_id="went", caller="u10", at=T0))
    gone = await _upload_into(writer, "u10", "went", 60_000)
    await writer.run(
        AppendBytes(
            aggregate_id=gone,
            caller="u10",
            at=T0,
            offset=0,
            pieces=[{"sha256": sha(gone), "size": 20_000}],
        )
    )
    await rebuild(event_store.pool, "uploads")
    assert await storage_used(event_store, "u10") == 60_000
    await writer.run(DeleteBucket(aggregate_id="went", caller="u10", at=T0))
    assert await storage_used(event_store, "u10") == 20_000
    await writer.run(CreateBucket(aggregate_id="went", caller="u10", at=T0))
    assert await storage_used(event_store, "u10") == 20_000
    later = await _upload_into(writer, "u10", "went", 50_000)
    await rebuild(event_store.pool, "uploads")
    assert await storage_used(event_store, "u10") == 70_000
    # Completing the first with all its 60,000 bytes asks for the 40,000 it does not
    # count: they do not fit beside 70,000.
    details = await refused(event_store, "u10", 60_000, completing=gone)
    assert details == {"quota": QUOTA, "used": 70_000, "requested": 40_000}
    # Completing one that counts asks for nothing, even at the quota.
    rid = await held(event_store, "u10", 50_000, completing=later)
    assert await storage_used(event_store, "u10") == 70_000
    await release(event_store.pool, rid)
    await writer.run(AbortUpload(aggregate_id=later, caller="u10", at=T0))
    await rebuild(event_store.pool, "uploads")
    rid = await held(event_store, "u10", 60_000, completing=gone)
    # Held until the read model has it completed (it is still active there).
    assert await storage_used(event_store, "u10") == 60_000


async def test_an_uploads_holds_count_what_its_row_does_not_yet_and_once(
    event_store: PostgresEventStore, writer: Writer
) -> None:
    """Holds for an upload (`completing`: a length declared, bytes into it) count what of
    them its row does not count yet, none once it does; two of one upload count as the
    largest, not their sum; and an upload left out is left out with its holds (a second
    request for it asks nothing more)."""
    uid = await _initiated(
        writer, "u11", file_name="f", file_size=None, chunk_size=60_000, mode="stream"
    )
    await rebuild(event_store.pool, "uploads")
    assert await storage_used(event_store, "u11") == 0  # no length, no bytes
    rid = await held(event_store, "u11", 60_000, used=0, completing=uid)
    assert await storage_used(event_store, "u11") == 60_000
    again = await held(event_store, "u11", 60_000, completing=uid)
    assert await storage_used(event_store, "u11") == 60_000
    assert await storage_used(event_store, "u11", exclude_upload=uid) == 0
    await release(event_store.pool, again)
    await writer.run(
        AppendBytes(
            aggregate_id=uid,
            caller="u11",
            at=T0,
            offset=0,
            pieces=[{"sha256": sha(uid), "size": 60_000}],
        )
    )
    await keep(event_store.pool, rid, 60_000)  # the request is over: its bytes stored
    assert await storage_used(event_store, "u11") == 60_000  # the row still has none
    await rebuild(event_store.pool, "uploads")
    assert await storage_used(event_store, "u11") == 60_000  # the row's now, once
    # Counted by the row, the hold is dropped by the owner's next check.
    await release(event_store.pool, await held(event_store, "u11", 0))
    left = await event_store.pool.fetchval(
        "SELECT count(*) FROM api.quota_reservations WHERE owner = 'u11'"
    )
    assert left == 0
