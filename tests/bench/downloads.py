"""Download scenarios: GET /v1/files/{id}/content vs nginx `sendfile` of the very same bytes.

curl is the client on both sides (output to /dev/null), so the ratio compares servers. The
files are the ones the upload scenarios left in Cairn when they ran (else they are uploaded
first); the warm-up run downloads into a file once and checks its sha256 against the source.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from tests.bench.baselines import curl_download
from tests.bench.core import Result, Scenario, human_bytes, mb_per_s
from tests.bench.runner import Bench
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
]
