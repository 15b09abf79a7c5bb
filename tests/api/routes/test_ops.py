"""The operations endpoints under load and partial outages, on a whole isolated system
(real Postgres and broker):

- `/metrics` computes its database-backed gauges at most once per `LAG_GAUGES_EVERY`
  seconds per process: concurrent scrapes share one query, and with the database
  unreachable it still answers 200 at once (the last values, and their age);
- `/ready?scope=process` checks only what this API process needs to serve reads, so it
  stays 200 with the actor host stopped while `/ready` is 503; with the database
  unreachable both are 503.

"The database unreachable" for the API: new connections to the system's database are
refused (`ALLOW_CONNECTIONS false`) and the API's own connections are terminated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from api import readiness
from api.routes import ops
from bus.config import metrics
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.run.processes import application_name
from tests.api.answers import assert_error
from tests.api.documented import assert_documented
from tests.ports import free_port
from tests.system import System, isolated_system, wait_until


def gauge(text: str, name: str) -> float:
    [value] = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} ")]
    return value


@asynccontextmanager
async def database_unreachable(pg_url: str, system: System) -> AsyncIterator[None]:
    database = system.settings.database_url.rsplit("/", 1)[-1].split("?")[0]
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = $2",
            database,
            application_name("api"),
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_concurrent_scrapes_share_one_query(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    query = ops.query_lag

    async def counted(pool: Any) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)  # let the other scrapes arrive while this one is in flight
        await query(pool)

    monkeypatch.setattr(ops, "query_lag", counted)
    # The figures stay fresh for the whole test, however slowly a loaded machine runs the
    # scrapes (20 of them took more than the 5 s default in one CI run): this counts
    # queries, not seconds.
    monkeypatch.setattr(ops, "LAG_GAUGES_EVERY", 3600.0)
    async with (
        isolated_system(pg_server.url, kafka_server.bootstrap) as system,
        system.client(user=None) as c,
    ):
        answers = await asyncio.gather(*(c.get("/metrics") for _ in range(20)))
        assert [r.status_code for r in answers] == [200] * 20
        assert calls == 1
        # Every scrape got the figures of that one query, not a blank.
        for r in answers:
            assert gauge(r.text, "cairn_eventstore_last_position") >= 0
            assert 0 <= gauge(r.text, "cairn_lag_gauges_age_seconds") < ops.LAG_GAUGES_EVERY
        # A scrape soon after is answered from the cache too.
        assert (await c.get("/metrics")).status_code == 200
        assert calls == 1


async def test_metrics_answer_with_the_database_unreachable(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ops, "LAG_GAUGES_EVERY", 0.0)  # every scrape below tries again
    async with (
        isolated_system(pg_server.url, kafka_server.bootstrap) as system,
        system.client(user=None) as c,
    ):
        r = await c.get("/metrics")
        assert r.status_code == 200
        last = gauge(r.text, "cairn_eventstore_last_position")
        async with database_unreachable(pg_server.url, system):
            started = time.monotonic()
            r = await c.get("/metrics")
            assert r.status_code == 200, r.text
            assert time.monotonic() - started < ops.LAG_QUERY_TIMEOUT + 1
            # The last values, and how old they are.
            assert gauge(r.text, "cairn_eventstore_last_position") == last
            first_age = gauge(r.text, "cairn_lag_gauges_age_seconds")
            r = await c.get("/metrics")
            assert r.status_code == 200
            assert gauge(r.text, "cairn_lag_gauges_age_seconds") > first_age


async def test_metrics_content_type_is_one_media_type_as_prometheus_client_serves_it(
    shared_system: System,
) -> None:
    """The api's /metrics is typed as the other kinds' (prometheus_client's own server):
    negotiated from Accept, one `charset` parameter. It was `text/plain; version=1.0.0;
    charset=utf-8; charset=utf-8` (Litestar appended a second charset), which Go's
    mime.ParseMediaType, and so a Prometheus 3 scrape, refuses as a duplicate parameter."""
    async with shared_system.client(user=None) as c:
        r = await c.get("/metrics")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "cairn_eventstore_last_position " in r.text
        r = await c.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0;")
        assert r.headers["content-type"].count("charset") == 1
        assert r.text.endswith("# EOF\n")


async def until_ready(c: httpx.AsyncClient) -> None:
    """Wait for the fresh system's /ready to answer 200 (every check up once)."""

    async def ready() -> bool:
        return (await c.get("/ready")).status_code == 200

    await wait_until(ready, timeout=60, interval=0.3)


async def test_process_readiness_stays_up_without_the_actor_host(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        isolated_system(pg_server.url, kafka_server.bootstrap) as system,
        system.client(user=None) as c,
    ):
        await until_ready(c)
        r = await c.get("/ready", params={"scope": "process"})
        assert r.status_code == 200, r.text
        await assert_documented(c, "get", "/ready", r)
        assert r.json() == {
            "status": "ready",
            "checks": {"postgres": "ok", "blob_store": "ok", "kafka": "ok"},
        }

        monkeypatch.setattr(readiness, "OK_FOR", 0.0)  # every /ready below checks again
        monkeypatch.setattr(readiness, "FAIL_FOR", 0.0)
        await system.stop("actors")
        r = await c.get("/ready")
        assert r.status_code == 503, r.text
        assert r.json()["checks"]["actors"].startswith("error")
        assert r.headers["Retry-After"] == "1"
        r = await c.get("/ready", params={"scope": "process"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ready"


async def test_both_readiness_scopes_fail_with_the_database_unreachable(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        isolated_system(pg_server.url, kafka_server.bootstrap) as system,
        system.client(user=None) as c,
    ):
        await until_ready(c)
        monkeypatch.setattr(readiness, "OK_FOR", 0.0)
        monkeypatch.setattr(readiness, "FAIL_FOR", 0.0)
        async with database_unreachable(pg_server.url, system):
            for params in ({}, {"scope": "process"}):
                r = await c.get("/ready", params=params)
                assert r.status_code == 503, (params, r.text)
                assert r.json()["status"] == "unavailable"
                assert r.json()["checks"]["postgres"].startswith("error"), r.text
                assert r.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    "query",
    ["scope=cluster", "scope=", "probe=1", "scope=process&scope=process&x=1"],
)
async def test_ready_refuses_unknown_parameters_and_scopes(
    shared_system: System, query: str
) -> None:
    async with shared_system.client(user=None) as c:
        r = await c.get(f"/ready?{query}")
        assert r.status_code == 400, r.text
        body = r.json()
        assert set(body) == {"error", "request_id"}
        assert set(body["error"]) == {"code", "message", "details"}
        await assert_documented(c, "get", "/ready", r)


async def test_a_bad_scope_is_refused_naming_the_parameter_and_what_it_takes(
    shared_system: System,
) -> None:
    # Typed as a Literal, `?scope=nope` was Litestar's validation_error naming `scope_`
    # (the handler's own name for it) with "Invalid enum value", and no allowed value.
    async with shared_system.client(user=None) as c:
        for value in ("nope", "", "processes"):
            error = assert_error(
                await c.get("/ready", params={"scope": value}), 400, "invalid_query"
            )
            assert error["details"] == {"field": "scope", "value": value, "allowed": ["process"]}
            assert error["message"] == "scope must be one of process (in any case)"
        # Any ASCII case names the value, as for every enum query parameter.
        r = await c.get("/ready", params={"scope": "PROCESS"})
        assert r.status_code in (200, 503) and set(r.json()["checks"]) == {
            "postgres",
            "blob_store",
            "kafka",
        }, r.text


async def test_the_metrics_port_of_an_api_process_serves_the_lag_gauges_fresh(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    """With `CAIRN_API_PROCESSES` above 1 each API process also serves its metrics on a
    port of its own (prometheus_client's server, a thread: bus/run/cli.py), and the README
    tells operators to scrape those. The gauges read from Postgres were refreshed only by
    `GET /metrics` on the API's port, so on the metrics port they stayed at whatever that
    process had last read (0 on a fresh one), with `cairn_lag_gauges_age_seconds` 0: stale
    figures that said they were fresh. Now a scrape there refreshes them as one of
    /metrics does (here nothing has scraped /metrics at all)."""
    async with (
        isolated_system(pg_server.url, kafka_server.bootstrap) as system,
        system.client() as c,
    ):
        r = await c.post("/v1/uploads", json={"file_name": "m.bin", "file_size": 5})
        assert r.status_code == 201, r.text
        last = await system.pool.fetchval("SELECT max(position) FROM eventstore.events")
        assert last
        port = free_port()
        server = metrics.serve("127.0.0.1", port)
        try:
            # From another thread, as Prometheus would: the event loop stays free to run
            # the refresh the scrape asks for.
            r = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=10)
        finally:
            await asyncio.to_thread(server.shutdown)
        assert r.status_code == 200
        assert gauge(r.text, "cairn_eventstore_last_position") == last
        assert 0 <= gauge(r.text, "cairn_lag_gauges_age_seconds") < ops.LAG_GAUGES_EVERY
