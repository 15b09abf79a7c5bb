"""The Litestar application: routes, the one exception handler, lifespan of shared resources."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig

from api.auth import Authenticator
from api.bucket_cache import BucketCache
from api.console.mount import console_router
from api.context import AppContext
from api.errors import handle_exception
from api.events.fanout import FanOut
from api.events.stream_slots import StreamSlots
from api.http.signing import Signer
from api.middleware import request_id_middleware
from api.openapi import openapi_config
from api.routes.admin import AdminController
from api.routes.buckets import BucketsController
from api.routes.docs import docs_assets, root
from api.routes.events import EventsController, events_ws
from api.routes.fetches import FetchesController
from api.routes.files import FilesController
from api.routes.objects import ObjectsController
from api.routes.ops import LagGauges, asyncapi, health, metrics, ready
from api.routes.tasks import TasksController
from api.routes.uploads import UploadsController
from api.tus.controller import TusController
from bus.actors.commandbus import CommandBus
from bus.actors.wake import Nudger
from bus.blobs.errors import BlobStoreUnavailable
from bus.blobs.factory import open_blob_store
from bus.config import tracing
from bus.config.logs import configure, get_logger
from bus.config.metrics import export_lag_gauges
from bus.config.settings import Settings
from bus.run.processes import application_name
from bus.store.db import create_pool
from bus.store.eventstore import PostgresEventStore
from bus.store.idempotency import KeyStore

log = get_logger(__name__)


def idempotency_holder(settings: Settings) -> str:
    """This process's name on the idempotency claims it holds: host and port, and which of
    the API processes sharing the port it is (bus/run/listen.py) when there are several, so
    that one starting up frees only its own predecessor's claims, never a live sibling's."""
    name = f"{socket.gethostname()}:{settings.port}"
    return name if settings.api_instance <= 1 else f"{name}#{settings.api_instance}"


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # First: a signing key that is too short stops the start before anything is opened.
        signer = Signer(settings.resolved_signing_key(), settings.signing_old_keys)
        blobs = open_blob_store(settings.blobs_url, settings)
        try:
            # Fail the start (the process exits non-zero) on a store that cannot be
            # reached, with a message that names the setting to fix.
            await blobs.ping()
        except BlobStoreUnavailable as e:
            log.error("blob store unavailable at start", error=str(e))
            await blobs.close()
            raise
        # Leftovers of bodies cut off by a crash (old ones only: other processes share them).
        await blobs.sweep()
        pool = await create_pool(
            settings.database_url or "",
            min_size=2,
            max_size=30,
            # Names the process in pg_stat_activity, as the other kinds' (bus/run/processes.py).
            server_settings={"application_name": application_name("api")},
        )
        # The nudge wakes an idle actor host; the pool brings replies by NOTIFY too.
        bus = CommandBus(settings, nudge=Nudger(pool), pool=pool)
        await bus.start()
        # Only one live process is this host, port and instance: claims held under this
        # name belong to a predecessor that died, and retries of its requests may go ahead.
        holder = idempotency_holder(settings)
        released = await KeyStore(pool).release_holder(holder)
        if released:
            log.info("released idempotency claims of a previous run", count=released)
        # Live buckets between requests, forgotten on every change (NOTIFY).
        buckets = BucketCache(settings.database_url or "")
        buckets.start()
        app.state.cairn = c = AppContext(
            settings=settings,
            pool=pool,
            store=PostgresEventStore(pool),
            blobs=blobs,
            bus=bus,
            auth=Authenticator(settings),
            signer=signer,
            holder=holder,
            buckets=buckets,
        )
        # One reader of the event store feeds every live stream of this process.
        events = FanOut(pool, settings.database_url or "", settings.events_queue_size)
        await events.start()
        app.state.events = events
        # Live streams each hold a connection for as long as their client likes: bounded
        # per user and per process (api/events/stream_slots.py).
        app.state.stream_slots = StreamSlots(
            settings.events_max_streams_per_user, settings.events_max_streams
        )
        flusher = asyncio.create_task(
            c.downloads.run(pool, settings.download_flush_interval), name="download-counts"
        )
        # The gauges read from Postgres, exported by the api only; a scrape of this
        # process's metrics port (several API processes) refreshes them as /metrics does.
        app.state.lag_gauges = lag_gauges = LagGauges()
        unexport = export_lag_gauges(
            lag_gauges.from_other_threads(asyncio.get_running_loop(), pool)
        )
        try:
            yield
        finally:
            unexport()
            flusher.cancel()  # flushes what it holds once more before it ends
            await asyncio.gather(flusher, return_exceptions=True)
            await events.stop()
            await buckets.stop()
            await bus.stop()
            await pool.close()
            await blobs.close()

    configure(settings.log_level, settings.log_json)
    tracing.setup("api")
    exc_handlers: dict[Any, Any] = {Exception: handle_exception}
    return Litestar(
        route_handlers=[
            root,
            docs_assets(),
            console_router(),
            health,
            ready,
            metrics,
            asyncapi,
            UploadsController,
            TusController,
            FilesController,
            FetchesController,
            BucketsController,
            ObjectsController,
            TasksController,
            AdminController,
            EventsController,
            events_ws,
        ],
        lifespan=[lifespan],
        exception_handlers=exc_handlers,
        middleware=[request_id_middleware],
        logging_config=None,  # Litestar's own would add a plain-text root handler
        openapi_config=openapi_config("0.1.0"),
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_origins),
            # Auth is a header, never a cookie: no credentials, so a wildcard origin cannot
            # read anything a user's browser session would unlock.
            allow_credentials=False,
            allow_methods=["*"],
            allow_headers=["*"],
            # `*`: every header, an object's x-amz-meta-* among them (their names are the
            # users'); browsers honour it because credentials are never allowed. The names
            # stay listed for clients that predate the wildcard.
            expose_headers=[
                "*",
                "X-Request-ID",
                "X-Total-Count",
                "Last-Event-ID",
                "Location",
                "Retry-After",
                "ETag",
                "Content-Range",
                "Content-Length",
                "Content-Disposition",
                "Accept-Ranges",
                "Last-Modified",
                "Upload-Offset",
                "Upload-Length",
                "Upload-Metadata",
                "Upload-Defer-Length",
                "Upload-Expires",
                "Upload-Concat",
                "Tus-Version",
                "Tus-Resumable",
                "Tus-Extension",
                "Tus-Max-Size",
                "Tus-Checksum-Algorithm",
            ],
        ),
        debug=False,
    )
