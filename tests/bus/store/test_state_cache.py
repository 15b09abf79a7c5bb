"""The state cache (bus/store/state_cache.py): a cached load equals a full fold of the stream
as it is now, whoever appended to it, and memory stays within its weight budget.

Run against both event stores (the Postgres one is the real embedded PostgreSQL); events
are appended through the domain's own decide, as an actor would."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bus.store.state_cache import StateCache, weight
from domain.commands import CreateFile, DeleteFile, UpdateFile
from domain.events import RecordedEvent
from domain.fetches import FetchState, FetchStatus
from domain.fetches.state import Segment
from domain.files import FileState
from domain.ports import EventStore
from domain.registry import AGGREGATES
from domain.sequences import PieceSeq
from tests.commands import decide_and_append

AT = datetime(2026, 1, 1, tzinfo=UTC)
FILES = AGGREGATES["files"]


class Reads:
    """The store, with the `from_version` of every read_stream call recorded."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.from_versions: list[int] = []

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        self.from_versions.append(from_version)
        return await self.store.read_stream(stream_id, from_version)


def create(fid: str, pieces: int = 1) -> CreateFile:
    manifest: list[Any] = [{"sha256": f"{i:064x}", "size": 10} for i in range(pieces)]
    return CreateFile(
        aggregate_id=fid,
        caller="alice",
        at=AT,
        owner="alice",
        name="f.bin",
        size=10 * pieces,
        content_type="application/octet-stream",
        sha256="0" * 64,
        manifest=manifest,
    )


async def new_file(store: EventStore) -> tuple[str, str]:
    """A file created in `store`: its id and its stream's."""
    fid = str(uuid.uuid4())
    await decide_and_append(store, create(fid))
    return fid, f"file-{fid}"


async def full_fold(store: EventStore, stream_id: str) -> Any:
    return FILES.fold(await store.read_stream(stream_id))


async def test_a_cached_load_reads_only_what_came_since(store: EventStore) -> None:
    fid = str(uuid.uuid4())
    stream = f"file-{fid}"
    await decide_and_append(store, create(fid, pieces=3))
    cache = StateCache()
    reads = Reads(store)
    first = await cache.load(reads, FILES, stream)  # type: ignore[arg-type]
    assert isinstance(first, FileState) and len(first.manifest) == 3
    again = await cache.load(reads, FILES, stream)  # type: ignore[arg-type]
    assert again is first
    assert reads.from_versions == [1, 2]


async def test_events_appended_elsewhere_are_seen_on_the_next_load(store: EventStore) -> None:
    fid = str(uuid.uuid4())
    stream = f"file-{fid}"
    cache = StateCache()
    assert await cache.load(store, FILES, stream) is None
    await decide_and_append(store, create(fid))
    assert (await cache.load(store, FILES, stream)).name == "f.bin"
    await decide_and_append(
        store, UpdateFile(aggregate_id=fid, caller="alice", at=AT, name="g.bin")
    )
    await decide_and_append(
        store, UpdateFile(aggregate_id=fid, caller="alice", at=AT, metadata={"colour": "red"})
    )
    renamed = await cache.load(store, FILES, stream)
    assert renamed == await full_fold(store, stream)
    assert renamed.name == "g.bin" and renamed.metadata == {"colour": "red"}
    await decide_and_append(store, DeleteFile(aggregate_id=fid, caller="alice", at=AT))
    gone = await cache.load(store, FILES, stream)
    assert gone == await full_fold(store, stream)
    assert gone.deleted


async def test_an_older_load_finishing_last_does_not_move_the_cache_back(
    store: EventStore,
) -> None:
    fid, stream = await new_file(store)
    cache = StateCache()
    old = await cache.load(store, FILES, stream)
    await decide_and_append(
        store, UpdateFile(aggregate_id=fid, caller="alice", at=AT, name="new.bin")
    )
    newer = await cache.load(store, FILES, stream)
    # What a load that read before the update and finished after it would keep:
    cache._keep(stream, "files", 1, old)
    reads = Reads(store)
    assert await cache.load(reads, FILES, stream) is newer
    assert reads.from_versions == [3]


