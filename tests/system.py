"""A whole Cairn in the test process: uvicorn on a free port plus every background process.

Used by the API and end-to-end tests; everything runs against the real embedded Postgres
and Tansu broker, with its own database and topic prefix."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt

from bus.config import tracing
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics
from bus.run.processes import RUNNERS
from bus.store import db
from tests.ports import free_port

# Tests run their consumers with a short session timeout: the embedded broker holds every
# JoinGroup for half of it, which is most of what a consumer takes to start, and a SIGKILLed
# consumer's partitions move after it (bus/config/settings.py). The default is 10 s.
KAFKA_SESSION_TIMEOUT_MS = 3000


@dataclass
class System:
    settings: Settings
    pool: asyncpg.Pool
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    stops: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def token(self, user: str, admin: bool = False) -> str:
        return jwt.encode(
            {"sub": user, "roles": ["admin"] if admin else [], "exp": int(time.time()) + 3600},
            self.settings.resolved_jwt_secret(),
            algorithm="HS256",
        )

    def client(
        self, user: str | None = "alice", admin: bool = False, **kw: Any
    ) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token(user, admin)}"} if user else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, **kw)

    def start(self, kind: str) -> None:
        stop = asyncio.Event()
        self.stops[kind] = stop
        self.tasks[kind] = asyncio.create_task(RUNNERS[kind](self.settings, stop), name=kind)

    async def stop(self, kind: str) -> None:
        self.stops[kind].set()
        task = self.tasks.pop(kind)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)

    async def kill(self, kind: str) -> None:
        """Cancel abruptly: no graceful shutdown, offsets not committed."""
        task = self.tasks.pop(kind)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def wait_api(self, deadline: float = 30) -> None:
        end = time.monotonic() + deadline
        async with httpx.AsyncClient(base_url=self.url) as c:
            while True:
                try:
                    if (await c.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > end:
                    raise TimeoutError("API did not come up")
                await asyncio.sleep(0.05)

    async def shutdown(self) -> None:
        for kind in list(self.tasks):
            await self.stop(kind)


async def start_system(
    base: Settings, pool: asyncpg.Pool, kinds: tuple[str, ...] = tuple(RUNNERS)
) -> System:
    settings = Settings(
        **{
            **base.__dict__,
            "port": free_port(),
            "topic_prefix": base.topic_prefix or f"t{secrets.token_hex(5)}",
        }
    )
    await ensure_topics(settings)
    tracing.setup("tests")
    system = System(settings, pool)
    for kind in kinds:
        system.start(kind)
    if "api" in kinds:
        await system.wait_api()
    return system


async def wait_until(predicate: Any, timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy (for read-model lag)."""
    end = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


# The migrated database every test database is cloned from (CREATE DATABASE ... TEMPLATE).
TEMPLATE = "cairn_template"


async def ensure_template(pg_url: str) -> str:
    """The template's URL, created and migrated if it is not (cheap when it is)."""
    url = await db.ensure_database(pg_url, TEMPLATE)
    await db.migrate(url)
    return url


async def clone_template(pg_url: str, prefix: str) -> tuple[str, str]:
    """(name, URL) of a new database cloned from the migrated template."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    finally:
        await conn.close()
    return name, db.database_url(pg_url, name)


@asynccontextmanager
async def cloned_database(pg_url: str) -> AsyncIterator[str]:
    """A database of its own, cloned from the migrated template; dropped afterwards."""
    name, url = await clone_template(pg_url, "t")
    try:
        yield url
    finally:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def isolated_system(
    pg_url: str, kafka_bootstrap: str, **overrides: Any
) -> AsyncIterator[System]:
    """A whole system on its own database (cloned from the migrated template), topics,
    data dir and blob store, with some settings changed."""
    _, url = await clone_template(pg_url, "m")
    tmp = Path(tempfile.mkdtemp(prefix="cairn-sys-"))
    base = Settings(
        data_dir=tmp / "data",
        database_url=url,
        kafka_bootstrap=kafka_bootstrap,
        kafka_idempotence=False,
        kafka_fetch_max_wait_ms=10,
        kafka_session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS,
        kafka_partitions=4,
        topic_prefix=f"m{secrets.token_hex(5)}",
        blob_store=f"file://{tmp / 'blobs'}",
        jwt_secret="test-secret-" + secrets.token_hex(16),
        command_timeout=20.0,
        log_json=False,
    )
    pool = await db.create_pool(url, min_size=1, max_size=20)
    system = await start_system(dataclasses.replace(base, **overrides), pool)
    try:
        yield system
    finally:
        await system.shutdown()
        await pool.close()
        # Its data dir and local blobs (up to hundreds of MB for the big-file tests): a
        # suite leaving them behind fills /tmp after a few runs.
        shutil.rmtree(tmp, ignore_errors=True)
