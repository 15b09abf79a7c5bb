"""The process kinds Cairn runs, each scalable on its own: api, actors, relay, projector, handlers.

`cairn run KIND` runs one in the foreground (what production deploys); `cairn up` starts
them all as child processes of one supervisor. Each runner returns when `stop` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bus.settings import Settings

Runner = Callable[[Settings, asyncio.Event], Awaitable[None]]


def _quiet_server_class() -> type:
    import contextlib

    import uvicorn

    class QuietServer(uvicorn.Server):
        # The process's signals belong to `cairn run` (which sets the stop event), not to
        # uvicorn, which would otherwise re-raise them after shutting down.
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield

    return QuietServer


async def run_api(settings: Settings, stop: asyncio.Event) -> None:
    import uvicorn

    from api.app import create_app
    from bus.http_protocol import TrailerAwareHttpToolsProtocol

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        http=TrailerAwareHttpToolsProtocol,
        # Forwarded headers are trusted only when the operator says a proxy sets them.
        proxy_headers=settings.trust_proxy,
        forwarded_allow_ips="*" if settings.trust_proxy else None,
    )
    server = _quiet_server_class()(config)
    task = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await task
    stopper.cancel()


async def _with_pool(
    settings: Settings, stop: asyncio.Event, component: str, max_size: int
) -> None:
    """Run `component` ("module:Class", imported lazily so each process loads only its own
    code) as `Class(settings, pool).run(stop)` with a pool of its own."""
    import importlib

    from bus.db import create_pool

    module, _, name = component.partition(":")
    cls = getattr(importlib.import_module(module), name)
    pool = await create_pool(settings.database_url or "", min_size=2, max_size=max_size)
    try:
        await cls(settings, pool).run(stop)
    finally:
        await pool.close()


async def run_actors(settings: Settings, stop: asyncio.Event) -> None:
    await _with_pool(settings, stop, "bus.actors:ActorHost", 20)


async def run_relay(settings: Settings, stop: asyncio.Event) -> None:
    await _with_pool(settings, stop, "bus.relay:Relay", 5)


async def run_projector(settings: Settings, stop: asyncio.Event) -> None:
    await _with_pool(settings, stop, "projections.runner:Projector", 10)


async def run_handlers(settings: Settings, stop: asyncio.Event) -> None:
    await _with_pool(settings, stop, "handlers.runner:Handlers", 10)


RUNNERS: dict[str, Runner] = {
    "api": run_api,
    "actors": run_actors,
    "relay": run_relay,
    "projector": run_projector,
    "handlers": run_handlers,
}