class HeldReads:
    """The store, with read_stream of one stream held until `release` is set."""

    def __init__(self, store: EventStore, stream_id: str) -> None:
        self.store = store
        self.stream_id = stream_id
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        if stream_id == self.stream_id:
            self.reading.set()
            await self.release.wait()
        return await self.store.read_stream(stream_id, from_version)


async def test_an_entry_evicted_during_a_load_still_answers_that_load(
    store: EventStore,
) -> None:
    cache = StateCache(max_weight=16)
    fid = str(uuid.uuid4())
    await decide_and_append(store, create(fid))
    stream = f"file-{fid}"
    state = await cache.load(store, FILES, stream)
    held = HeldReads(store, stream)
    load = asyncio.create_task(cache.load(held, FILES, stream))  # type: ignore[arg-type]
    await held.reading.wait()
    # Meanwhile other loads push the entry out (each state weighs 1 + 1 piece + metadata).
    for _ in range(8):
        fid_n = str(uuid.uuid4())
        await decide_and_append(store, create(fid_n))
        await cache.load(store, FILES, f"file-{fid_n}")
    assert stream not in cache._states
    held.release.set()
    assert await load == state


def test_weight_counts_collection_fields() -> None:
    state = FileState(
        id="f",
        owner="alice",
        name="a name that is long",
        size=30,
        content_type="text/plain",
        sha256="0" * 64,
        manifest=(("a" * 64, 10), ("b" * 64, 10), ("c" * 64, 10)),
        bucket="default",
        created_at=AT,
        updated_at=AT,
        metadata={"k": "v", "l": "w"},
    )
    assert weight(state) == 1 + 3 + 2
    assert weight(None) == 1
    assert weight(FileState) == 1


async def test_the_cache_stays_within_its_weight(store: EventStore) -> None:
    cache = StateCache(max_weight=200)
    streams = []
    for _ in range(12):
        fid = str(uuid.uuid4())
        await decide_and_append(store, create(fid, pieces=20))  # weight 1 + 20 pieces
        streams.append(f"file-{fid}")
        state = await cache.load(store, FILES, streams[-1])
        assert weight(state) == 21
        assert cache._weight <= 200
    assert len(cache) == 200 // 21
    # The least recently used went first; every load is still a full fold's equal.
    assert list(cache._states) == streams[-len(cache) :]
    for stream in streams:
        assert await cache.load(store, FILES, stream) == await full_fold(store, stream)


async def test_a_state_heavier_than_half_the_budget_is_not_kept(
    store: EventStore,
) -> None:
    cache = StateCache(max_weight=198)
    fid = str(uuid.uuid4())
    await decide_and_append(store, create(fid, pieces=100))
    state = await cache.load(store, FILES, f"file-{fid}")
    assert len(state.manifest) == 100
    assert len(cache) == 0 and cache._weight == 0


class ReadThenHold:
    """The store, counting read_stream calls; the first call of `stream_id` reads, then
    holds its answer until `release` is set (a read that began before what comes next)."""

    def __init__(self, store: EventStore, stream_id: str, fail: bool = False) -> None:
        self.store = store
        self.stream_id = stream_id
        self.fail = fail
        self.calls = 0
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        self.calls += 1
        events = await self.store.read_stream(stream_id, from_version)
        if self.calls == 1:
            self.reading.set()
            await self.release.wait()
            if self.fail:
                raise ConnectionError("the database went away")
        return events


