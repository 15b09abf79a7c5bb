"""Download scenarios: GET /v1/files/{id}/content vs nginx `sendfile` of the very same bytes.

curl is the client on both sides (output to /dev/null), so the ratio compares servers. The
files are the ones the upload scenarios left in Cairn when they ran (else they are uploaded
first); the warm-up run downloads into a file once and checks its sha256 against the source.

download.range_4k: 200 concurrent readers, each on its own keep-alive connection, send
GETs of random 4 KiB-aligned 4 KiB ranges of the download.single file, one after another;
latency is from writing the request to having the whole body. The client is a minimal
asyncio HTTP/1.1 client (httpx would be the bottleneck), the same for Cairn and nginx;
every answer must be a 206 of 4096 bytes, and the first range each reader gets is checked
byte for byte against the source.

download.range_4k_processes: the same reads against a second `cairn up` run with
CAIRN_API_PROCESSES=2 (two API processes on one port, README "Several API processes on
one machine"), alternating with the main Cairn's one API process; the ratio is the two
processes' rate over the one's, both Cairns reading the same bytes from the page cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.bench import client as native
from tests.bench.baselines import curl_download
from tests.bench.cairn import Cairn
from tests.bench.core import Result, Row, Scenario, human_bytes, latency_rows, mb_per_s
from tests.bench.runner import Bench, _log
from tests.bench.uploads import compare

NGINX = "nginx sendfile (curl)"
TIMEOUT = 600.0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return h.hexdigest()


async def _verify(bench: Bench, url: str, src: Path, headers: dict[str, str] | None) -> None:
    out = bench.work / "verify.bin"
    try:
        await curl_download(url, src.stat().st_size, TIMEOUT, headers=headers, output=out)
        got, want = await asyncio.gather(
            asyncio.to_thread(_sha256, out), asyncio.to_thread(_sha256, src)
        )
        if got != want:
            raise AssertionError(f"{url} served other bytes than {src.name}")
    finally:
        out.unlink(missing_ok=True)


async def _measure(
    bench: Bench, sources: list[Path], ids: list[str], res: Result, label: str
) -> None:
    assert bench.cairn is not None
    cairn_urls = [f"{bench.cairn.url}/v1/files/{fid}/content" for fid in ids]
    auth = bench.cairn.headers
    total = sum(p.stat().st_size for p in sources)
    cairn, ngx = [], []
    for _, warmup in bench.iterations():
        if warmup:
            await _verify(bench, cairn_urls[0], sources[0], auth)
            if bench.nginx:
                await _verify(bench, bench.nginx.get_url(sources[0].name), sources[0], None)
        t0 = time.perf_counter()
        await asyncio.gather(
            *[
                curl_download(u, p.stat().st_size, TIMEOUT, headers=auth)
                for u, p in zip(cairn_urls, sources, strict=True)
            ]
        )
        if not warmup:
            cairn.append(mb_per_s(total, time.perf_counter() - t0))
        if bench.nginx:
            nginx = bench.nginx
            t0 = time.perf_counter()
            await asyncio.gather(
                *[curl_download(nginx.get_url(p.name), p.stat().st_size, TIMEOUT) for p in sources]
            )
            if not warmup:
                ngx.append(mb_per_s(total, time.perf_counter() - t0))
    res.rows += compare(label, "MB/s", cairn, bench, ngx, None, nginx_name=NGINX)


async def single(bench: Bench, res: Result) -> None:
    s = bench.scale
    # Same name and size as upload.single's file: when it ran, its last upload is reused.
    path = await bench.data("up-single", s.download_bytes)
    fid = await bench.in_cairn(path)
    await _measure(bench, [path], [fid], res, "throughput")
    res.notes.append(f"{human_bytes(s.download_bytes)}, one stream")


async def parallel(bench: Bench, res: Result) -> None:
    s = bench.scale
    files = [await bench.data(f"up-par-{k}", s.parallel_bytes) for k in range(s.parallel_streams)]
    ids = [await bench.in_cairn(f) for f in files]
    await _measure(bench, files, ids, res, "aggregate throughput")
    res.notes.append(
        f"{s.parallel_streams} concurrent downloads of {human_bytes(s.parallel_bytes)} each "
        "(the upload.parallel files)"
    )


# ---------------------------------------------------------------------------- range_4k

RANGE_BYTES = 4096
READERS = 200


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


async def _reader(
    url: str, headers: dict[str, str], offsets: list[int], src: bytes | None, lat: list[float]
) -> None:
    """One keep-alive connection sending its ranged GETs one after another."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        for k, off in enumerate(offsets):
            req = (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}"
                f"Range: bytes={off}-{off + RANGE_BYTES - 1}\r\n\r\n"
            )
            t0 = time.perf_counter()
            writer.write(req.encode())
            status, body = await _read_response(reader)
            lat.append(time.perf_counter() - t0)
            if status != 206 or len(body) != RANGE_BYTES:
                raise AssertionError(f"{url}: {status} with {len(body)} bytes for a 4 KiB range")
            if k == 0 and src is not None and body != src:
                raise AssertionError(f"{url} served other bytes at {off}")
    finally:
        writer.close()


