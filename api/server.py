"""The API process: uvicorn serving the Litestar app, with Cairn's HTTP protocol class.

`bus/run/processes.py` names this runner ("api.server:run"); it is imported only by the
process that serves HTTP."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from api.app import create_app
from api.http.trailers import TrailerAwareHttpToolsProtocol
from bus.config.settings import Settings


class QuietServer(uvicorn.Server):
    # The process's signals belong to `cairn run` (which sets the stop event), not to
    # uvicorn, which would otherwise re-raise them after shutting down.
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


async def run(settings: Settings, stop: asyncio.Event) -> None:
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
    server = QuietServer(config)
    task = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await task
    stopper.cancel()
    if not server.started and not stop.is_set():
        # The lifespan failed (uvicorn logged why, e.g. the blob store is unreachable).
        raise RuntimeError("the API did not start")
