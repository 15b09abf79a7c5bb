"""The API process: uvicorn serving the Litestar app, with Cairn's HTTP protocol class.

`bus/run/processes.py` names this runner ("api.server:run"); it is imported only by the
process that serves HTTP."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from api.app import create_app
from api.http.access import access_log
from api.http.trailers import TrailerAwareHttpToolsProtocol
from bus.config.settings import Settings


class QuietServer(uvicorn.Server):
    # The process's signals belong to `cairn run` (which sets the stop event), not to
    # uvicorn, which would otherwise re-raise them after shutting down.
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


async def run(settings: Settings, stop: asyncio.Event) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        access_log(app),  # our access log line per request, in the JSON stream
        host=settings.host,
        port=settings.port,
        log_level="warning",
        log_config=None,  # uvicorn's loggers go through ours (bus/config/logs.py)
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        http=TrailerAwareHttpToolsProtocol,
        # Forwarded headers are trusted only when the operator says a proxy sets them.
        proxy_headers=settings.trust_proxy,
        forwarded_allow_ips="*" if settings.trust_proxy else None,
        # The WebSocket protocol layer refuses (1009) frames far over the app's own limit
        # (api/events/websocket.py closes with a reason above ws_max_message_bytes).
        ws_max_size=4 * settings.ws_max_message_bytes,
    )
    server = QuietServer(config)
    task = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    # Live event streams never finish on their own: end them (with a reason, so clients
    # resume elsewhere) before uvicorn waits for open requests to complete.
    events = getattr(app.state, "events", None)
    if events is not None:
        events.shutdown()
    server.should_exit = True
    await task
    stopper.cancel()
    if not server.started and not stop.is_set():
        # The lifespan failed (uvicorn logged why, e.g. the blob store is unreachable).
        raise RuntimeError("the API did not start")
