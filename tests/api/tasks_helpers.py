"""Helpers for the task tests: files to work on, waiting for a task, counting events."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from bus.store.eventstore import PostgresEventStore
from domain.events import EventMeta, NewEvent
from domain.files.events import FileCreated
from domain.values import Piece
from handlers.tasks import leases
from tests.system import wait_until


async def upload(c: httpx.AsyncClient, data: bytes, name: str = "f.bin", **extra: Any) -> str:
    r = await c.post(
        "/v1/uploads",
        json={"file_name": name, "file_size": len(data), "chunk_size": max(len(data), 1), **extra},
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    if data:
        assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=data)).status_code == 201
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return str(r.json()["file_id"])


async def clone_files(
    pool: asyncpg.Pool,
    c: httpx.AsyncClient,
    owner: str,
    source: str,
    n: int,
    prefix: str,
    *,
    at: datetime | None = None,
    bucket: str = "default",
) -> list[str]:
    """n files sharing `source`'s bytes, written straight to the event store (fast setup;
    the relay and projector pick them up like any other), created `at` (default now)."""
    meta = (await c.get(f"/v1/files/{source}")).json()
    store = PostgresEventStore(pool)
    events = await store.read_stream(f"file-{source}")
    created = events[0].payload
    assert isinstance(created, FileCreated)
    ids = []
    for i in range(n):
        fid = str(uuid.uuid4())
        ev = FileCreated(
            file_id=fid,
            owner=owner,
            name=f"{prefix}{i:05d}.bin",
            size=meta["size"],
            content_type=meta["content_type"],
            sha256=meta["sha256"],
            manifest=tuple(Piece(p.sha256, p.size) for p in created.manifest),
            bucket=bucket,
            at=at or datetime.now(UTC),
        )
        await store.append(
            f"file-{fid}", 0, [NewEvent.of(ev)], EventMeta(occurred_at=ev.at, owner=owner)
        )
        ids.append(fid)
    return ids


async def task(c: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    r = await c.get(f"/v1/tasks/{task_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def finished(c: httpx.AsyncClient, task_id: str, timeout: float = 120) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        t = await task(c, task_id)
        return t if t["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    return await wait_until(done, timeout)  # type: ignore[no-any-return]


async def start(c: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> str:
    r = await c.post("/v1/tasks", json=body, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "PENDING"
    return str(r.json()["id"])


async def count_events(pool: asyncpg.Pool, event_type: str, stream_ids: list[str]) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE event_type = $1"
            " AND stream_id = ANY($2::text[])",
            event_type,
            stream_ids,
        )
    )


async def bucket(c: httpx.AsyncClient) -> str:
    """A new bucket of the client's user (names are global: a random one)."""
    name = f"t-{secrets.token_hex(6)}"
    r = await c.post("/v1/buckets", json={"name": name})
    assert r.status_code == 201, r.text
    return name


STOPPED = {"pause": "PAUSED", "cancel": "CANCELLED"}


async def stop_mid_run(
    pool: asyncpg.Pool, c: httpx.AsyncClient, task_id: str, action: str
) -> dict[str, Any]:
    """Pause or cancel a task once it has done some items; the task once its worker has
    let go of it (stopped at a safe point, checkpoint written)."""

    async def some_done() -> bool:
        return bool((await task(c, task_id))["progress"]["items_done"] > 0)

    await wait_until(some_done)
    r = await c.post(f"/v1/tasks/{task_id}/{action}")
    assert r.status_code == 200 and r.json()["status"] == STOPPED[action], r.text

    async def worker_let_go() -> bool:
        return await leases.holder(pool, task_id) is None

    await wait_until(worker_let_go, 10)
    return await task(c, task_id)