async def test_concurrent_loads_share_the_next_read_and_see_what_came_before_them(
    store: EventStore,
) -> None:
    fid, stream = await new_file(store)
    cache = StateCache()
    reads = ReadThenHold(store, stream)
    first = asyncio.create_task(cache.load(reads, FILES, stream))  # type: ignore[arg-type]
    await reads.reading.wait()
    # Committed after the running read took its snapshot, before the next loads ask.
    await decide_and_append(
        store, UpdateFile(aggregate_id=fid, caller="alice", at=AT, name="later.bin")
    )
    later = [
        asyncio.create_task(cache.load(reads, FILES, stream))  # type: ignore[arg-type]
        for _ in range(5)
    ]
    # One of them gives up (its client went away): the read goes on for the others.
    later[0].cancel()
    reads.release.set()
    assert (await first).name == "f.bin"  # the read it started, from before the update
    states = await asyncio.gather(*later[1:])
    assert all(s.name == "later.bin" for s in states)
    assert all(s is states[0] for s in states)
    assert reads.calls == 2  # six loads, two queries
    assert cache._reads == {}  # nothing left running
    again = await cache.load(reads, FILES, stream)  # type: ignore[arg-type]
    assert again is states[0] and reads.calls == 3


async def test_a_failed_read_fails_its_loads_and_the_next_load_reads_again(
    store: EventStore,
) -> None:
    _, stream = await new_file(store)
    cache = StateCache()
    reads = ReadThenHold(store, stream, fail=True)
    first = asyncio.create_task(cache.load(reads, FILES, stream))  # type: ignore[arg-type]
    await reads.reading.wait()
    waiting = asyncio.create_task(cache.load(reads, FILES, stream))  # type: ignore[arg-type]
    reads.release.set()
    with pytest.raises(ConnectionError):
        await first
    # The load that waited for the next read got it (a fresh query, which works).
    assert (await waiting).name == "f.bin"
    assert (await cache.load(store, FILES, stream)).name == "f.bin"
    assert cache._reads == {}


async def test_the_default_cache_keeps_a_state_of_the_most_pieces_a_file_may_have(
    store: EventStore,
) -> None:
    # A file or upload may hold 40,000 pieces or chunks (api/completion.py). Such a state
    # was never kept, so every GET of it read and folded its whole stream again (for an
    # upload, 40,000 events: about half a second of the API's event loop per request).
    cache = StateCache()
    fid = str(uuid.uuid4())
    await decide_and_append(store, create(fid, pieces=40_000))
    reads = Reads(store)
    first = await cache.load(reads, FILES, f"file-{fid}")  # type: ignore[arg-type]
    assert len(first.manifest) == 40_000
    again = await cache.load(reads, FILES, f"file-{fid}")  # type: ignore[arg-type]
    assert again is first
    assert reads.from_versions == [1, 2]  # the second load read only what came since


def test_an_upload_weighs_its_chunks() -> None:
    from domain.uploads.state import Chunk, ChunkMap, UploadState, UploadStatus

    chunks = ChunkMap(Chunk(i, i, 1, "0" * 64) for i in range(300))
    state = UploadState(
        id="u",
        owner="alice",
        file_name="f",
        file_size=300,
        chunk_size=1,
        total_chunks=300,
        content_type="application/octet-stream",
        sha256=None,
        bucket="default",
        metadata={"k": "v"},
        status=UploadStatus.IN_PROGRESS,
        created_at=AT,
        updated_at=AT,
        chunks=chunks,
    )
    assert weight(state) == 1 + 1 + 300


def test_a_segmented_fetch_weighs_its_segments_pieces() -> None:
    # A segmented fetch keeps its pieces in its segments (joined only where read): its
    # weight counts them, or the cache would hold many fetches of 40,000 pieces as light.
    pieces = PieceSeq(("a" * 64, 1) for _ in range(10))
    state = FetchState(
        id="f",
        owner="alice",
        url="http://x/a",
        generation=0,
        bucket="default",
        key=None,
        sha256=None,
        status=FetchStatus.IN_PROGRESS,
        created_at=AT,
        updated_at=AT,
        segments=(Segment(0, 10, pieces, 10), Segment(10, 20, pieces, 10)),
    )
    assert weight(state) == 1 + 2 + 10 + 10
    assert weight(replace(state, segments=(), prefix=pieces)) == 1 + 10
