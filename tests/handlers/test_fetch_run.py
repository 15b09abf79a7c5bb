"""A fetch run's low-speed limit (CAIRN_FETCH_LOW_SPEED_BYTES over CAIRN_FETCH_LOW_SPEED_TIME,
bus/fetch/lowspeed.py) against loopback origins that trickle: an origin below the limit
ends each attempt as too_slow and, its retries spent, fails the fetch with that reason,
instead of holding a fetch slot for ever; one just above it completes, and with the limit
off a trickle completes too. A window of 1 s keeps each test to seconds. Real Postgres,
broker and fetch worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from bus.blobs.errors import BlobStoreFull
from bus.blobs.inline import InlineBlobStore
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.eventstore import PostgresEventStore
from tests.api.origins import ended
from tests.api.routes.test_fetch_origins import serve
from tests.api.routes.test_fetches import content, post
from tests.ports import free_port
from tests.system import System, isolated_system

LIMIT = 2048  # bytes per second, over 1 s
TRICKLE = 1000  # bytes per second: below it
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What both systems share: retries spent fast (1 retry, 50 ms backoff), a read timeout far
# above the trickle's gaps (so only the low-speed limit can end an attempt) and short
# enough that an answer's head gets 3 s (the read timeout and one window), and segments
# of 64 KiB so that a 200 KB resource splits in two.
COMMON: dict[str, Any] = {
    "fetch_allow_private": True,
    "fetch_backoff": 0.05,
    "fetch_retries": 1,
    "fetch_timeout": 2.0,
    "fetch_segments": 2,
    "fetch_segment_min": 64 * 1024,
    "fetch_low_speed_time": 1.0,
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, fetch_low_speed_bytes=LIMIT, **COMMON
    ) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def unlimited(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, fetch_low_speed_bytes=0, **COMMON
    ) as s:
        yield s


async def _paced(resp: web.StreamResponse, body: bytes, rate: float, piece: int) -> None:
    """`body` at `rate` bytes per second in pieces of `piece` bytes, each sent at its time
    on the loop's clock (a late wake-up is caught up, not added to every later piece)."""
    loop = asyncio.get_running_loop()
    begun = loop.time()
    for n, at in enumerate(range(0, len(body), piece)):
        delay = begun + n * piece / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await resp.write(body[at : at + piece])


def origin(
    data: bytes, rate_from: Callable[[int], float | None], seen: list[str | None], piece: int
) -> Handler:
    """Serves `data` with ranges and an ETag; the body from byte `start` goes at
    `rate_from(start)` bytes per second (None: at once). Records each request's Range."""

    async def handler(request: web.Request) -> web.StreamResponse:
        rng = request.headers.get("Range")
        seen.append(rng)
        first, _, last = rng.removeprefix("bytes=").partition("-") if rng else ("0", "", "")
        start, end = int(first), int(last) if last else len(data) - 1
        resp = web.StreamResponse(status=206 if rng else 200)
        resp.headers["ETag"] = '"v1"'
        resp.headers["Accept-Ranges"] = "bytes"
        if rng:
            resp.headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        resp.content_length = end + 1 - start
        await resp.prepare(request)
        body = data[start : end + 1]
        rate = rate_from(start)
        # The worker hangs up on a trickle: the write that finds it gone ends the answer.
        with contextlib.suppress(ConnectionError):
            if rate is None:
                await resp.write(body)
            else:
                await _paced(resp, body, rate, piece)
            await resp.write_eof()
        return resp

    return handler


@asynccontextmanager
async def trickling(
    data: bytes, rate_from: Callable[[int], float | None], piece: int = 100
) -> AsyncIterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []
    async with serve(origin(data, rate_from, seen, piece)) as base:
        yield f"{base}/file.bin", seen


async def finished(c: httpx.AsyncClient, fid: str) -> dict[str, Any]:
    """The fetch once it completed or failed; 30 s at most (a trickle retried for ever,
    the bug this guards against, would never get there)."""
    return await ended(c, fid, timeout=30)


