"""Object scenarios: small objects PUT in one request each, next to nginx's WebDAV PUT.

`objects.put_4k` is the small-file path of issue 9: `PUT /v1/buckets/{name}/objects/{key}`
streams the body into the blob store and sends ONE command, so its rate is Cairn's cost per
small file (one blob fsync, one command round trip, one event) next to nginx writing a
file per PUT. Both are driven by the same httpx client with the same concurrency (the
target is at least 0.35x of nginx).
"""

from __future__ import annotations

import os
import secrets
import statistics

from tests.bench import client as native
from tests.bench.baselines import Nginx
from tests.bench.core import Result, Row, Scenario, percentile
from tests.bench.runner import Bench
from tests.bench.uploads import _drive

SIZE = 4096
CLIENTS = 32
NGINX = "nginx WebDAV PUT (httpx)"


async def put_4k(bench: Bench, res: Result) -> None:
    s = bench.scale
    cairn, ngx = [], []
    lat: list[float] = []
    async with bench.cairn_client(conns=CLIENTS) as c, native.client(conns=CLIENTS) as plain:
        bucket = f"bench-{secrets.token_hex(6)}"
        r = await c.post("/v1/buckets", json={"name": bucket})
        r.raise_for_status()
        for i, warmup in bench.iterations():
            count = min(s.small_files, 2 * CLIENTS) if warmup else max(s.small_files, 2 * CLIENTS)

            async def put_cairn(k: int, i: int = i) -> None:
                r = await c.put(f"/v1/buckets/{bucket}/objects/o/{i}/{k}", content=os.urandom(SIZE))
                r.raise_for_status()

            await bench.settle()
            rate, ls = await _drive(put_cairn, count, CLIENTS, s.small_seconds)
            if not warmup:
                cairn.append(rate)
                lat += ls
            if bench.nginx:
                nginx = bench.nginx

                async def put_nginx(k: int, i: int = i, nginx: Nginx = nginx) -> None:
                    await native.put_bytes(
                        plain, nginx.put_url(f"objects/{i}-{k}.bin"), os.urandom(SIZE)
                    )

                await bench.settle()
                rate, _ = await _drive(put_nginx, count, CLIENTS, s.small_seconds)
                if not warmup:
                    ngx.append(rate)
    res.rows.append(
        Row(
            "4 KiB object PUTs",
            "PUTs/s",
            cairn,
            NGINX,
            ngx or None,
            None if bench.nginx else bench.nginx_note,
        )
    )
    if lat:
        res.rows.append(
            Row(
                "latency per PUT p50", "ms", [1000 * statistics.median(lat)], higher_is_better=False
            )
        )
        res.rows.append(
            Row("latency per PUT p99", "ms", [1000 * percentile(lat, 99)], higher_is_better=False)
        )
    res.notes.append(
        f"{SIZE} B objects, {CLIENTS} concurrent clients, one PUT each (Cairn: one blob, one "
        f"command); at most {max(s.small_files, 2 * CLIENTS)} objects or "
        f"{s.small_seconds:.0f} s per run; target >= 0.35x nginx"
    )


SCENARIOS = [
    Scenario(
        "objects.put_4k",
        "4 KiB object PUTs/s from 32 clients: one PUT = one command, vs nginx WebDAV PUT",
        put_4k,
        needs=frozenset({"nginx"}),
    ),
]
