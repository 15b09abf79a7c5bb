"""The API process: uvicorn serving the Litestar app, with Cairn's HTTP protocol class.

`bus/run/processes.py` names this runner ("api.server:run"); it is imported only by the
process that serves HTTP. The protocol bounds request heads (api/http/headlimits.py) and
hands request trailers to the app (api/http/trailers.py); the app is wrapped in a drain
(api/http/drain.py) so that a stop answers what is in flight instead of cancelling it.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from api.app import create_app
from api.http.drain import Drain
from api.http.headlimits import HeadLimits, LimitedHttpToolsProtocol
from bus.config.logs import get_logger
from bus.config.settings import Settings

log = get_logger(__name__)


class QuietServer(uvicorn.Server):
    # The process's signals belong to `cairn run` (which sets the stop event), not to
    # uvicorn, which would otherwise re-raise them after shutting down.
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def head_limits(settings: Settings) -> HeadLimits:
    return HeadLimits(
        max_request_line=settings.max_request_line_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout=settings.header_timeout,
    )


async def run(settings: Settings, stop: asyncio.Event) -> None:
    app = Drain(create_app(settings))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Nothing is left for uvicorn to cancel once the drain is done (see below).
        timeout_graceful_shutdown=5,
        timeout_keep_alive=max(1, round(settings.keepalive_timeout)),
        http=LimitedHttpToolsProtocol.with_limits(head_limits(settings)),
        # Forwarded headers are trusted only when the operator says a proxy sets them.
        proxy_headers=settings.trust_proxy,
        forwarded_allow_ips="*" if settings.trust_proxy else None,
    )
    server = QuietServer(config)
    task = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        # Drain first (new requests 503, in-flight ones finish), then let uvicorn close.
        cancelled = await app.drain(settings.drain_timeout)
        if cancelled:
            log.warning("requests still running at the end of the drain got 503", count=cancelled)
        server.should_exit = True
    await task
