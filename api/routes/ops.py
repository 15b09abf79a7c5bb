"""Operations endpoints: liveness, readiness (Postgres, Kafka, blob store), Prometheus metrics,
and the AsyncAPI document FastStream generates from the event publishers (bus/kafka/spec.py).

Lag gauges are computed from Postgres, so the API's /metrics tells the relay's and the
projections' lag even though those run in other processes; at most once per
`LAG_GAUGES_EVERY` seconds per process (`LagGauges`), since /metrics is unauthenticated and
a flood of scrapes must not become a flood of queries.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Annotated, Any

import asyncpg
from litestar import MediaType, Request, Response, get
from litestar.openapi import ResponseSpec
from litestar.params import QueryParameter
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from api.context import ctx
from api.http.strict import strict_request
from api.paging import enum_query
from api.readiness import Readiness
from api.schemas import ReadinessReport, ok
from bus.config.logs import get_logger
from bus.config.metrics import EVENT_STORE_POSITION, LAG_GAUGES_AGE, RELAY_LAG
from bus.config.metrics import PROJECTION_EVENTS_HELD as EVENTS_HELD
from bus.config.metrics import PROJECTION_LAG_EVENTS as PROJECTION_LAG
from bus.kafka.spec import asyncapi_document
from domain.events import stream_id_for
from projections.holds import UNRESOLVED_COUNT
from projections.rebuild import PROJECTIONS

log = get_logger(__name__)

# The database-backed gauges are at most this old when Postgres answers (plus the query's
# own time); a refresh gives up after LAG_QUERY_TIMEOUT, so /metrics answers within it.
LAG_GAUGES_EVERY = 5.0
LAG_QUERY_TIMEOUT = 2.0
SCOPES = ("process",)  # /ready?scope=: the one other readiness there is


@get("/health", include_in_schema=True, tags=["ops"], summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/ready",
    tags=["ops"],
    summary="Readiness: a command round trip through the actors works, the relay and the"
    " projector run, Postgres and the blob store answer; with scope=process only what this"
    " API process needs to serve reads: Postgres, the blob store and its Kafka producer",
    responses={
        **ok(200, ReadinessReport, "Ready: every check passed (503 in the same shape when not)"),
        400: ResponseSpec(
            None,
            description="A query parameter other than scope (unknown_query_parameter), or a"
            " scope other than process",
        ),
    },
    before_request=strict_request,
)
async def ready(
    request: Request[Any, Any, Any],
    scope_: Annotated[
        str | None,
        QueryParameter(
            name="scope",
            description="`process`: this API process's own readiness (postgres,"
            " blob_store, kafka), for a load balancer's or Kubernetes' readiness probe;"
            " without it, the whole system's (a command can be served end to end)",
            schema_extra={"enum": [*SCOPES, None]},
        ),
    ] = None,
) -> Response[Any]:
    # Checked here, as every enum query parameter is (api/paging.py): typed as a Literal,
    # a bad scope was Litestar's `validation_error` naming the parameter `scope_` (this
    # function's name for it) and not the value it takes.
    scope_ = enum_query("scope", scope_, SCOPES)
    state = request.app.state
    key = "readiness" if scope_ is None else "readiness_process"
    readiness = state.get(key)
    if readiness is None:
        readiness = state[key] = Readiness(process=scope_ is not None)
    ok, checks = await readiness.check(ctx(request))
    return Response(
        {"status": "ready" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
        headers={} if ok else {"Retry-After": "1"},
    )


async def query_lag(pool: asyncpg.Pool) -> None:
    """Set the gauges read from Postgres: the newest position, the relay's and each
    projection's lag, the events the projector is held at (projections/holds.py). A few statements, one a projection; `LagGauges` bounds how often."""
    async with pool.acquire() as conn:
        last = await conn.fetchval("SELECT coalesce(max(position), 0) FROM eventstore.events")
        relay = await conn.fetchval(
            "SELECT coalesce(max(position), 0) FROM eventstore.relay_checkpoints WHERE name = 'main'"
        )
        EVENT_STORE_POSITION.set(last)
        RELAY_LAG.set(max(0, last - relay))
        EVENTS_HELD.set(await conn.fetchval(UNRESOLVED_COUNT))
        rows = await conn.fetch("SELECT projection, last_position FROM readmodel.status")
        for r in rows:
            projection = PROJECTIONS.get(r["projection"])
            if projection is None:
                continue
            # Count only the events this projection consumes (its aggregates' streams).
            prefixes = [f"{stream_id_for(a, '')}%" for a in projection.aggregates]
            behind = await conn.fetchval(
                "SELECT count(*) FROM eventstore.events"
                " WHERE position > $1 AND stream_id LIKE ANY($2::text[])",
                r["last_position"] or 0,
                prefixes,
            )
            PROJECTION_LAG.labels(r["projection"]).set(behind)


