"""Segmented fetches (CAIRN_FETCH_SEGMENTS) end to end, against origins on loopback: the
byte ranges come in parallel and resume one by one, the file is the body in order, an
origin that ignores Range is one stream, a changed origin starts over, and pause, resume
and retry keep every recorded byte of every segment."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiohttp import web

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.eventstore import PostgresEventStore
from domain.events import RecordedEvent
from tests.api.origins import QUICK_FETCHES, Origin, ended, origin_server, until
from tests.api.routes.test_fetch_origins import serve
from tests.api.routes.test_fetches import content, post
from tests.system import System, isolated_system, wait_until

SEGMENTS = 4
SEGMENT_MIN = 64 * 1024
SIZE = 1_000_000  # four segments of 250,000 bytes


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gsys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        **(QUICK_FETCHES | {"fetch_chunk_bytes": 32 * 1024}),
        fetch_segments=SEGMENTS,
        fetch_segment_min=SEGMENT_MIN,
    ) as s:
        yield s


async def events_of(s: System, fetch_id: str) -> list[RecordedEvent]:
    return await PostgresEventStore(s.pool).read_stream(f"fetch-{fetch_id}")


def ranges(o: Origin, path: str) -> list[tuple[int, int | None]]:
    out = []
    for r in o.requests(path):
        if r["range"] is None:
            continue
        first, _, last = r["range"].removeprefix("bytes=").partition("-")
        out.append((int(first), int(last) if last else None))
    return out


BOUNDS = [(0, 250_000), (250_000, 500_000), (500_000, 750_000), (750_000, 1_000_000)]


async def test_a_range_origin_is_fetched_in_parallel_segments(gsys: System) -> None:
    async with origin_server(os.urandom(SIZE)) as o, gsys.client("g-par") as c:
        f = await post(c, o.url("/range/big.bin"), sha256=o.sha256)
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert done["bytes"] == done["total"] == SIZE and done["sha256"] == o.sha256
        assert [(g["start"], g["end"], g["bytes"]) for g in done["segments"]] == [
            (a, b, b - a) for a, b in BOUNDS
        ]
        assert await content(c, done["file_id"]) == o.data
        # the probe (bytes=0-, read by segment 0 up to its end), then one range per
        # other segment, each with If-Range
        assert sorted(ranges(o, "/range/big.bin")) == [
            (0, None),
            (250_000, 499_999),
            (500_000, 749_999),
            (750_000, 999_999),
        ]
        assert all(r["if_range"] == '"v1"' for r in o.requests("/range/big.bin")[1:])
        events = await events_of(gsys, f["id"])
        split = [e for e in events if e.type == "FetchSegmented"]
        assert len(split) == 1 and [tuple(b) for b in split[0].data["bounds"]] == BOUNDS
        appended = [e for e in events if e.type == "FetchSegmentBytesAppended"]
        per_segment = {i: 0 for i in range(SEGMENTS)}
        for e in appended:
            per_segment[e.data["segment"]] += e.data["size"]
        assert per_segment == {i: 250_000 for i in range(SEGMENTS)}
        assert not [e for e in events if e.type == "FetchBytesAppended"]


async def test_a_small_or_rangeless_origin_is_one_stream(gsys: System) -> None:
    async with origin_server(os.urandom(SIZE), drop_after=300_000) as o, gsys.client("g-one") as c:
        f = await post(c, o.url("/norange"))  # answers 200 to the probe, drops once
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert done["segments"] == [] and await content(c, done["file_id"]) == o.data
        types = {e.type for e in await events_of(gsys, f["id"])}
        assert "FetchSegmented" not in types and "FetchBytesAppended" in types
    async with origin_server(os.urandom(SEGMENT_MIN + 10)) as o, gsys.client("g-small") as c:
        f = await post(c, o.url("/range/small"))  # under two segments' worth
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED" and done["segments"] == [], done
        assert ranges(o, "/range/small") == [(0, None)]  # the probe's answer, read whole
        assert await content(c, done["file_id"]) == o.data


async def test_each_segment_resumes_from_its_own_recorded_byte(gsys: System) -> None:
    # every answer breaks off after 100,000 bytes: each segment needs three requests
    async with origin_server(os.urandom(SIZE), drop_after=100_000) as o, gsys.client("g-cap") as c:
        f = await post(c, o.url("/capped"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert await content(c, done["file_id"]) == o.data
        seen = ranges(o, "/capped")
        for start, end in BOUNDS:
            starts = [a for a, _ in seen if start <= a < end]
            # asked from the segment's start, then each time from where it broke off
            # (every byte that arrived was recorded): never the same byte twice
            assert starts == [start, start + 100_000, start + 200_000], (start, seen)
        assert done["last_error"] and "segment" in done["last_error"]


async def test_an_origin_changing_mid_fetch_starts_over_from_zero(gsys: System) -> None:
    async with origin_server(os.urandom(SIZE), drop_after=100_000) as o, gsys.client("g-chg") as c:
        f = await post(c, o.url("/changing"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert done["etag"] == '"v2"'
        assert await content(c, done["file_id"]) == o.data[::-1]  # only v2's bytes
        events = await events_of(gsys, f["id"])
        kinds = [e.type for e in events]
        first_split = kinds.index("FetchSegmented")
        restarts = [
            i
            for i, e in enumerate(events)
            if e.type == "FetchResponseReceived" and e.data["restart"]
        ]
        assert restarts and restarts[0] > first_split, kinds
        assert kinds.count("FetchSegmented") == 2  # split again, for v2


async def test_segments_of_another_last_modified_start_over(gsys: System) -> None:
    # Last-Modified is the only validator and the origin ignores If-Range: the probe gets
    # version 1, every later request the same range of version 2 (same length). Before,
    # only the ETag and the length were compared, and the file was v1's first segment
    # followed by v2's other three.
    v1, v2 = os.urandom(SIZE), os.urandom(SIZE)
    answered: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        data, modified = (
            (v1, "Mon, 01 Jan 2024 00:00:00 GMT")
            if not answered
            else (v2, "Tue, 02 Jan 2024 00:00:00 GMT")
        )
        answered.append(request.headers.get("Range") or "")
        first, _, last = (request.headers.get("Range") or "bytes=0-")[6:].partition("-")
        start, end = int(first), int(last) if last else SIZE - 1
        return web.Response(
            status=206,
            body=data[start : end + 1],
            headers={
                "Last-Modified": modified,
                "Accept-Ranges": "bytes",
                "Content-Range": f"bytes {start}-{end}/{SIZE}",
            },
        )

    async with serve(handler) as base, gsys.client("g-lastmod") as c:
        f = await post(c, f"{base}/lm.bin")
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert done["last_modified"] == "Tue, 02 Jan 2024 00:00:00 GMT"
        assert await content(c, done["file_id"]) == v2


async def test_pause_and_resume_keep_every_segments_bytes(gsys: System) -> None:
    async with (
        origin_server(os.urandom(SIZE), slow_piece=2048, slow_tick=0.05) as o,
        gsys.client("g-pause") as c,
    ):
        f = await post(c, o.url("/slow"))

        async def every_segment_moving() -> dict[str, Any] | None:
            body = (await c.get(f"/v1/fetches/{f['id']}")).json()
            segs = body["segments"]
            return body if len(segs) == SEGMENTS and all(g["bytes"] > 0 for g in segs) else None

        await wait_until(every_segment_moving, timeout=60)
        r = await c.post(f"/v1/fetches/{f['id']}/pause")
        assert r.status_code == 200 and r.json()["status"] == "PAUSED"
        await asyncio.wait_for(o.disconnected.wait(), 30)
        paused = (await c.get(f"/v1/fetches/{f['id']}")).json()
        held = [g["bytes"] for g in paused["segments"]]
        assert paused["status"] == "PAUSED" and paused["bytes"] == sum(held)
        assert all(0 < h < 250_000 for h in held), held
        before = len(o.requests("/slow"))
        assert before == SEGMENTS
        o.slow_tick = 0.0
        r = await c.post(f"/v1/fetches/{f['id']}/resume")
        assert r.status_code == 200
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert await content(c, done["file_id"]) == o.data
        # after the resume, each segment asked for the rest of its range only
        resumed = ranges(o, "/slow")[before:]
        assert sorted(resumed) == [
            (a + h, b - 1) for (a, b), h in zip(BOUNDS, held, strict=True)
        ], resumed


async def test_retry_of_a_failed_segmented_fetch_keeps_the_finished_segments(
    gsys: System,
) -> None:
    async with origin_server(os.urandom(SIZE), fail_ranges=True) as o, gsys.client("g-re") as c:
        f = await post(c, o.url("/range/flaky"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED", failed
        # segment 0 came whole with the probe's answer; the others never got a byte
        assert [g["bytes"] for g in failed["segments"]] == [250_000, 0, 0, 0]
        assert failed["bytes"] == 250_000 and "500" in failed["last_error"]
        o.fail_ranges = False
        asked = len(o.requests("/range/flaky"))
        r = await c.post(f"/v1/fetches/{f['id']}/retry")
        assert r.status_code == 200 and r.json()["status"] == "PENDING"
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert await content(c, done["file_id"]) == o.data
        assert sorted(ranges(o, "/range/flaky")[asked:]) == [
            (250_000, 499_999),
            (500_000, 749_999),
            (750_000, 999_999),
        ]


async def test_an_empty_resource_answers_the_probe_with_416_and_is_an_empty_file(
    gsys: System,
) -> None:
    async with origin_server(b"") as o, gsys.client("g-empty") as c:
        f = await post(c, o.url("/range/empty.txt"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert done["bytes"] == done["total"] == 0 and done["file_name"] == "empty.txt"
        assert ranges(o, "/range/empty.txt") == [(0, None)]  # one request: the probe

        async def served() -> int | None:  # (an empty body is falsy: wait on the status)
            r = await c.get(f"/v1/files/{done['file_id']}/content")
            return len(r.content) + 1 if r.status_code == 200 else None

        assert await wait_until(served) == 1  # 200 with an empty body


async def test_segments_whose_every_connection_breaks_after_a_few_bytes_give_up(
    gsys: System,
) -> None:
    # Each segment's every answer brings 10 bytes, then breaks. Each try gained a byte, so
    # each started the segment's count of retries again: 25,000 tries a segment. Now only
    # the low-speed limit's rate since the segment last gained bytes is progress.
    async with origin_server(os.urandom(SIZE), drop_after=10) as o, gsys.client("g-drip") as c:
        f = await post(c, o.url("/capped"))
        done = await ended(c, f["id"], timeout=60)
        assert done["status"] == "FAILED", done
        assert done["last_error"].startswith("gave up after 4 attempts: "), done
        assert len(done["segments"]) == SEGMENTS and 0 < done["bytes"] < 10_000, done