async def test_a_trickle_fails_too_slow_once_its_retries_are_spent(limited: System) -> None:
    data = bytes(range(256)) * 200  # 51 KB, under two segments: one stream
    async with trickling(data, lambda _start: TRICKLE) as (url, seen), limited.client("s1") as c:
        f = await post(c, url)
        done = await finished(c, f["id"])
    assert done["status"] == "FAILED", done
    assert done["last_error"].startswith("gave up after 2 attempts: too_slow: "), done
    assert f"below the low-speed limit of {LIMIT} B/s" in done["last_error"]
    assert done["file_id"] is None
    events = await PostgresEventStore(limited.pool).read_stream(f"fetch-{f['id']}")
    [attempt] = [e for e in events if e.type == "FetchAttemptFailed"]
    assert attempt.data["error"].startswith("too_slow: "), attempt.data
    assert events[-1].type == "FetchFailed"
    assert events[-1].data["details"] == {
        "code": "retries_exhausted",
        "attempts": 2,
        "reason": "too_slow",
    }
    # What came before the trip was kept: the retry resumed after it, and holds it still.
    assert seen[0] == "bytes=0-" and len(seen) == 2, seen
    resumed_at = int(str(seen[1]).removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at < done["bytes"] < len(data), (seen, done)


async def test_a_trickling_segment_fails_too_slow_and_the_fetch_with_it(
    limited: System,
) -> None:
    # 200 KB in two segments: the first comes at once, the second trickles. The trickling
    # segment is retried on its own, and gains a few bytes each time: that is not the
    # progress that would retry it (and the run) for ever.
    data = bytes(range(256)) * 800
    half = len(data) // 2

    def rate(start: int) -> float | None:
        return None if start == 0 else TRICKLE

    async with trickling(data, rate) as (url, seen), limited.client("s2") as c:
        f = await post(c, url)
        done = await finished(c, f["id"])
    assert done["status"] == "FAILED", done
    assert done["last_error"].startswith("gave up after 2 attempts: too_slow: "), done
    first, second = done["segments"]
    assert first == {"start": 0, "end": half, "bytes": half}, done  # kept, complete
    assert 0 < second["bytes"] < half, done  # the trickle's bytes, kept for a /retry
    events = await PostgresEventStore(limited.pool).read_stream(f"fetch-{f['id']}")
    tries = [e.data["error"] for e in events if e.type == "FetchAttemptFailed"]
    # The segment's own retries name it; the attempt it ended says why it ended.
    assert tries[0].startswith("segment 1: too_slow: "), tries
    assert all(t.removeprefix("segment 1: ").startswith("too_slow: ") for t in tries), tries
    assert events[-1].data["details"]["reason"] == "too_slow"
    # Only the second segment was asked for again, each time from the bytes it held.
    starts = [int(str(r).removeprefix("bytes=").split("-")[0]) for r in seen[1:]]
    assert starts == sorted(starts) and starts[0] == half, seen
    assert all(str(r).endswith(f"-{len(data) - 1}") for r in seen[1:]), seen


async def test_a_head_that_trickles_in_fails_too_slow(limited: System) -> None:
    # A byte of header every 0.1 s: never silent for the read timeout, never done.
    answered: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered.append(1)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nX-Trickle: ")
            for _ in range(300):
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.1)  # the trickle's pace, not a wait for anything
        except ConnectionError:
            pass  # the worker hung up
        finally:
            writer.close()

    port = free_port("127.0.0.1")
    server = await asyncio.start_server(answer, "127.0.0.1", port)
    try:
        async with limited.client("s5") as c:
            f = await post(c, f"http://127.0.0.1:{port}/head.bin")
            done = await finished(c, f["id"])
    finally:
        server.close()
    assert done["status"] == "FAILED", done
    assert done["last_error"] == (
        "gave up after 2 attempts: too_slow: no complete answer head in 3 s"
    ), done
    assert len(answered) == 2


async def test_an_origin_just_above_the_limit_completes(limited: System) -> None:
    data = bytes(range(256)) * 36  # 9 KB at 1.5 times the limit: about 3 s, 3 windows
    began = time.monotonic()
    async with (
        trickling(data, lambda _start: LIMIT * 1.5, piece=256) as (url, _),
        limited.client("s3") as c,
    ):
        f = await post(c, url)
        done = await finished(c, f["id"])
        assert done["status"] == "COMPLETED", done
        assert await content(c, done["file_id"]) == data
    assert time.monotonic() - began > 2.0  # the limit was checked over whole windows
    events = await PostgresEventStore(limited.pool).read_stream(f"fetch-{f['id']}")
    assert [e for e in events if e.type == "FetchAttemptFailed"] == []


async def test_with_the_limit_off_a_trickle_completes(unlimited: System) -> None:
    data = bytes(range(250)) * 10  # 2.5 KB at the trickle's rate: 2.5 s, over 2 windows
    async with trickling(data, lambda _start: TRICKLE) as (url, _), unlimited.client("s4") as c:
        f = await post(c, url)
        done = await finished(c, f["id"])
        assert done["status"] == "COMPLETED", done
        assert await content(c, done["file_id"]) == data
    events = await PostgresEventStore(unlimited.pool).read_stream(f"fetch-{f['id']}")
    assert [e for e in events if e.type == "FetchAttemptFailed"] == []


async def test_a_blob_store_full_for_a_moment_is_retried_not_a_crash(
    unlimited: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk (or S3 down) under the worker's put is the store's passing state: the
    # attempt fails and the next one, after the backoff, brings the file in. It was a
    # crash of the run, three of which fail the fetch as worker_failed.
    put_stream = InlineBlobStore.put_stream
    refused: list[int] = []

    async def full_once(self: InlineBlobStore, chunks: Any, **kw: Any) -> tuple[str, int]:
        if not refused:
            refused.append(1)
            raise BlobStoreFull("the blob store's disk is full", retry_after=0)
        return await put_stream(self, chunks, **kw)

    monkeypatch.setattr(InlineBlobStore, "put_stream", full_once)
    data = bytes(range(256)) * 40
    async with trickling(data, lambda _start: None) as (url, _seen):
        async with unlimited.client("s-full") as c:
            f = await post(c, url)
            done = await finished(c, f["id"])
            assert done["status"] == "COMPLETED", done
            assert await content(c, done["file_id"]) == data
    assert refused == [1]
    events = await PostgresEventStore(unlimited.pool).read_stream(f"fetch-{f['id']}")
    [attempt] = [e for e in events if e.type == "FetchAttemptFailed"]
    assert attempt.data["error"].startswith("blob store unavailable: "), attempt.data
