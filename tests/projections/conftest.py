"""Fixtures for the projection tests: real events in the real event store, published to the
test's own Kafka topics by hand (the relay is not under test here), and a live projector."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest_asyncio
from aiokafka.structs import RecordMetadata

from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, headers, make_producer
from bus.store.eventstore import PostgresEventStore
from domain.commands import (
    Command,
    CompleteUpload,
    CreateFile,
    DeleteFile,
    InitiateUpload,
    StoreChunk,
)
from domain.events import RecordedEvent
from projections.runner import Projector
from tests.commands import decide_and_append

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Writer:
    """Runs commands the way an actor does: fold the stream, decide, append at its version."""

    store: PostgresEventStore

    async def run(self, cmd: Command) -> list[RecordedEvent]:
        return await decide_and_append(self.store, cmd)

    async def upload(
        self,
        owner: str,
        name: str,
        size: int,
        *,
        chunk_size: int = 100,
        at: datetime = T0,
        chunks: int | None = None,
        complete: bool = True,
        create_file: bool = True,
        bucket: str = "default",
        content_type: str = "application/octet-stream",
    ) -> tuple[str, str | None, list[RecordedEvent]]:
        """Initiate an upload, store `chunks` chunks (all by default), complete it and create
        its file. Returns (upload id, file id, events in append order)."""
        uid, fid = str(uuid.uuid4()), str(uuid.uuid4())
        out = await self.run(
            InitiateUpload(
                aggregate_id=uid,
                caller=owner,
                at=at,
                file_name=name,
                file_size=size,
                chunk_size=chunk_size,
                content_type=content_type,
                bucket=bucket,
                metadata={"k": name},
            )
        )
        total = -(-size // chunk_size) if size else 0
        manifest = []
        for i in range(total if chunks is None else chunks):
            csize = min(chunk_size, size - i * chunk_size)
            digest = sha(f"{uid}:{i}")
            manifest.append({"sha256": digest, "size": csize})
            out += await self.run(
                StoreChunk(
                    aggregate_id=uid,
                    caller=owner,
                    at=at + timedelta(seconds=i + 1),
                    index=i,
                    size=csize,
                    sha256=digest,
                )
            )
        if not complete:
            return uid, None, out
        done = at + timedelta(seconds=total + 1)
        whole = sha(f"{uid}:all")
        out += await self.run(
            CompleteUpload(aggregate_id=uid, caller=owner, at=done, file_id=fid, sha256=whole)
        )
        if create_file:
            out += await self.run(
                CreateFile(
                    aggregate_id=fid,
                    caller=owner,
                    at=done,
                    owner=owner,
                    name=name,
                    size=size,
                    content_type=content_type,
                    sha256=whole,
                    manifest=manifest,
                    bucket=bucket,
                    upload_id=uid,
                )
            )
        return uid, fid, out

    async def delete_file(self, owner: str, fid: str, at: datetime) -> list[RecordedEvent]:
        return await self.run(DeleteFile(aggregate_id=fid, caller=owner, at=at))


@pytest_asyncio.fixture(loop_scope="session")
async def writer(event_store: PostgresEventStore) -> Writer:
    return Writer(event_store)


class Publisher:
    """Publishes events as the relay would: orjson envelope, keyed by aggregate id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = make_producer(settings)

    async def send_raw(self, aggregate: str, key: str, value: bytes) -> RecordMetadata:
        fut = await self.producer.send(
            self.settings.topic(aggregate), value=value, key=key.encode()
        )
        return await fut

    async def send(self, events: Sequence[RecordedEvent]) -> list[RecordMetadata]:
        futs = [
            await self.producer.send(
                self.settings.topic(ev.aggregate),
                value=orjson.dumps(ev.envelope()),
                key=ev.aggregate_id.encode(),
                headers=headers(**{"event-id": ev.id, "event-type": ev.type}),
            )
            for ev in events
        ]
        return list(await asyncio.gather(*futs))


@pytest_asyncio.fixture(loop_scope="session")
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    await ensure_topics(settings, [settings.topic("uploads"), settings.topic("files")])
    p = Publisher(settings)
    await p.producer.start()
    yield p
    await p.producer.stop()


class LiveProjector:
    def __init__(self, projector: Projector, task: asyncio.Task[None]) -> None:
        self.projector = projector
        self.task = task

    async def caught_up(self, sent: Sequence[RecordMetadata], timeout: float = 60.0) -> None:
        """Wait until every message in `sent` has been applied and committed; fail at once
        if the projector died instead."""

        async def all_done() -> None:
            for md in sent:
                await self.projector.wait_processed(md.topic, md.partition, md.offset, timeout)

        waiter = asyncio.create_task(all_done())
        await asyncio.wait({waiter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            self.task.result()  # raises what killed the projector
            raise AssertionError("the projector stopped")
        waiter.result()


@pytest_asyncio.fixture(loop_scope="session")
async def projector(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[LiveProjector]:
    stop = asyncio.Event()
    p = Projector(settings, pool)
    task = asyncio.create_task(p.run(stop))
    yield LiveProjector(p, task)
    stop.set()
    await asyncio.wait_for(task, timeout=30)


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    """Every projection-owned row, in a stable order (not readmodel.status: it has now())."""
    out = {}
    async with pool.acquire() as conn:
        for table, key in (
            ("readmodel.uploads", "id"),
            ("readmodel.files", "id"),
            ("readmodel.usage_daily", "owner, day"),
            ("readmodel.applied", "projection, stream_id"),
        ):
            out[table] = [
                dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {key}")
            ]
    return out


class CountingConnection:
    """A connection that counts the statements sent through it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name in ("execute", "fetch", "fetchval", "fetchrow", "executemany"):

            async def counted(*args: Any, **kw: Any) -> Any:
                self.statements += 1
                return await attr(*args, **kw)

            return counted
        return attr