class LagGauges:
    """The database-backed gauges, read at most once per `LAG_GAUGES_EVERY` seconds per
    process whatever the scrape rate: a scrape that finds them older starts one refresh
    (bounded by `LAG_QUERY_TIMEOUT`), which every concurrent scrape awaits instead of
    querying itself; a failed refresh (Postgres down) is not retried before the same
    interval either. The gauges keep their last values meanwhile, and
    `cairn_lag_gauges_age_seconds` says how old those are."""

    def __init__(self) -> None:
        self._attempted = -math.inf  # monotonic time of the last refresh started
        self._refreshed: float | None = None  # ... and of the last one that succeeded
        self._inflight: asyncio.Task[None] | None = None
        self._failing = False

    async def scrape(self, pool: asyncpg.Pool) -> None:
        if self._inflight is None and time.monotonic() - self._attempted >= LAG_GAUGES_EVERY:
            self._attempted = time.monotonic()
            self._inflight = asyncio.create_task(self._refresh(pool), name="lag-gauges")
        if self._inflight is not None:
            # Shielded: a scraper that goes away does not cancel the others' refresh.
            await asyncio.shield(self._inflight)
        refreshed = self._refreshed
        LAG_GAUGES_AGE.set(math.inf if refreshed is None else time.monotonic() - refreshed)

    def from_other_threads(
        self, loop: asyncio.AbstractEventLoop, pool: asyncpg.Pool
    ) -> Callable[[], None]:
        """The hook that refreshes the gauges for a collection in another thread: the
        metrics port of one of several API processes (prometheus_client's server, a
        thread: bus/run/cli.py) runs `scrape` on this process's loop and waits for it, as
        a scrape of /metrics does. Collections on the loop itself (the /metrics route,
        which awaited `scrape` already) and a loop that does not answer within the
        refresh's own bound leave the gauges as they are, with their age."""

        def before_collect() -> None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                return  # on an event loop: the /metrics route (or a test's), never blocked
            future = asyncio.run_coroutine_threadsafe(self.scrape(pool), loop)
            try:
                future.result(timeout=LAG_QUERY_TIMEOUT + 1)
            except Exception:  # a loop stopping, or too busy: the last values, and their age
                future.cancel()
                refreshed = self._refreshed
                LAG_GAUGES_AGE.set(math.inf if refreshed is None else time.monotonic() - refreshed)

        return before_collect

    async def _refresh(self, pool: asyncpg.Pool) -> None:
        try:
            async with asyncio.timeout(LAG_QUERY_TIMEOUT):
                await query_lag(pool)
            self._refreshed = time.monotonic()
            self._failing = False
        except Exception as e:  # metrics must answer even when Postgres does not
            if not self._failing:  # once when it starts failing, not at every scrape
                log.warning("lag gauges not refreshed", error=f"{type(e).__name__}: {e}"[:500])
            self._failing = True
        finally:
            self._inflight = None


@get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics",
    description="Prometheus text format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`),"
    " or OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0; charset=utf-8`)"
    " when the scraper's Accept header asks for it.",
    media_type=MediaType.TEXT,
)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = request.app.state
    gauges = state.get("lag_gauges")
    if gauges is None:
        gauges = state["lag_gauges"] = LagGauges()
    await gauges.scrape(ctx(request).pool)
    # As prometheus_client's own server (the other kinds') answers: the format the scraper's
    # Accept asks for, typed with its own charset. Given as the header, since Litestar would
    # append a second `charset` to a text/ media type (a duplicate parameter, which Go's
    # mime.ParseMediaType, and so Prometheus 3, refuses).
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(REGISTRY), headers={"content-type": content_type})


@get("/schema/asyncapi.json", tags=["ops"], summary="AsyncAPI document of the Kafka topics")
async def asyncapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return asyncapi_document(ctx(request).settings)
