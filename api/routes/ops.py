"""Operations endpoints: liveness, readiness (Postgres, Kafka, blob store), Prometheus metrics,
and the AsyncAPI document FastStream generates from the event publishers (bus/kafka/spec.py).

Lag gauges are computed from Postgres at scrape time, so the API's /metrics tells the
relay's and the projections' lag even though those run in other processes.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.context import ctx
from api.readiness import Readiness
from api.schemas import ReadinessReport, ok
from bus.config.metrics import EVENT_STORE_POSITION, RELAY_LAG
from bus.config.metrics import PROJECTION_LAG_EVENTS as PROJECTION_LAG
from bus.kafka.spec import asyncapi_document
from domain.events import stream_id_for
from projections.rebuild import PROJECTIONS


@get("/health", include_in_schema=True, tags=["ops"], summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/ready",
    tags=["ops"],
    summary="Readiness: a command round trip through the actors works, the relay and the"
    " projector run, Postgres and the blob store answer",
    responses=ok(
        200, ReadinessReport, "Ready: every check passed (503 in the same shape when not)"
    ),
)
async def ready(request: Request[Any, Any, Any]) -> Response[Any]:
    state = request.app.state
    readiness = state.get("readiness")
    if readiness is None:
        readiness = state["readiness"] = Readiness()
    ok, checks = await readiness.check(ctx(request))
    return Response(
        {"status": "ready" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
        headers={} if ok else {"Retry-After": "1"},
    )


@get("/metrics", tags=["ops"], summary="Prometheus metrics", media_type=MediaType.TEXT)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    c = ctx(request)
    try:
        async with c.pool.acquire() as conn:
            last = await conn.fetchval("SELECT coalesce(max(position), 0) FROM eventstore.events")
            relay = await conn.fetchval(
                "SELECT coalesce(max(position), 0) FROM eventstore.relay_checkpoints WHERE name = 'main'"
            )
            EVENT_STORE_POSITION.set(last)
            RELAY_LAG.set(max(0, last - relay))
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
    except Exception:  # metrics must answer even when Postgres does not
        pass
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@get("/schema/asyncapi.json", tags=["ops"], summary="AsyncAPI document of the Kafka topics")
async def asyncapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return asyncapi_document(ctx(request).settings)
