"""URL fetches end to end: API -> actors -> fetch worker -> blob store -> file, against real
origin servers on loopback (tests/api/origins.py) and the real Postgres and broker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest_asyncio

from bus.actors.commandbus import CommandBus
from bus.blobs.factory import open_blob_store
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.eventstore import PostgresEventStore
from domain.commands import AppendFetchBytes, RecordFetchResponse, StartFetch
from tests.api.documented import assert_documented
from tests.api.origins import QUICK_FETCHES, origin_server, until
from tests.system import System, isolated_system, wait_until

MAX_BYTES = 2_000_000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fsys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        **QUICK_FETCHES,
        fetch_max_bytes=MAX_BYTES,
    ) as s:
        yield s


async def post(c: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    r = await c.post("/v1/fetches", json={"url": url, **extra})
    assert r.status_code == 202, r.text
    return r.json()


async def listed_completed(c: httpx.AsyncClient, fetch_id: str) -> None:
    """Until the fetches read model lists the fetch as COMPLETED (the API's answer comes from
    the event store, ahead of it)."""

    async def listed() -> bool:
        items = (await c.get("/v1/fetches", params={"status": "COMPLETED"})).json()["items"]
        return any(i["id"] == fetch_id for i in items)

    await wait_until(listed, timeout=30)


async def content(c: httpx.AsyncClient, file_id: str) -> bytes:
    async def ready() -> bytes | None:
        r = await c.get(f"/v1/files/{file_id}/content")
        return r.content if r.status_code == 200 else None

    return await wait_until(ready)  # type: ignore[no-any-return]


async def test_range_capable_origin_becomes_a_file(fsys: System) -> None:
    async with origin_server() as o, fsys.client("f-range") as c:
        sha = o.sha256
        f = await post(c, o.url("/range/model.bin"), sha256=sha)
        assert f["status"] == "PENDING"
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert done["bytes"] == done["total"] == len(o.data) and done["progress"] == 100.0
        assert done["sha256"] == sha and done["file_name"] == "model.bin"
        assert done["etag"] == '"v1"'
        assert await content(c, done["file_id"]) == o.data
        meta = (await c.get(f"/v1/files/{done['file_id']}")).json()
        assert meta["sha256"] == sha and meta["size"] == len(o.data)
        assert meta["name"] == "model.bin"
        # The same URL again is the same fetch (within the TTL), not a second download.
        again = await post(c, o.url("/range/model.bin"))
        assert again["id"] == f["id"] and again["file_id"] == done["file_id"]
        assert again["reused"] is True
        assert o.counts["/range/model.bin"] == 1
        # refresh: a new generation, fetched again
        fresh = await post(c, o.url("/range/model.bin"), refresh=True)
        assert fresh["id"] != f["id"]
        assert (await until(c, fresh["id"], "COMPLETED", "FAILED"))["status"] == "COMPLETED"
        assert o.counts["/range/model.bin"] == 2


async def test_dropped_connection_resumes_with_range_and_if_range(fsys: System) -> None:
    async with origin_server(drop_after=150_000) as o, fsys.client("f-drop") as c:
        f = await post(c, o.url("/drop"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert await content(c, done["file_id"]) == o.data
        first, second = o.requests("/drop")[:2]
        assert first["range"] == "bytes=0-"  # the probe for segments (too small to split)
        # resumed from a recorded byte > 0, validated by the ETag
        assert second["range"] is not None and second["if_range"] == '"v1"'
        offset = int(second["range"].removeprefix("bytes=").removesuffix("-"))
        assert 0 < offset <= 150_000
        assert done["attempts"] == 1 and done["last_error"]


async def test_origin_ignoring_range_starts_over_never_appends(fsys: System) -> None:
    async with origin_server(drop_after=150_000) as o, fsys.client("f-norange") as c:
        f = await post(c, o.url("/norange"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert done["bytes"] == len(o.data)
        data = await content(c, done["file_id"])
        assert hashlib.sha256(data).hexdigest() == o.sha256


async def test_changed_content_starts_over_with_the_new_version(fsys: System) -> None:
    async with origin_server(drop_after=150_000) as o, fsys.client("f-change") as c:
        f = await post(c, o.url("/changing"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        # If-Range carried the old ETag; the origin answered 200 with v2: only v2's bytes
        assert o.requests("/changing")[1]["if_range"] == '"v1"'
        assert done["etag"] == '"v2"'
        assert await content(c, done["file_id"]) == o.data[::-1]


async def test_no_length_and_lying_lengths(fsys: System) -> None:
    async with origin_server() as o, fsys.client("f-len") as c:
        f = await post(c, o.url("/nolength"))

        async def unknown_total() -> dict[str, Any] | None:
            body = (await c.get(f"/v1/fetches/{f['id']}")).json()
            return body if body["bytes"] > 0 or body["status"] == "COMPLETED" else None

        during = await wait_until(unknown_total, timeout=60)
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        if during["status"] != "COMPLETED":
            assert during["total"] is None and during["progress"] is None, during
        # Complete, its length is known: total and progress end at what was fetched (they
        # were null to the end before), in the read model's list as in the fetch.
        assert done["total"] == done["bytes"] == len(o.data) and done["progress"] == 100.0
        await listed_completed(c, f["id"])
        [row] = [
            i
            for i in (await c.get("/v1/fetches", params={"status": "COMPLETED"})).json()["items"]
            if i["id"] == f["id"]
        ]
        assert row["total"] == len(o.data), row
        assert await content(c, done["file_id"]) == o.data
        # announces more than it sends: every attempt ends short, the fetch fails, nothing
        # short is passed off as the file
        f = await post(c, o.url("/lie-more"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and failed["file_id"] is None, failed
        # announces fewer: the body ends at the announced length (HTTP framing)
        f = await post(c, o.url("/lie-less"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED"
        assert await content(c, done["file_id"]) == o.data[: len(o.data) // 2]


async def test_max_bytes_aborts_even_without_a_length(fsys: System) -> None:
    async with origin_server(os.urandom(MAX_BYTES + 100_000)) as o, fsys.client("f-max") as c:
        f = await post(c, o.url("/nolength"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and "over" in failed["last_error"], failed
        f = await post(c, o.url("/range"))  # announced too large: refused before the body
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and str(len(o.data)) in failed["last_error"]


async def test_redirects_followed_up_to_five(fsys: System) -> None:
    async with origin_server() as o, fsys.client("f-redir") as c:
        f = await post(c, o.url("/redirect/5"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert await content(c, done["file_id"]) == o.data
        f = await post(c, o.url("/redirect/6"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and "redirects" in failed["last_error"]
        f = await post(c, o.url("/redirect-to?to=ftp://example.com/x"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and "http" in failed["last_error"]


async def test_error_statuses(fsys: System) -> None:
    async with origin_server() as o, fsys.client("f-status") as c:
        f = await post(c, o.url("/status/404"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and "404" in failed["last_error"]
        assert o.counts["/status/404"] == 1  # a 4xx is not retried
        f = await post(c, o.url("/status/500"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and o.counts["/status/500"] == 4  # 1 + 3 retries
        # 429 with Retry-After: waited out, then served
        f = await post(c, o.url("/status/429"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED" and "429" in (done["last_error"] or "")
        # retry restarts a failed fetch; retry of a completed one is 409
        r = await c.post(f"/v1/fetches/{failed['id']}/retry")
        assert r.status_code == 200 and r.json()["status"] == "PENDING"
        r = await c.post(f"/v1/fetches/{done['id']}/retry")
        assert r.status_code == 409 and r.json()["error"]["code"] == "fetch_state_conflict"
        r = await c.post(f"/v1/fetches/{done['id']}/pause")
        assert r.status_code == 409


async def test_a_host_that_does_not_exist_fails_at_once(fsys: System) -> None:
    """`.invalid` never resolves (RFC 6761): the resolver's NXDOMAIN is final, so the fetch
    fails on its first attempt, as curl and wget do, instead of after every retry."""
    async with fsys.client("f-nxdomain") as c:
        f = await post(c, "http://no-such-host.invalid/file.bin")
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and failed["file_id"] is None, failed
        assert failed["last_error"].startswith("the origin's host does not exist"), failed
        assert "gave up" not in failed["last_error"]  # not retried
    events = await fsys.pool.fetch(
        "SELECT event_type, data FROM eventstore.events WHERE stream_id = $1 ORDER BY version",
        f"fetch-{f['id']}",
    )
    types = [e["event_type"] for e in events]
    assert "FetchAttemptFailed" not in types and types[-1] == "FetchFailed", types
    data = events[-1]["data"]
    data = json.loads(data) if isinstance(data, str) else data
    assert data["details"]["code"] == "host_not_found", data


async def test_twenty_identical_requests_make_one_writer(fsys: System) -> None:
    async with origin_server() as o, fsys.client("f-twenty") as c:
        answers = await asyncio.gather(*(post(c, o.url("/range/x")) for _ in range(20)))
        assert len({a["id"] for a in answers}) == 1
        done = await until(c, answers[0]["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED"
        assert o.counts["/range/x"] == 1
        listed = (await c.get("/v1/fetches", params={"url": o.url("/range/x")})).json()
        assert listed["total"] == 1


async def test_pause_stops_the_transfer_and_resume_continues(fsys: System) -> None:
    # 1.2 MB at about 200 KB/s: the transfer lasts seconds, so that the pause comes while
    # the origin is still sending even on a loaded machine (had it sent everything into
    # the socket buffers, there would be no hang-up to see).
    async with (
        origin_server(os.urandom(1_200_000), slow_piece=2048, slow_tick=0.01) as o,
        fsys.client("f-pause") as c,
    ):
        f = await post(c, o.url("/slow"))

        async def some_bytes() -> bool:
            return bool((await c.get(f"/v1/fetches/{f['id']}")).json()["bytes"] > 0)

        await wait_until(some_bytes, timeout=60)
        r = await c.post(f"/v1/fetches/{f['id']}/pause")
        assert r.status_code == 200 and r.json()["status"] == "PAUSED"
        await asyncio.wait_for(o.disconnected.wait(), 30)  # the worker hung up
        paused = (await c.get(f"/v1/fetches/{f['id']}")).json()
        requests_while_paused = o.counts["/slow"]
        assert paused["status"] == "PAUSED" and 0 < paused["bytes"] < len(o.data)
        r = await c.post(f"/v1/fetches/{f['id']}/pause")  # again: same answer
        assert r.status_code == 200
        again = (await c.get(f"/v1/fetches/{f['id']}")).json()
        assert again["bytes"] == paused["bytes"]  # nothing recorded while paused
        assert o.counts["/slow"] == requests_while_paused == 1
        o.slow_tick = 0.0
        r = await c.post(f"/v1/fetches/{f['id']}/resume")
        assert r.status_code == 200
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert o.requests("/slow")[1]["range"] == f"bytes={paused['bytes']}-"
        assert await content(c, done["file_id"]) == o.data


async def test_every_answer_is_the_documented_shape(fsys: System) -> None:
    """Create, read while it runs, pause, resume, read once done, list, a refused command:
    each answer fits the OpenAPI document's schema for its route and status."""
    async with (
        origin_server(os.urandom(400_000), slow_piece=4096, slow_tick=0.01) as o,
        fsys.client("f-documented") as c,
    ):
        r = await c.post("/v1/fetches", json={"url": o.url("/slow")})
        await assert_documented(c, "post", "/v1/fetches", r)
        fid = r.json()["id"]
        one = f"/v1/fetches/{fid}"

        async def running() -> httpx.Response | None:
            r = await c.get(one)
            return r if r.json()["bytes"] > 0 else None

        await assert_documented(c, "get", "/v1/fetches/{fetch_id}", await wait_until(running))
        r = await c.post(f"{one}/pause")
        await assert_documented(c, "post", "/v1/fetches/{fetch_id}/pause", r)
        o.slow_tick = 0.0
        r = await c.post(f"{one}/resume")
        await assert_documented(c, "post", "/v1/fetches/{fetch_id}/resume", r)
        done = await until(c, fid, "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED" and done["file_id"], done
        await assert_documented(c, "get", "/v1/fetches/{fetch_id}", await c.get(one))
        await listed_completed(c, fid)
        await assert_documented(c, "get", "/v1/fetches", await c.get("/v1/fetches"))
        r = await c.post(f"{one}/retry")  # completed: nothing to retry
        assert r.status_code == 409
        await assert_documented(c, "post", "/v1/fetches/{fetch_id}/retry", r)


async def test_cancel_and_state_conflicts(fsys: System) -> None:
    async with origin_server(slow_tick=0.05) as o, fsys.client("f-cancel") as c:
        f = await post(c, o.url("/slow"))
        r = await c.post(f"/v1/fetches/{f['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
        r = await c.post(f"/v1/fetches/{f['id']}/resume")
        assert r.status_code == 409
        r = await c.post(f"/v1/fetches/{f['id']}/retry")
        assert r.status_code == 409
        # a new request for the URL starts a new generation
        g = await post(c, o.url("/slow"))
        assert g["id"] != f["id"]
        r = await c.post(f"/v1/fetches/{g['id']}/retry")  # pending / in progress: 409
        assert r.status_code == 409
        await c.post(f"/v1/fetches/{g['id']}/cancel")


async def test_bad_input_and_other_users(fsys: System) -> None:
    async with fsys.client("f-bad") as c, fsys.client("f-other") as other:
        for url, code in [
            ("ftp://example.com/x", "unsupported_scheme"),
            ("http:///nohost", "invalid_url"),
            ("http://user:secret@example.com/x", "url_has_credentials"),
            ("http://example.com/" + "a" * 8200, "invalid_url"),
        ]:
            r = await c.post("/v1/fetches", json={"url": url})
            assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
            assert "secret" not in r.text
        r = await c.post("/v1/fetches", json={"url": "http://example.com/", "key": "x"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "key_needs_bucket"
        for key in ("", "a\u0000b", "k" * 1025):
            r = await c.post(
                "/v1/fetches", json={"url": "http://example.com/", "bucket": "b", "key": key}
            )
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_key", r.text
        for bucket in ("no-such-bucket", "mine-not-yours"):
            r = await c.post("/v1/fetches", json={"url": "http://example.com/", "bucket": bucket})
            assert r.status_code == 404 and r.json()["error"]["code"] == "bucket_not_found"
        r = await other.post("/v1/buckets", json={"name": "mine-not-yours"})
        assert r.status_code in (200, 201), r.text
        r = await c.post(
            "/v1/fetches", json={"url": "http://example.com/", "bucket": "mine-not-yours"}
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "bucket_not_found"
        r = await c.post("/v1/fetches", json={"url": "http://example.com/", "nope": 1})
        assert r.status_code == 400
        r = await c.get("/v1/fetches", params={"bogus": "1"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_query_parameter"
        r = await c.get("/v1/fetches", params={"status": "nope"})
        assert r.status_code == 400
        async with origin_server(slow_tick=0.05) as o:
            f = await post(c, o.url("/slow"))
            for path in ("", "/pause", "/events"):
                method = other.post if path == "/pause" else other.get
                r = await method(f"/v1/fetches/{f['id']}{path}")
                assert r.status_code == 404, (path, r.text)
                assert r.json()["error"]["code"] == "fetch_not_found"
            await c.post(f"/v1/fetches/{f['id']}/cancel")


async def test_declared_sha256_mismatch_fails_with_both_digests(fsys: System) -> None:
    async with origin_server() as o, fsys.client("f-sha") as c:
        wrong = "0" * 64
        f = await post(c, o.url("/range/a.bin"), sha256=wrong)
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and failed["file_id"] is None, failed
        assert wrong in failed["last_error"] and o.sha256 in failed["last_error"]


async def test_a_take_over_holding_every_byte_completes_without_asking_again(
    fsys: System,
) -> None:
    """A run that recorded the last byte and died before completing: the next run
    completes with what is held. It does not ask for `bytes=N-` (unsatisfiable; an origin
    may answer it with the whole body, which would be recorded a second time)."""
    await fsys.stop("fetcher")
    try:
        async with origin_server() as o, fsys.client("f-held") as c:
            f = await post(c, o.url("/range/held.bin"))

            async def body() -> AsyncIterator[bytes]:
                yield o.data

            blobs = open_blob_store(fsys.settings.blobs_url, fsys.settings)
            sha, size = await blobs.put_stream(body())
            bus = CommandBus(fsys.settings)
            await bus.start()
            try:
                dead = {"aggregate_id": f["id"], "caller": "f-held", "runner": "dead-run"}
                at = datetime.now(UTC)
                await bus.send(StartFetch(**dead, at=at))
                await bus.send(
                    RecordFetchResponse(
                        **dead, at=at, restart=False, etag='"v1"', total=size, accept_ranges=True
                    )
                )
                await bus.send(
                    AppendFetchBytes(
                        **dead, at=at, offset=0, pieces=[{"sha256": sha, "size": size}]
                    )
                )
            finally:
                await bus.stop()
            fsys.start("fetcher")
            done = await until(c, f["id"], "COMPLETED", "FAILED")
            assert done["status"] == "COMPLETED", done
            assert done["sha256"] == o.sha256 and done["attempts"] == 2
            assert await content(c, done["file_id"]) == o.data
            assert o.requests("/range/held.bin") == []
            events = await PostgresEventStore(fsys.pool).read_stream(f"fetch-{f['id']}")
            appended = [e for e in events if e.type == "FetchBytesAppended"]
            assert len(appended) == 1
    finally:
        if "fetcher" not in fsys.tasks:
            fsys.start("fetcher")
