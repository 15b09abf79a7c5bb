"""SSRF end to end: the address rule on, one loopback address (127.0.0.2) allowed as the
"public" origin, the rest of loopback refused. A public first hop that redirects to a
private address in any spelling fails the fetch with a clear error, and the private target
never sees a request (so no byte of it can be stored)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.eventstore import PostgresEventStore
from domain.events import RecordedEvent
from tests.api.origins import origin_server, until
from tests.api.routes.test_fetches import post
from tests.system import System, isolated_system

PUBLIC = "127.0.0.2"  # allowed by CAIRN_FETCH_ALLOW_NETWORKS in this module's system


async def events_of(s: System, fetch_id: str) -> list[RecordedEvent]:
    return await PostgresEventStore(s.pool).read_stream(f"fetch-{fetch_id}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ssys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        fetch_allow_private=False,
        fetch_allow_networks=(ipaddress.ip_network(f"{PUBLIC}/32"),),
        fetch_lease=3.0,
        fetch_backoff=0.05,
        fetch_retries=1,
        fetch_per_owner=50,
        fetch_concurrency=50,
    ) as s:
        yield s


async def test_the_allowed_origin_is_fetched(ssys: System) -> None:
    async with origin_server(host=PUBLIC) as o, ssys.client("s-ok") as c:
        f = await post(c, o.url("/range/ok.bin"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED" and done["sha256"] == o.sha256, done


async def test_redirects_to_private_addresses_are_refused_before_any_byte(ssys: System) -> None:
    async with (
        origin_server(host=PUBLIC) as public,
        origin_server() as private,  # 127.0.0.1: loopback, not allowed
        ssys.client("s-redir") as c,
    ):
        p = private.port
        targets = [
            f"http://127.0.0.1:{p}/range",
            f"http://localhost:{p}/range",  # a name: refused when resolved, at connect time
            f"http://[::ffff:127.0.0.1]:{p}/range",  # IPv4-mapped IPv6
            f"http://[::ffff:7f00:1]:{p}/range",  # the same, in hex
            f"http://2130706433:{p}/range",  # decimal
            f"http://0177.0.0.1:{p}/range",  # octal
            f"http://0x7f.1:{p}/range",  # hex, short form
            f"http://127.1:{p}/range",  # short form
            "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
            f"http://10.0.0.1:{p}/",  # private
        ]
        for target in targets:
            f = await post(c, public.url(f"/redirect-to?to={target}"))
            failed = await until(c, f["id"], "COMPLETED", "FAILED")
            assert failed["status"] == "FAILED", (target, failed)
            assert failed["bytes"] == 0 and failed["file_id"] is None, (target, failed)
            error = failed["last_error"]
            assert error.startswith("refused: ") and "address" in error, (target, error)
            types = {e.type for e in await events_of(ssys, f["id"])}
            assert not types & {"FetchBytesAppended", "FetchSegmentBytesAppended"}, types
            assert not types & {"FetchResponseReceived"}, types  # no answer was taken
        assert private.counts == {}, private.counts  # not one request reached it
        assert public.counts["/redirect-to"] == len(targets)


async def test_redirects_to_other_schemes_and_credentials_are_refused(ssys: System) -> None:
    async with origin_server(host=PUBLIC) as o, ssys.client("s-scheme") as c:
        for target, code in [
            ("file:///etc/passwd", "unsupported_scheme"),
            ("gopher://example.com/", "unsupported_scheme"),
            (f"http://user:hunter2@{PUBLIC}:{o.port}/range", "url_has_credentials"),
        ]:
            f = await post(c, o.url(f"/redirect-to?to={target}"))
            failed = await until(c, f["id"], "COMPLETED", "FAILED")
            assert failed["status"] == "FAILED" and failed["bytes"] == 0, failed
            fail = [e for e in await events_of(ssys, f["id"]) if e.type == "FetchFailed"]
            assert fail[-1].data["details"]["code"] == code, (target, fail[-1].data)
            assert "hunter2" not in failed["last_error"]
        assert o.counts.get("/range") is None  # the credentialled hop was never requested


async def test_private_urls_are_refused_by_the_api_in_every_spelling(ssys: System) -> None:
    async with ssys.client("s-api") as c:
        for url in [
            "http://127.0.0.1/",
            "http://localhost/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f000001/",
            "http://[fe80::1]/",
            "http://169.254.169.254/",
            "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
        ]:
            r = await c.post("/v1/fetches", json={"url": url})
            assert r.status_code == 400, (url, r.text)
            assert r.json()["error"]["code"] == "forbidden_address", (url, r.text)
        for url, code in [
            ("ftp://example.com/x", "unsupported_scheme"),
            ("http://user:hunter2@example.com/x", "url_has_credentials"),
            ("http://a..com/", "invalid_url"),  # was a 500: the resolver's IDNA error
            ("http://xn--zz/", "invalid_url"),  # was accepted, and crashed the worker
        ]:
            r = await c.post("/v1/fetches", json={"url": url})
            assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
            assert "hunter2" not in r.text


async def test_error_names_the_hop(ssys: System) -> None:
    async with origin_server(host=PUBLIC) as o, ssys.client("s-hop") as c:
        f = await post(c, o.url("/redirect-to?to=http://127.0.0.1:9/x"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["last_error"] == "refused: loopback address 127.0.0.1"
        fail = [e for e in await events_of(ssys, f["id"]) if e.type == "FetchFailed"]
        assert fail[-1].data["details"] == {"code": "forbidden_address", "hop": 1}
