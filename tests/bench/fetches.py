"""fetch.url_cache: Cairn fetching a URL into its store vs `curl -o` and `aria2c -x4` of the
very same URL, in the same run; the second request of the same URL (the cache hit); and the
same URL into a new bucket key, which takes the finished fetch's bytes (vs curl's download).

The origin is the bench's nginx: `/data/NAME` serves byte ranges (Cairn splits the fetch
into CAIRN_FETCH_SEGMENTS parallel ranges, like aria2c -x4) and `/whole/NAME` the same
bytes with ranges off (`max_ranges 0`: Cairn fetches one stream, like curl). Every client
writes to disk: Cairn into its blob store, curl and aria2c into a file in the work dir.

Every run gives the file new bytes first (Cairn's store is content-addressed: bytes it
holds already would not be written again) and asks Cairn with `refresh: true`, so each
run is a real download; the single-stream fetch gets new bytes again for the same
reason. Cairn's time is from the POST to the fetch reading COMPLETED (polled every 20 ms).
The warm-up checks the sha256 of what every client got against the source (Cairn checks
the declared `sha256` itself). The cache hit is a POST of the same URL again without
`refresh`: it answers with the finished fetch and its `file_id`, nothing downloaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.bench.baselines import curl_download
from tests.bench.core import GiB, Result, Row, Scenario, human_bytes, mb_per_s
from tests.bench.runner import Bench, add_cpu, cpu_note

TIMEOUT = 900.0
POLL = 0.02
CURL = "curl -o (1 connection)"
ARIA = "aria2c -x4 -s4"
HITS = 5  # cache-hit requests per run


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return h.hexdigest()


async def _cairn_fetch(
    c: httpx.AsyncClient, url: str, sha256: str | None, **into: Any
) -> dict[str, Any]:
    """POST to COMPLETED: with `refresh` (a real download) unless `into` names a bucket and
    a key (a first fetch into a new key, which reuses the bytes of the finished fetch)."""
    body: dict[str, Any] = {"url": url, **(into or {"refresh": True})}
    if sha256:
        body["sha256"] = sha256
    r = await c.post("/v1/fetches", json=body)
    r.raise_for_status()
    fid = r.json()["id"]
    async with asyncio.timeout(TIMEOUT):
        while True:
            state: dict[str, Any] = (await c.get(f"/v1/fetches/{fid}")).json()
            if state["status"] == "COMPLETED":
                return state
            if state["status"] in ("FAILED", "CANCELLED"):
                raise RuntimeError(f"fetch of {url} {state['status']}: {state['last_error']}")
            await asyncio.sleep(POLL)


async def _reused(bench: Bench, fetch_id: str) -> bool:
    """Whether the fetch took another fetch's bytes (its response record says so)."""
    assert bench.cairn is not None
    conn = await asyncpg.connect(bench.cairn.database_url)
    try:
        reason = await conn.fetchval(
            "SELECT data->>'reason' FROM eventstore.events WHERE stream_id = $1"
            " AND event_type = 'FetchResponseReceived' ORDER BY version LIMIT 1",
            f"fetch-{fetch_id}",
        )
    finally:
        await conn.close()
    return str(reason or "").startswith("reused the bytes of fetch")


async def _aria2c(url: str, out: Path) -> None:
    binary = shutil.which("aria2c")
    assert binary is not None
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-q",
        "-x4",
        "-s4",
        "-k1M",
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--check-certificate=false",
        "-d",
        str(out.parent),
        "-o",
        out.name,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"aria2c {url}: exit {proc.returncode}: {output.decode()[-500:]}")


