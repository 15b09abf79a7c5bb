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
from api.http.access import access_log
from api.http.dates import with_date
from api.http.drain import Drain
from api.http.head import HeadForGet
from api.http.headlimits import HeadLimits, LimitedHttpToolsProtocol
from api.http.sendwatch import WatchedWebSocketProtocol
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.run import listen
from bus.run.heap import settle_again

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
        body_timeout=settings.body_timeout,
    )


async def run(settings: Settings, stop: asyncio.Event) -> None:
    app = create_app(settings)
    # HEAD wherever GET is answered (api/http/head.py), inside the drain's count.
    drain = Drain(HeadForGet(app))
    # The app's routes, schemas and middleware live as long as the process (see bus/run/heap.py).
    settle_again()
    config = uvicorn.Config(
        # Our access log line per request, in the JSON stream, drained 503s included.
        access_log(with_date(drain)),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        date_header=False,  # api/http/dates.py sends a current one
        log_config=None,  # uvicorn's loggers go through ours (bus/config/logs.py)
        access_log=False,
        lifespan="on",
        # Nothing is left for uvicorn to cancel once the drain is done (see below).
        timeout_graceful_shutdown=5,
        timeout_keep_alive=max(1, round(settings.keepalive_timeout)),
        http=LimitedHttpToolsProtocol.with_limits(head_limits(settings)),
        # Forwarded headers are trusted only when the operator says a proxy sets them.
        proxy_headers=settings.trust_proxy,
        forwarded_allow_ips="*" if settings.trust_proxy else None,
        # The WebSocket protocol layer refuses (1009) frames far over the app's own limit
        # (api/events/websocket.py closes with a reason above ws_max_message_bytes).
        ws_max_size=4 * settings.ws_max_message_bytes,
        # uvicorn's own WebSocket protocol plus a bound on stalled writes (api/http/sendwatch.py).
        ws=WatchedWebSocketProtocol,
    )
    server = QuietServer(config)
    # Several API processes on one port (bus/run/listen.py): each its own shared socket.
    sockets = (
        [listen.shared_listener(settings.host, settings.port)]
        if settings.api_processes > 1
        else None
    )
    task = asyncio.create_task(server.serve(sockets=sockets))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        # Drain first: new requests 503 from now on, and live event streams (which never
        # finish on their own) are ended with a reason so clients resume elsewhere; the
        # other requests in flight finish, or get 503 at the end of the drain.
        drain.refuse_new()
        events = getattr(app.state, "events", None)
        if events is not None:
            events.shutdown()
        cancelled = await drain.drain(settings.drain_timeout)
        if cancelled:
            log.warning("requests still running at the end of the drain got 503", count=cancelled)
        server.should_exit = True
    await task
    if not server.started and not stop.is_set():
        # The lifespan failed (uvicorn logged why, e.g. the blob store is unreachable).
        raise RuntimeError("the API did not start")
