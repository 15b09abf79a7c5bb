"""The process kinds Cairn runs, each scalable on its own, by name.

`cairn run KIND` runs one in the foreground (what production deploys); `cairn up` starts
them all as child processes of one supervisor. Each runner returns when `stop` is set.

The runners are named here as "module:attribute" strings and imported only when a process
of that kind starts: `bus/` must not import the layers above it (api, projections,
handlers), and each process loads only its own code. A runner is either a coroutine
function `run(settings, stop)` or a class built as `Class(settings, pool)` whose
`run(stop)` gets a Postgres pool of its own.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from bus.config.settings import Settings

Runner = Callable[[Settings, asyncio.Event], Awaitable[None]]

# kind -> (component, Postgres pool size; 0 = the component makes its own connections)
KINDS: dict[str, tuple[str, int]] = {
    "api": ("api.server:run", 0),
    "actors": ("bus.actors.host:ActorHost", 20),
    "relay": ("bus.store.relay:Relay", 5),
    "projector": ("projections.runner:Projector", 10),
    "handlers": ("handlers.runner:Handlers", 10),
    "tasks": ("handlers.tasks.worker:TaskWorker", 10),
    "fetcher": ("handlers.fetcher:Fetcher", 5),
}


def _load(component: str) -> Any:  # a coroutine function or a class (see above)
    module, _, name = component.partition(":")
    return getattr(importlib.import_module(module), name)


def load(kind: str) -> None:
    """Import a kind's code without running it (`cairn run` does, before it settles the
    process's heap: bus/run/heap.py)."""
    _load(KINDS[kind][0])


def application_name(kind: str) -> str:
    """The Postgres application_name of a process kind's connections."""
    return f"cairn-{kind}"


def _runner(kind: str, component: str, pool_size: int) -> Runner:
    async def run(settings: Settings, stop: asyncio.Event) -> None:
        target: Any = _load(component)
        if not inspect.isclass(target):
            await target(settings, stop)
            return
        component_class: Any = target
        from bus.store.db import create_pool

        pool = await create_pool(
            settings.database_url or "",
            min_size=2,
            max_size=pool_size,
            # Names the process in pg_stat_activity: /ready looks for the projector there.
            server_settings={"application_name": application_name(kind)},
        )
        try:
            await component_class(settings, pool).run(stop)
        finally:
            await pool.close()

    run.__name__ = f"run_{component.partition(':')[0].replace('.', '_')}"
    return run


RUNNERS: dict[str, Runner] = {kind: _runner(kind, *spec) for kind, spec in KINDS.items()}