async def _ranged_run(
    url: str, headers: dict[str, str], path: Path, per_reader: int, seed: int, check: bool
) -> tuple[list[float], float]:
    """Latencies (s) of READERS x per_reader ranged GETs, and the run's wall time."""
    size = path.stat().st_size
    rnd = random.Random(seed)
    plans = [
        [rnd.randrange(0, size // RANGE_BYTES) * RANGE_BYTES for _ in range(per_reader)]
        for _ in range(READERS)
    ]
    srcs: list[bytes | None] = [None] * READERS
    if check:
        with path.open("rb") as f:
            for i, offs in enumerate(plans):
                f.seek(offs[0])
                srcs[i] = f.read(RANGE_BYTES)
    lat: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(
        *[_reader(url, headers, offs, srcs[i], lat) for i, offs in enumerate(plans)]
    )
    return lat, time.perf_counter() - t0


async def _ranged_target(bench: Bench) -> tuple[Path, str, int]:
    """The file the ranged reads read (download.single's), its URL in the main Cairn, and
    how many GETs each reader sends per run."""
    assert bench.cairn is not None
    path = await bench.data("up-single", bench.scale.download_bytes)
    fid = await bench.in_cairn(path)
    per_reader = 3 if bench.scale.name == "quick" else 50
    return path, f"{bench.cairn.url}/v1/files/{fid}/content", per_reader


async def range_4k(bench: Bench, res: Result) -> None:
    assert bench.cairn is not None
    s = bench.scale
    path, cairn_url, per_reader = await _ranged_target(bench)
    cairn_lat: list[float] = []
    ngx_lat: list[float] = []
    cairn_rate: list[float] = []
    ngx_rate: list[float] = []
    for i, warmup in bench.iterations():
        lat, wall = await _ranged_run(cairn_url, bench.cairn.headers, path, per_reader, i, warmup)
        if not warmup:
            cairn_lat += lat
            cairn_rate.append(len(lat) / wall)
        if bench.nginx:
            lat, wall = await _ranged_run(
                bench.nginx.get_url(path.name), {}, path, per_reader, i, warmup
            )
            if not warmup:
                ngx_lat += lat
                ngx_rate.append(len(lat) / wall)
    res.rows += latency_rows(
        "4 KiB range latency",
        cairn_lat,
        NGINX,
        ngx_lat,
        None if bench.nginx else bench.nginx_note,
    )
    res.rows += compare(
        "ranged reads", "req/s", cairn_rate, bench, ngx_rate, None, nginx_name=NGINX
    )
    res.notes.append(
        f"{READERS} concurrent readers x {per_reader} GETs of a random 4 KiB-aligned 4 KiB "
        f"range of a {human_bytes(s.download_bytes)} file per run, keep-alive; every answer a "
        "206 of 4096 bytes; p50/p99 pooled over the measured runs"
    )


ONE_PROCESS = "Cairn with one API process (the main one, same run)"
API_PROCESSES = 2


async def range_4k_processes(bench: Bench, res: Result) -> None:
    assert bench.cairn is not None
    path, one_url, per_reader = await _ranged_target(bench)
    two = Cairn(bench.work, env={"CAIRN_API_PROCESSES": str(API_PROCESSES)}, name="cairn-api2")
    two_rate: list[float] = []
    one_rate: list[float] = []
    two_lat: list[float] = []
    one_lat: list[float] = []
    try:
        await asyncio.to_thread(two.start)
        async with native.client(two.url, two.headers, conns=4) as c:
            t = await native.native_upload(c, path, name=path.name)
        two_url = f"{two.url}/v1/files/{t.file_id}/content"
        # Both files read once in full, so that both Cairns read from the page cache.
        for url, headers in ((one_url, bench.cairn.headers), (two_url, two.headers)):
            await curl_download(url, path.stat().st_size, TIMEOUT, headers=headers)
        for i, warmup in bench.iterations():
            lat, wall = await _ranged_run(two_url, two.headers, path, per_reader, i, warmup)
            if not warmup:
                two_lat += lat
                two_rate.append(len(lat) / wall)
            lat2, wall2 = await _ranged_run(
                one_url, bench.cairn.headers, path, per_reader, i, warmup
            )
            if not warmup:
                one_lat += lat2
                one_rate.append(len(lat2) / wall2)
            _log(f"    run {i}: {len(lat) / wall:.0f} against {len(lat2) / wall2:.0f} req/s")
    finally:
        await asyncio.to_thread(two.stop)
    res.rows += [
        Row(
            f"ranged reads, {API_PROCESSES} API processes", "req/s", two_rate, ONE_PROCESS, one_rate
        )
    ]
    res.rows += latency_rows(
        "4 KiB range latency, 2 API processes", two_lat, ONE_PROCESS, one_lat, None
    )
    res.notes.append(
        f"as download.range_4k ({READERS} readers x {per_reader} GETs per run), against a "
        f"second `cairn up` with CAIRN_API_PROCESSES={API_PROCESSES}, alternating with the "
        "main Cairn (one API process) in the same run"
    )


SCENARIOS = [
    Scenario(
        "download.single",
        "one big file in one stream vs nginx sendfile",
        single,
        needs=frozenset({"nginx"}),
    ),
    Scenario(
        "download.parallel",
        "concurrent downloads vs nginx sendfile",
        parallel,
        needs=frozenset({"nginx"}),
    ),
    Scenario(
        "download.range_4k",
        "4 KiB ranged reads under 200 concurrent readers vs nginx",
        range_4k,
        needs=frozenset({"nginx"}),
    ),
    Scenario(
        "download.range_4k_processes",
        "the same ranged reads with two API processes on one port vs one",
        range_4k_processes,
        extra_timeout=120.0,
    ),
]
