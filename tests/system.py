"""A whole Cairn in the test process: uvicorn on a free port plus every background process.

Used by the API and end-to-end tests; everything runs against the real embedded Postgres
and Tansu broker, with its own database and topic prefix."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import jwt

from bus import tracing
from bus.embedded import free_port
from bus.kafka import ensure_topics
from bus.processes import RUNNERS
from bus.settings import Settings


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
