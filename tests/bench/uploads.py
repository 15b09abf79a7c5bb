"""Upload scenarios: one big stream, parallel streams, many small files.

Cairn is driven through its native chunked API (create, PUT every chunk of the server's
default size in order, complete) with httpx. Baselines: nginx's WebDAV PUT fed by `curl -T`
(the machine's practical limit: C, sendfile-free but no hashing, no fsync) and the bare
Python streaming endpoint fed by the same httpx client as Cairn (same server stack, sha256
and fsync, nothing else), so the second ratio isolates what Cairn's features cost. A third
(tests/bench/disk.py) is the disk's own durable write speed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from collections.abc import Awaitable, Callable

from tests.bench import client as native
from tests.bench import disk
from tests.bench.baselines import BareEndpoint, Nginx, curl_upload
from tests.bench.core import MiB, Result, Row, Scenario, human_bytes, mb_per_s, percentile
from tests.bench.runner import Bench, add_cpu, cpu_note

NGINX = "nginx WebDAV PUT (curl -T)"
BARE = "bare endpoint (uvicorn, sha256+fsync)"
CURL_TIMEOUT = 600.0


def compare(
    metric: str,
    unit: str,
    cairn: list[float],
    bench: Bench,
    nginx: list[float],
    bare: list[float] | None,
    *,
    nginx_name: str = NGINX,
    higher_is_better: bool = True,
    durable: list[float] | None = None,
) -> list[Row]:
    rows = [
        Row(
            metric,
            unit,
            cairn,
            nginx_name,
            nginx or None,
            None if bench.nginx else bench.nginx_note,
            higher_is_better,
        )
    ]
    if bare is not None:
        rows.append(
            Row(
                metric,
                unit,
                cairn,
                BARE,
                bare or None,
                None if bench.bare else bench.bare_note,
                higher_is_better,
            )
        )
    if durable:
        rows.append(Row(metric, unit, cairn, disk.DISK, durable))
    return rows


def breakdown(timings: list[native.UploadTiming]) -> str:
    puts = [p for t in timings for p in t.puts]
    # The nominal chunk size, unless the files are smaller than one chunk.
    chunk = min(timings[0].chunk_size, timings[0].size)
    per_chunk = statistics.median(puts) if puts else 0.0
    return (
        f"where the time goes (median run): create {1000 * statistics.median(t.create for t in timings):.0f} ms, "
        f"{len(timings[0].puts)} chunk PUTs of {human_bytes(chunk)} at {1000 * per_chunk:.0f} ms each "
        f"(= {mb_per_s(chunk, per_chunk):.0f} MB/s per chunk), "
        f"complete {1000 * statistics.median(t.complete for t in timings):.0f} ms"
    )


# ---------------------------------------------------------------------------- upload.single


async def single(bench: Bench, res: Result) -> None:
    s = bench.scale
    path = await bench.data("up-single", s.single_bytes)
    warm = await bench.data("warm", min(s.warmup_bytes, s.single_bytes))
    cairn, ngx, bare, durable = [], [], [], []
    timings: list[native.UploadTiming] = []
    cpu: dict[str, float] = {}
    async with bench.cairn_client() as c, native.client(conns=4) as plain:
        for i, warmup in bench.iterations():
            f = warm if warmup else path
            size = f.stat().st_size
            await bench.fresh(f)
            await bench.settle()
            with bench.window() as w:
                t = await native.native_upload(c, f, name=f"single-{i}.bin")
            bench.remember_in_cairn(f, t.file_id)
            if not warmup:
                add_cpu(cpu, w)
                timings.append(t)
                cairn.append(mb_per_s(size, t.seconds))
            if bench.nginx:
                await bench.settle()
                t0 = time.perf_counter()
                await curl_upload(bench.nginx.put_url("single.bin"), f, CURL_TIMEOUT)
                if not warmup:
                    ngx.append(mb_per_s(size, time.perf_counter() - t0))
            if bench.bare:
                await bench.settle()
                t0 = time.perf_counter()
                await native.put_file(plain, bench.bare.put_url("single.bin"), f)
                if not warmup:
                    bare.append(mb_per_s(size, time.perf_counter() - t0))
            if not warmup:
                durable.append(await disk.measure(bench, [f]))
    res.rows += compare("throughput", "MB/s", cairn, bench, ngx, bare, durable=durable)
    res.notes.append(f"{human_bytes(s.single_bytes)}, one stream. " + breakdown(timings))
    puts = [p for t in timings for p in t.puts]
    if bare and puts:
        # What the bare endpoint needs to receive, hash and fsync one chunk's bytes; the
        # rest of a chunk PUT is Cairn's own work, mostly the StoreChunk round trip.
        chunk = min(timings[0].chunk_size, timings[0].size)
        moving = chunk / (statistics.median(bare) * 1e6)
        per_put = statistics.median(puts)
        res.notes.append(
            f"the bare endpoint moves one chunk's bytes in {1000 * moving:.0f} ms, so "
            f"{1000 * max(per_put - moving, 0):.0f} ms ({100 * max(per_put - moving, 0) / per_put:.0f}%) "
            "of each chunk PUT is Cairn's overhead beyond receiving, hashing and fsyncing "
            "(compare bus.command_rtt)"
        )
    runs = len(timings)
    res.notes.append(cpu_note({k: v / runs for k, v in cpu.items()}, "per Cairn upload"))
    res.extra["timings"] = [
        {"seconds": t.seconds, "create": t.create, "complete": t.complete, "puts": t.puts}
        for t in timings
    ]
    res.extra["cpu_per_upload"] = {k: v / runs for k, v in cpu.items()}


# ---------------------------------------------------------------------------- upload.parallel


async def parallel(bench: Bench, res: Result) -> None:
    s = bench.scale
    n = s.parallel_streams
    files = [await bench.data(f"up-par-{k}", s.parallel_bytes) for k in range(n)]
    warm_each = min(s.parallel_bytes, max(MiB, s.warmup_bytes // n))
    warm = [await bench.data(f"warm-par-{k}", warm_each) for k in range(n)]
    cairn, ngx, bare, durable = [], [], [], []
    timings: list[native.UploadTiming] = []
    async with bench.cairn_client(conns=2 * n) as c, native.client(conns=2 * n) as plain:
        for i, warmup in bench.iterations():
            fs = warm if warmup else files
            total = sum(f.stat().st_size for f in fs)
            for f in fs:
                await bench.fresh(f)
            await bench.settle()
            t0 = time.perf_counter()
            ts = await asyncio.gather(
                *[native.native_upload(c, f, name=f"par-{i}-{k}.bin") for k, f in enumerate(fs)]
            )
            dt = time.perf_counter() - t0
            for f, t in zip(fs, ts, strict=True):
                bench.remember_in_cairn(f, t.file_id)
            if not warmup:
                cairn.append(mb_per_s(total, dt))
                timings += ts
            if bench.nginx:
                await bench.settle()
                t0 = time.perf_counter()
                await asyncio.gather(
                    *[
                        curl_upload(bench.nginx.put_url(f"par-{k}.bin"), f, CURL_TIMEOUT)
                        for k, f in enumerate(fs)
                    ]
                )
                if not warmup:
                    ngx.append(mb_per_s(total, time.perf_counter() - t0))
            if bench.bare:
                await bench.settle()
                t0 = time.perf_counter()
                await asyncio.gather(
                    *[
                        native.put_file(plain, bench.bare.put_url(f"par-{k}.bin"), f)
                        for k, f in enumerate(fs)
                    ]
                )
                if not warmup:
                    bare.append(mb_per_s(total, time.perf_counter() - t0))
            if not warmup:
                durable.append(await disk.measure(bench, fs))
    res.rows += compare("aggregate throughput", "MB/s", cairn, bench, ngx, bare, durable=durable)
    res.notes.append(
        f"{n} concurrent uploads of {human_bytes(s.parallel_bytes)} each. " + breakdown(timings)
    )


# ---------------------------------------------------------------------------- upload.small_files

SMALL = 4096


async def _drive(
    op: Callable[[int], Awaitable[None]], count: int, concurrency: int, seconds: float
) -> tuple[float, list[float]]:
    """Run op(0..count-1) on `concurrency` workers for at most `seconds`; (ops/s, latencies)."""
    numbers = itertools.count()
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            i = next(numbers)
            if i >= count:
                return
            t = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return len(latencies) / (time.perf_counter() - t0), latencies


async def small_files(bench: Bench, res: Result) -> None:
    s = bench.scale
    conc = s.small_concurrency
    cairn, ngx, bare = [], [], []
    lat: list[float] = []
    done = 0
    async with bench.cairn_client(conns=conc) as c, native.client(conns=conc) as plain:
        for i, warmup in bench.iterations():
            count = min(s.small_files, 2 * conc) if warmup else s.small_files

            async def up_cairn(k: int, i: int = i) -> None:
                await native.native_upload_bytes(c, os.urandom(SMALL), name=f"small-{i}-{k}")

            rate, ls = await _drive(up_cairn, count, conc, s.small_seconds)
            if not warmup:
                cairn.append(rate)
                lat += ls
                done += len(ls)
            if bench.nginx:
                nginx = bench.nginx

                async def up_nginx(k: int, i: int = i, nginx: Nginx = nginx) -> None:
                    await native.put_bytes(
                        plain, nginx.put_url(f"small/{i}-{k}.bin"), os.urandom(SMALL)
                    )

                rate, _ = await _drive(up_nginx, count, conc, s.small_seconds)
                if not warmup:
                    ngx.append(rate)
            if bench.bare:
                bare_ep = bench.bare

                async def up_bare(k: int, i: int = i, bare_ep: BareEndpoint = bare_ep) -> None:
                    await native.put_bytes(
                        plain, bare_ep.put_url(f"small-{i}-{k}.bin"), os.urandom(SMALL)
                    )

                rate, _ = await _drive(up_bare, count, conc, s.small_seconds)
                if not warmup:
                    bare.append(rate)
    res.rows += compare(
        "4 KiB files", "files/s", cairn, bench, ngx, bare, nginx_name="nginx WebDAV PUT (httpx)"
    )
    if lat:
        res.rows.append(
            Row(
                "latency per file p50",
                "ms",
                [1000 * statistics.median(lat)],
                higher_is_better=False,
            )
        )
        res.rows.append(
            Row("latency per file p99", "ms", [1000 * percentile(lat, 99)], higher_is_better=False)
        )
    res.notes.append(
        f"{SMALL} B files, {conc} concurrent clients, at most {s.small_files} files or "
        f"{s.small_seconds:.0f} s per run ({done} Cairn files measured); Cairn = create + PUT + "
        "complete (3 requests, 3 commands: the file follows the completion in the actor), "
        "baselines = one PUT, all with the same httpx client"
    )


SCENARIOS = [
    Scenario(
        "upload.single",
        "one big file in one stream: native API vs nginx WebDAV PUT and the bare endpoint",
        single,
        needs=frozenset({"nginx", "bare"}),
    ),
    Scenario(
        "upload.parallel",
        "concurrent uploads: native API vs nginx WebDAV PUT and the bare endpoint",
        parallel,
        needs=frozenset({"nginx", "bare"}),
    ),
    Scenario(
        "upload.small_files",
        "4 KiB files per second: native create+put+complete vs one PUT",
        small_files,
        needs=frozenset({"nginx", "bare"}),
    ),
]