async def _timed(coro: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = await coro
    return time.perf_counter() - t0, value


async def url_cache(bench: Bench, res: Result) -> None:
    assert bench.cairn is not None
    if bench.nginx is None:
        raise RuntimeError(f"no origin to fetch from: {bench.nginx_note}")
    nginx = bench.nginx
    s = bench.scale
    size = s.download_bytes
    path = await bench.data("fetch-src", size)
    ranged_url, whole_url = nginx.get_url(path.name), nginx.whole_url(path.name)
    out = bench.work / "fetch-client.bin"
    aria = shutil.which("aria2c")
    seg, one, curl_seg, curl_one, aria_v, hits, reused = [], [], [], [], [], [], []
    bucket = f"bench-fetch-{secrets.token_hex(4)}"
    cpu_cairn: dict[str, float] = {}
    peak_fetcher = 0
    fetched = 0
    segments_seen: set[int] = set()
    async with httpx.AsyncClient(
        base_url=bench.cairn.url, headers=bench.cairn.headers, timeout=60
    ) as c:
        (await c.post("/v1/buckets", json={"name": bucket})).raise_for_status()
        for i, warmup in bench.iterations():
            # Cairn, segmented (the origin serves ranges)
            await bench.fresh(path)
            sha = await asyncio.to_thread(_sha256, path) if warmup else None
            await bench.settle()
            with bench.window() as w:
                took, state = await _timed(_cairn_fetch(c, ranged_url, sha))
            segments_seen.add(len(state["segments"]))
            if warmup and state["sha256"] != sha:
                raise AssertionError("Cairn's fetch holds other bytes than the source")
            if not warmup:
                seg.append(mb_per_s(size, took))
                add_cpu(cpu_cairn, w)
                fetched += size
                if w is not None:
                    peak_fetcher = max(peak_fetcher, w.peak.get("fetcher", 0))
            # the same URL again: the finished fetch and its file, nothing fetched
            for _ in range(HITS):
                t0 = time.perf_counter()
                r = await c.post("/v1/fetches", json={"url": ranged_url})
                ms = 1000 * (time.perf_counter() - t0)
                answer = r.json()
                if r.status_code != 202 or not answer.get("reused") or not answer["file_id"]:
                    raise AssertionError(f"the second request was not a cache hit: {r.text}")
                if not warmup:
                    hits.append(ms)
            # curl and aria2c of the same URL (same bytes), into a file
            for name, fetch, into in (
                ("curl", lambda: curl_download(ranged_url, size, TIMEOUT, output=out), curl_seg),
                ("aria2c", lambda: _aria2c(ranged_url, out), aria_v),
            ):
                if name == "aria2c" and aria is None:
                    continue
                await bench.settle()
                took, _ = await _timed(fetch())
                if warmup and await asyncio.to_thread(_sha256, out) != sha:
                    raise AssertionError(f"{name} got other bytes than the source")
                out.unlink(missing_ok=True)
                if not warmup:
                    into.append(mb_per_s(size, took))
            # the same URL into a new key: another fetch and object, the bytes reused
            # (handlers/fetch_reuse.py; curl and aria2c above gave the read model time)
            key = f"reused-{i}-{warmup}"
            took, state = await _timed(_cairn_fetch(c, ranged_url, None, bucket=bucket, key=key))
            if not await _reused(bench, state["id"]):
                raise AssertionError("the fetch into a new key downloaded instead of reusing")
            if not warmup:
                reused.append(mb_per_s(size, took))
            # Cairn, one stream (the origin ignores ranges), vs curl of that URL
            await bench.fresh(path)
            sha = await asyncio.to_thread(_sha256, path) if warmup else None
            await bench.settle()
            with bench.window() as w:
                took, state = await _timed(_cairn_fetch(c, whole_url, sha))
            if state["segments"]:
                raise AssertionError("a fetch from an origin without ranges was segmented")
            if not warmup:
                one.append(mb_per_s(size, took))
                add_cpu(cpu_cairn, w)
                fetched += size
                if w is not None:
                    peak_fetcher = max(peak_fetcher, w.peak.get("fetcher", 0))
            await bench.settle()
            took, _ = await _timed(curl_download(whole_url, size, TIMEOUT, output=out))
            out.unlink(missing_ok=True)
            if not warmup:
                curl_one.append(mb_per_s(size, took))
    res.rows += [
        Row("fetch, segmented origin", "MB/s", seg, CURL, curl_seg or None),
        Row(
            "fetch, segmented origin",
            "MB/s",
            seg,
            ARIA,
            aria_v or None,
            None if aria else "aria2c is not installed (apt-get install aria2)",
        ),
        Row("fetch, origin without ranges", "MB/s", one, CURL, curl_one or None),
        Row("fetch into a new key, bytes reused", "MB/s", reused, CURL, curl_seg or None),
        Row(
            "cache hit: the same URL again",
            "ms",
            [statistics.median(hits)] if hits else [],
            higher_is_better=False,
            kind="value",
        ),
    ]
    segs = ", ".join(str(n) for n in sorted(segments_seen))
    res.notes.append(
        f"{human_bytes(size)} from a local nginx; Cairn's fetch from POST to COMPLETED, into "
        f"its blob store; segments per fetch: {segs} (CAIRN_FETCH_SEGMENTS, segments of at "
        f"least {bench.cairn.extra_env.get('CAIRN_FETCH_SEGMENT_MIN_BYTES', '16M')}); curl "
        "and aria2c write to a file; cache hit: median of "
        f"{HITS} POSTs per run answering with the finished fetch's file_id"
    )
    if fetched:
        per_gib = {k: v * GiB / fetched for k, v in cpu_cairn.items()}
        res.notes.append(cpu_note(per_gib, "per GiB fetched (Cairn's processes)"))
    if peak_fetcher:
        res.notes.append(
            f"fetch worker peak RSS during the fetches: {peak_fetcher / 2**20:.0f} MiB"
        )


SCENARIOS = [
    Scenario(
        "fetch.url_cache",
        "URL fetch into the store vs curl and aria2c -x4 of the same URL; the cache hit",
        url_cache,
        needs=frozenset({"nginx", "fetch"}),
    ),
]
