"""Object scenarios: small objects PUT and read in one request each, next to nginx.

`objects.put_4k` is the small-file path of issue 9: `PUT /v1/buckets/{name}/objects/{key}`
streams the body into the blob store and sends ONE command, so its rate is Cairn's cost per
small file (one blob fsync, one command round trip, one event) next to nginx writing a
file per PUT. Both are driven by the same httpx client with the same concurrency (the
target is at least 0.35x of nginx).

`objects.get_4k` reads small objects of a private bucket three ways: with the owner's
token, anonymously with a signed URL (the HMAC check in place of the JWT), and from nginx's
static root, the same bytes, the same client and concurrency. The signed/token ratio is
what signing costs a reader; the nginx ratio is the per-request cost of Cairn's read path.

`objects.put_4k_quota` is objects.put_4k's lean PUTs by a user with a quota against the
same PUTs by a user without one: what the quota's reservation (an advisory lock and a row
per PUT, api/limits.py) costs a small PUT.

`objects.copy` copies one large object on the server, next to nginx's WebDAV COPY.

`objects.head_4k` HEADs the small objects of `objects.get_4k`'s kind, by key and as their
files' content (`/v1/files/{id}/content`), next to nginx answering HEAD for the same bytes
from its static root, with the same client and concurrency; the GET of the same objects
runs in the same turns, so the note says what a HEAD saves over a GET.

`objects.get_headers` is the owner's 4 KiB object GETs of objects stored with S3's five
stored headers (Cache-Control, Content-Disposition, Content-Encoding, Content-Language,
Expires) against the same GETs of objects stored without them, in the same runs, taking
turns to go first: what keeping and answering them costs a read (the goal: ~1.0x).

`objects.put_digest` is one large object PUT with a declared `Content-MD5` (an MD5 pass
over the body on the API's event loop), and with `x-amz-checksum-sha256` (compared with
the sha256 the store computes anyway), each against the same PUT without a digest.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from tests.bench import client as native
from tests.bench.baselines import Nginx
from tests.bench.cairn import QUOTA_BYTES, QUOTA_USER
from tests.bench.core import Result, Row, Scenario, percentile, summarize
from tests.bench.runner import Bench, add_cpu, cpu_ms_note
from tests.bench.uploads import _drive

SIZE = 4096
CLIENTS = 32
NGINX = "nginx WebDAV PUT (httpx)"
LEAN_NGINX = "nginx WebDAV PUT (lean client)"


class LeanClients:
    """32 httpx clients of one connection each, handed to one request at a time.

    The shared client's pool (httpcore) looks at every one of its connections on every
    request and every response (a `getpeername` and a `poll` per idle one): measured beside
    the bench, its process was the machine's largest (37 % of all CPU samples against the
    API's 17 %) and bound both servers' rates. With one connection per client that scan is
    one connection long, so this row shows what the servers do rather than the client."""

    def __init__(self, base_url: str = "", headers: dict[str, str] | None = None) -> None:
        self._all = [native.client(base_url, headers, conns=1) for _ in range(CLIENTS)]
        self._free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for c in self._all:
            self._free.put_nowait(c)

    async def put(self, url: str, body: bytes) -> None:
        c = await self._free.get()
        try:
            r = await c.put(url, content=body)
            r.raise_for_status()
        finally:
            self._free.put_nowait(c)

    async def __aenter__(self) -> LeanClients:
        return self

    async def __aexit__(self, *_: object) -> None:
        for c in self._all:
            await c.aclose()


async def put_4k(bench: Bench, res: Result) -> None:
    s = bench.scale

    async def measure(
        op: Callable[[int], Awaitable[None]], count: int, into: list[float], warmup: bool
    ) -> None:
        """One run of `op` after a settle; its rate kept unless it warms up."""
        await bench.settle()
        rate, _ = await _drive(op, count, CLIENTS, s.small_seconds)
        if not warmup:
            into.append(rate)

    cairn, ngx, lean_cairn, lean_ngx = [], [], [], []
    lat: list[float] = []
    cpu: dict[str, float] = {}
    assert bench.cairn is not None
    async with (
        bench.cairn_client(conns=CLIENTS) as c,
        native.client(conns=CLIENTS) as plain,
        LeanClients(bench.cairn.url, bench.cairn.headers) as lean,
        LeanClients() as lean_plain,
    ):
        bucket = f"bench-{secrets.token_hex(6)}"
        r = await c.post("/v1/buckets", json={"name": bucket})
        r.raise_for_status()
        for i, warmup in bench.iterations(s.small_runs):
            count = min(s.small_files, 2 * CLIENTS) if warmup else max(s.small_files, 2 * CLIENTS)

            async def put_cairn(k: int, i: int = i) -> None:
                r = await c.put(f"/v1/buckets/{bucket}/objects/o/{i}/{k}", content=os.urandom(SIZE))
                r.raise_for_status()

            await bench.settle()
            with bench.window() as w:
                rate, ls = await _drive(put_cairn, count, CLIENTS, s.small_seconds)
            if not warmup:
                cairn.append(rate)
                lat += ls
                add_cpu(cpu, w)
            if bench.nginx:
                nginx = bench.nginx

                async def put_nginx(k: int, i: int = i, nginx: Nginx = nginx) -> None:
                    await native.put_bytes(
                        plain, nginx.put_url(f"objects/{i}-{k}.bin"), os.urandom(SIZE)
                    )

                await measure(put_nginx, count, ngx, warmup)

            # The same PUTs from the lean clients (another prefix: every PUT creates).
            async def put_lean(k: int, i: int = i) -> None:
                await lean.put(f"/v1/buckets/{bucket}/objects/lean/{i}/{k}", os.urandom(SIZE))

            await measure(put_lean, count, lean_cairn, warmup)
            if bench.nginx:
                nginx = bench.nginx

                async def put_nginx_lean(k: int, i: int = i, nginx: Nginx = nginx) -> None:
                    await lean_plain.put(nginx.put_url(f"lean/{i}-{k}.bin"), os.urandom(SIZE))

                await measure(put_nginx_lean, count, lean_ngx, warmup)
    note = None if bench.nginx else bench.nginx_note
    res.rows.append(Row("4 KiB object PUTs", "PUTs/s", cairn, NGINX, ngx or None, note))
    res.rows.append(
        Row(
            "4 KiB object PUTs, lean client",
            "PUTs/s",
            lean_cairn,
            LEAN_NGINX,
            lean_ngx or None,
            note,
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
        f"{s.small_seconds:.0f} s per run; target >= 0.35x nginx (the shared client's row, as"
        " the goal was set); the lean client's row: one connection per client"
    )
    if lat and cpu:
        res.notes.append(cpu_ms_note(cpu, len(lat), "Cairn PUT"))


async def _quota_refuses(base_url: str, headers: dict[str, str], path: str, size: int) -> bool:
    """Whether a PUT declaring `size` bytes is refused 413 quota_exceeded before its body is
    sent (only the head goes out, so nothing is stored whatever the answer)."""
    host, _, port = base_url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = [f"PUT {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {size}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        answer = b""
        async with asyncio.timeout(30):
            while b"quota_exceeded" not in answer and len(answer) < 65536:
                more = await reader.read(4096)
                if not more:
                    break
                answer += more
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return answer.startswith(b"HTTP/1.1 413") and b"quota_exceeded" in answer


async def put_4k_quota(bench: Bench, res: Result) -> None:
    """The lean 4 KiB PUTs of a user with a quota against those of a user without one.

    Under a quota each PUT first reserves its bytes (an advisory lock on its owner, the
    usage read, a row of api.quota_reservations) and gives them back once applied; without
    one it does neither. Both users' PUTs go from the same kind of lean clients to the same
    `cairn up`, alternating run by run (which goes first alternates too), so the ratio is
    what the quota path costs a small PUT on this machine at this hour."""
    s = bench.scale
    assert bench.cairn is not None
    cairn = bench.cairn
    quota_headers = cairn.headers_for(QUOTA_USER)
    rates: dict[bool, list[float]] = {True: [], False: []}
    lat: dict[bool, list[float]] = {True: [], False: []}
    async with (
        LeanClients(cairn.url, cairn.headers) as plain,
        LeanClients(cairn.url, quota_headers) as quota,
        native.client(cairn.url, cairn.headers) as c,
        native.client(cairn.url, quota_headers) as cq,
    ):
        buckets: dict[bool, str] = {}
        for with_quota, who in ((False, c), (True, cq)):
            buckets[with_quota] = f"bench-{secrets.token_hex(6)}"
            (await who.post("/v1/buckets", json={"name": buckets[with_quota]})).raise_for_status()
        # The figure means something only if the quota is there (and never in the way).
        path = f"/v1/buckets/{buckets[True]}/objects/probe"
        if not await _quota_refuses(cairn.url, quota_headers, path, QUOTA_BYTES + 1):
            raise AssertionError(f"{QUOTA_USER} has no quota: the bench's Cairn lacks CAIRN_QUOTAS")
        clients = {True: quota, False: plain}
        for i, warmup in bench.iterations(s.small_runs):
            count = min(s.small_files, 2 * CLIENTS) if warmup else max(s.small_files, 2 * CLIENTS)
            for with_quota in (True, False) if i % 2 else (False, True):
                lean, bucket = clients[with_quota], buckets[with_quota]

                async def put(
                    k: int, i: int = i, lean: LeanClients = lean, b: str = bucket
                ) -> None:
                    await lean.put(f"/v1/buckets/{b}/objects/q/{i}/{k}", os.urandom(SIZE))

                await bench.settle()
                rate, ls = await _drive(put, count, CLIENTS, s.small_seconds)
                if not warmup:
                    rates[with_quota].append(rate)
                    lat[with_quota] += ls
    res.rows.append(
        Row(
            "4 KiB object PUTs under a quota, lean client",
            "PUTs/s",
            rates[True],
            "the same PUTs without a quota",
            rates[False],
        )
    )
    res.notes.append(
        f"{SIZE} B objects, {CLIENTS} lean clients (one connection each), every PUT a new key;"
        f" {QUOTA_USER} has a quota of {QUOTA_BYTES >> 20} MiB (CAIRN_QUOTAS; never reached),"
        f" the other user none; the two alternate run by run; at most"
        f" {max(s.small_files, 2 * CLIENTS)} objects or {s.small_seconds:.0f} s per run"
    )
    if lat[True] and lat[False]:
        res.notes.append(
            "latency per PUT p50 / p99, under a quota: "
            f"{1000 * statistics.median(lat[True]):.1f} / {1000 * percentile(lat[True], 99):.1f}"
            " ms, without: "
            f"{1000 * statistics.median(lat[False]):.1f} / {1000 * percentile(lat[False], 99):.1f}"
            " ms"
        )


DIGEST_BLOCK = 1 << 20
DIGESTS = ("none", "content-md5", "x-amz-checksum-sha256")


def _body(seed: int, size: int) -> AsyncIterator[bytes]:
    """`size` bytes, the same for one seed (so their digests can be taken first), made a
    block at a time: never the whole body in memory, and no block like another (the store
    would deduplicate it)."""

    async def gen() -> AsyncIterator[bytes]:
        rng = random.Random(seed)
        left = size
        while left:
            n = min(DIGEST_BLOCK, left)
            yield rng.randbytes(n)
            left -= n

    return gen()


async def _digests(seed: int, size: int) -> dict[str, str]:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    async for block in _body(seed, size):
        md5.update(block)
        sha.update(block)
    return {
        "content-md5": base64.b64encode(md5.digest()).decode(),
        "x-amz-checksum-sha256": base64.b64encode(sha.digest()).decode(),
    }


async def put_digest(bench: Bench, res: Result) -> None:
    """One object PUT of `parallel_bytes` with each declared digest, and without one: the
    three in turn, the order rotating run by run, fresh bytes every PUT."""
    s = bench.scale
    size = s.parallel_bytes
    rates: dict[str, list[float]] = {d: [] for d in DIGESTS}
    async with bench.cairn_client(conns=2) as c:
        bucket = f"bench-{secrets.token_hex(6)}"
        (await c.post("/v1/buckets", json={"name": bucket})).raise_for_status()
        for i, warmup in bench.iterations():
            order = DIGESTS[i % 3 :] + DIGESTS[: i % 3]
            for digest in order:
                seed = random.getrandbits(64)
                headers = {"Content-Length": str(size)}
                if digest != "none":
                    headers[digest] = (await _digests(seed, size))[digest]
                await bench.settle()
                t0 = time.perf_counter()
                r = await c.put(
                    f"/v1/buckets/{bucket}/objects/d/{i}/{digest}",
                    content=_body(seed, size),
                    headers=headers,
                )
                dt = time.perf_counter() - t0
                if r.status_code != 201:
                    raise AssertionError(f"PUT with {digest}: {r.status_code} {r.text[:200]}")
                if not warmup:
                    rates[digest].append(size / dt / 1e6)
    for digest in DIGESTS[1:]:
        res.rows.append(
            Row(
                f"{size >> 20} MiB object PUT with {digest}",
                "MB/s",
                rates[digest],
                "the same PUT without a digest",
                rates["none"],
            )
        )
    res.notes.append(
        f"one PUT of {size >> 20} MiB at a time from httpx (the body made as it is sent, "
        "fresh bytes every PUT), the three kinds in turn, the order rotating by run"
    )


COPIES = 8


async def copy(bench: Bench, res: Result) -> None:
    """One object of `parallel_bytes` (PUT untimed), then copied COPIES times one after
    another with `x-amz-copy-source` (its chunks shared: one command each), next to nginx
    COPYing a file of the same size as many times (WebDAV; nginx copies the bytes)."""
    s = bench.scale
    size = s.parallel_bytes
    ours: list[float] = []
    theirs: list[float] = []
    async with bench.cairn_client(conns=2) as c:
        bucket = f"bench-{secrets.token_hex(6)}"
        (await c.post("/v1/buckets", json={"name": bucket})).raise_for_status()
        headers = {"Content-Length": str(size)}
        r = await c.put(
            f"/v1/buckets/{bucket}/objects/src", content=_body(0, size), headers=headers
        )
        r.raise_for_status()
        nginx_src = None
        if bench.nginx:
            nginx_src = bench.nginx.put_url(f"copy-src-{os.getpid()}")
            (await c.put(nginx_src, content=_body(0, size), headers=headers)).raise_for_status()
        for i, warmup in bench.iterations():
            await bench.settle()
            t0 = time.perf_counter()
            for k in range(COPIES):
                r = await c.put(
                    f"/v1/buckets/{bucket}/objects/copy/{i}/{k}",
                    headers={"x-amz-copy-source": f"/{bucket}/src"},
                )
                if r.status_code != 201 or r.json()["size"] != size:
                    raise AssertionError(f"copy: {r.status_code} {r.text[:200]}")
            if not warmup:
                ours.append(COPIES / (time.perf_counter() - t0))
            if nginx_src is not None:
                await bench.settle()
                t0 = time.perf_counter()
                for k in range(COPIES):
                    r = await c.request(
                        "COPY", nginx_src, headers={"Destination": f"{nginx_src}-{i}-{k}"}
                    )
                    if r.status_code >= 300:
                        raise AssertionError(f"nginx COPY: {r.status_code}")
                if not warmup:
                    theirs.append(COPIES / (time.perf_counter() - t0))
                for k in range(COPIES):  # untimed: the runs do not pile up copies
                    await c.delete(f"{nginx_src}-{i}-{k}")
    res.rows.append(
        Row(
            f"{size >> 20} MiB object copy (x-amz-copy-source)",
            "copies/s",
            ours,
            "nginx WebDAV COPY",
            theirs or None,
            None if bench.nginx else bench.nginx_note,
        )
    )
    res.notes.append(
        f"{COPIES} copies one after another per run of one {size >> 20} MiB object; Cairn "
        "shares the chunks (one command per copy), nginx copies the file's bytes"
    )


GET_OBJECTS = 64


async def get_4k(bench: Bench, res: Result) -> None:
    s = bench.scale
    token: list[float] = []
    signed: list[float] = []
    ngx: list[float] = []
    assert bench.cairn is not None
    async with (
        bench.cairn_client(conns=CLIENTS) as c,
        native.client(bench.cairn.url, conns=CLIENTS) as anon,
    ):
        bucket = f"bench-{secrets.token_hex(6)}"
        r = await c.post("/v1/buckets", json={"name": bucket, "public": False})
        r.raise_for_status()
        bodies = [os.urandom(SIZE) for _ in range(GET_OBJECTS)]
        urls: list[str] = []
        for k, body in enumerate(bodies):
            key = f"g/{k}"
            (await c.put(f"/v1/buckets/{bucket}/objects/{key}", content=body)).raise_for_status()
            r = await c.post(
                f"/v1/buckets/{bucket}/objects/{key}/signed-url",
                json={"method": "GET", "expires_in": 3600},
            )
            r.raise_for_status()
            urls.append(r.json()["url"])
            if bench.nginx:
                (bench.nginx.data_dir / f"obj-{k}.bin").write_bytes(body)
        # Every way must serve the stored bytes, or its rate means nothing.
        if (await c.get(f"/v1/buckets/{bucket}/objects/g/0")).content != bodies[0]:
            raise AssertionError("the token GET served other bytes")
        if (await anon.get(urls[0])).content != bodies[0]:
            raise AssertionError("the signed GET served other bytes")
        if (await anon.get(f"/v1/buckets/{bucket}/objects/g/0")).status_code not in (401, 404):
            raise AssertionError("the private bucket answered an anonymous GET")
        count = max(s.small_files * 4, 4 * CLIENTS)

        async def by_token(i: int) -> None:
            r = await c.get(f"/v1/buckets/{bucket}/objects/g/{i % GET_OBJECTS}")
            if r.status_code != 200 or len(r.content) != SIZE:
                raise AssertionError(f"token GET: {r.status_code}")

        async def by_signature(i: int) -> None:
            r = await anon.get(urls[i % GET_OBJECTS])
            if r.status_code != 200 or len(r.content) != SIZE:
                raise AssertionError(f"signed GET: {r.status_code}")

        for _, warmup in bench.iterations():
            rate, _ = await _drive(by_token, count, CLIENTS, s.small_seconds)
            if not warmup:
                token.append(rate)
            rate, _ = await _drive(by_signature, count, CLIENTS, s.small_seconds)
            if not warmup:
                signed.append(rate)
            if bench.nginx:
                nginx = bench.nginx

                async def from_nginx(i: int, nginx: Nginx = nginx) -> None:
                    r = await anon.get(nginx.get_url(f"obj-{i % GET_OBJECTS}.bin"))
                    if r.status_code != 200 or len(r.content) != SIZE:
                        raise AssertionError(f"nginx GET: {r.status_code}")

                rate, _ = await _drive(from_nginx, count, CLIENTS, s.small_seconds)
                if not warmup:
                    ngx.append(rate)
    note = None if bench.nginx else bench.nginx_note
    res.rows.append(
        Row(
            "4 KiB object GETs, owner's token",
            "GETs/s",
            token,
            "nginx static GET",
            ngx or None,
            note,
        )
    )
    res.rows.append(
        Row(
            "4 KiB object GETs, signed URL", "GETs/s", signed, "nginx static GET", ngx or None, note
        )
    )
    t, g = summarize(token), summarize(signed)
    if t and g:
        res.notes.append(f"signed URL / token: {g / t:.2f}x")
    res.notes.append(
        f"{SIZE} B objects of a private bucket, {CLIENTS} concurrent clients, keep-alive; "
        f"at most {count} GETs or {s.small_seconds:.0f} s per way and run"
    )


HEAD_WAYS = ("object", "file", "nginx", "object GET")


def _head_ok(r: httpx.Response, what: str, etag: str | None = None) -> None:
    """A HEAD's answer: 200 with the GET's Content-Length (and ETag, where given) and no
    body, or its rate means nothing."""
    if r.status_code != 200 or r.headers.get("content-length") != str(SIZE) or r.content:
        raise AssertionError(f"{what}: {r.status_code}, {r.headers.get('content-length')} B")
    if etag is not None and r.headers.get("etag") != etag:
        raise AssertionError(f"{what}: ETag {r.headers.get('etag')}, expected {etag}")


async def head_4k(bench: Bench, res: Result) -> None:
    """HEAD of small objects and of their files' content next to nginx's HEAD of the same
    bytes, from the same client and concurrency as objects.get_4k; the GET of the same
    objects in the same runs, for what a HEAD saves (or does not)."""
    s = bench.scale
    rates: dict[str, list[float]] = {w: [] for w in HEAD_WAYS}
    lat: dict[str, list[float]] = {w: [] for w in HEAD_WAYS}
    assert bench.cairn is not None
    async with (
        bench.cairn_client(conns=CLIENTS) as c,
        native.client(conns=CLIENTS) as plain,
    ):
        bucket = f"bench-{secrets.token_hex(6)}"
        r = await c.post("/v1/buckets", json={"name": bucket, "public": False})
        r.raise_for_status()
        bodies = [os.urandom(SIZE) for _ in range(GET_OBJECTS)]

        async def put(k: int) -> dict[str, Any]:
            r = await c.put(f"/v1/buckets/{bucket}/objects/h/{k}", content=bodies[k])
            r.raise_for_status()
            return dict(r.json())

        # Set up at the client's concurrency (the pool holds CLIENTS connections).
        stored = await asyncio.gather(*(put(k) for k in range(GET_OBJECTS)))
        file_ids = [o["id"] for o in stored]
        if bench.nginx:
            for k, body in enumerate(bodies):
                (bench.nginx.data_dir / f"head-{k}.bin").write_bytes(body)
        # Every way must answer the stored object's head, or its rate means nothing.
        etag = stored[0]["etag"]
        _head_ok(await c.head(f"/v1/buckets/{bucket}/objects/h/0"), "object HEAD", etag)
        _head_ok(await c.head(f"/v1/files/{file_ids[0]}/content"), "file HEAD", etag)
        if (await c.get(f"/v1/buckets/{bucket}/objects/h/0")).content != bodies[0]:
            raise AssertionError("the object GET served other bytes")
        if bench.nginx:
            _head_ok(await plain.head(bench.nginx.get_url("head-0.bin")), "nginx HEAD")
        count = max(s.small_files * 4, 4 * CLIENTS)

        async def head_object(i: int) -> None:
            r = await c.head(f"/v1/buckets/{bucket}/objects/h/{i % GET_OBJECTS}")
            if r.status_code != 200:
                raise AssertionError(f"object HEAD: {r.status_code}")

        async def head_file(i: int) -> None:
            r = await c.head(f"/v1/files/{file_ids[i % GET_OBJECTS]}/content")
            if r.status_code != 200:
                raise AssertionError(f"file HEAD: {r.status_code}")

        async def get_object(i: int) -> None:
            r = await c.get(f"/v1/buckets/{bucket}/objects/h/{i % GET_OBJECTS}")
            if r.status_code != 200 or len(r.content) != SIZE:
                raise AssertionError(f"object GET: {r.status_code}")

        ops: dict[str, Callable[[int], Awaitable[None]]] = {
            "object": head_object,
            "file": head_file,
            "object GET": get_object,
        }
        if bench.nginx:
            nginx = bench.nginx

            async def head_nginx(i: int, nginx: Nginx = nginx) -> None:
                r = await plain.head(nginx.get_url(f"head-{i % GET_OBJECTS}.bin"))
                if r.status_code != 200:
                    raise AssertionError(f"nginx HEAD: {r.status_code}")

            ops["nginx"] = head_nginx
        # Untimed, whatever the scale: each way opens its client's connections and warms its
        # path once, so that the way measured first (quick mode has no warm-up run) does
        # not pay the 32 connections' set-up that the others then reuse.
        for op in ops.values():
            await _drive(op, 2 * CLIENTS, CLIENTS, s.small_seconds)
        for i, warmup in bench.iterations():
            # The ways take turns going first, so none always meets the warmest caches.
            order = [w for w in HEAD_WAYS[i % 4 :] + HEAD_WAYS[: i % 4] if w in ops]
            for way in order:
                rate, ls = await _drive(ops[way], count, CLIENTS, s.small_seconds)
                if not warmup:
                    rates[way].append(rate)
                    lat[way] += ls
    note = None if bench.nginx else bench.nginx_note
    for way, label in (("object", "4 KiB object HEADs"), ("file", "4 KiB file content HEADs")):
        res.rows.append(
            Row(
                f"{label}, owner's token",
                "HEADs/s",
                rates[way],
                "nginx static HEAD",
                rates["nginx"] or None,
                note,
            )
        )
    h, g = summarize(rates["object"]), summarize(rates["object GET"])
    if h and g:
        res.notes.append(f"object HEAD / GET of the same objects, same run: {h / g:.2f}x")
    res.notes.append(
        "latency p50 / p99, ms: "
        + "; ".join(
            f"{way} {1000 * percentile(lat[way], 50):.1f} / {1000 * percentile(lat[way], 99):.1f}"
            for way in HEAD_WAYS
            if lat[way]
        )
    )
    res.notes.append(
        f"{SIZE} B objects of a private bucket (HEAD /v1/buckets/.../objects/{{key}} and"
        f" /v1/files/{{id}}/content of the same objects), {CLIENTS} concurrent clients,"
        f" keep-alive; at most {count} requests or {s.small_seconds:.0f} s per way and run,"
        " the ways taking turns to go first"
    )


# S3's five stored headers (README, Objects), as `aws s3 cp --content-encoding gzip ...`
# would send them; each is answered on every GET of the object.
STORED_HEADERS = {
    "Cache-Control": "public, max-age=3600",
    "Content-Disposition": 'attachment; filename="report.bin"',
    "Content-Encoding": "gzip",
    "Content-Language": "en-GB",
    "Expires": "Wed, 21 Oct 2026 07:28:00 GMT",
}
HEADER_WAYS = ("with", "without")


async def get_headers(bench: Bench, res: Result) -> None:
    """4 KiB object GETs of objects with the five stored headers against the same GETs of
    objects without them, from the same client and concurrency as objects.get_4k, in the
    same runs (the two take turns to go first, so neither always meets the warmest
    caches). The bodies are read raw: the stored `Content-Encoding: gzip` is not the
    bytes' (Cairn never decodes them), and httpx would try to inflate them."""
    s = bench.scale
    rates: dict[str, list[float]] = {w: [] for w in HEADER_WAYS}
    lat: dict[str, list[float]] = {w: [] for w in HEADER_WAYS}
    assert bench.cairn is not None
    async with bench.cairn_client(conns=CLIENTS) as c:
        bucket = f"bench-{secrets.token_hex(6)}"
        r = await c.post("/v1/buckets", json={"name": bucket, "public": False})
        r.raise_for_status()
        bodies = [os.urandom(SIZE) for _ in range(GET_OBJECTS)]

        async def put(way: str, k: int) -> None:
            headers = STORED_HEADERS if way == "with" else {}
            url = f"/v1/buckets/{bucket}/objects/{way}/{k}"
            (await c.put(url, content=bodies[k], headers=headers)).raise_for_status()

        # Set up at the client's concurrency (the pool holds CLIENTS connections).
        await asyncio.gather(*(put(w, k) for w in HEADER_WAYS for k in range(GET_OBJECTS)))

        async def get(way: str, i: int) -> tuple[httpx.Headers, bytes]:
            async with c.stream("GET", f"/v1/buckets/{bucket}/objects/{way}/{i}") as r:
                body = b"".join([piece async for piece in r.aiter_raw()])
            if r.status_code != 200 or len(body) != SIZE:
                raise AssertionError(f"GET {way} headers: {r.status_code}, {len(body)} B")
            return r.headers, body

        # Both ways must serve the stored bytes, and only one the stored headers, or the
        # ratio means nothing.
        with_headers, body = await get("with", 0)
        if body != bodies[0] or (await get("without", 0))[1] != bodies[0]:
            raise AssertionError("a GET served other bytes")
        for name, value in STORED_HEADERS.items():
            if with_headers.get(name) != value:
                raise AssertionError(f"the stored {name} came back as {with_headers.get(name)}")
        without, _ = await get("without", 0)
        if any(without.get(n) == v for n, v in STORED_HEADERS.items()):
            raise AssertionError(f"an object stored without headers answered some: {without}")
        count = max(s.small_files * 4, 4 * CLIENTS)

        async def with_them(i: int) -> None:
            await get("with", i % GET_OBJECTS)

        async def without_them(i: int) -> None:
            await get("without", i % GET_OBJECTS)

        ops = {"with": with_them, "without": without_them}
        # Untimed, whatever the scale: the client's 32 connections opened and both paths
        # warmed once, so the way measured first does not pay for them (quick mode has no
        # warm-up run).
        for op in ops.values():
            await _drive(op, 2 * CLIENTS, CLIENTS, s.small_seconds)
        for i, warmup in bench.iterations():
            for way in HEADER_WAYS if i % 2 == 0 else HEADER_WAYS[::-1]:
                rate, ls = await _drive(ops[way], count, CLIENTS, s.small_seconds)
                if not warmup:
                    rates[way].append(rate)
                    lat[way] += ls
    res.rows.append(
        Row(
            "4 KiB object GETs with the five stored headers, owner's token",
            "GETs/s",
            rates["with"],
            "the same GETs without stored headers",
            rates["without"],
        )
    )
    if lat["with"] and lat["without"]:
        res.notes.append(
            "latency p50 / p99, ms: "
            + "; ".join(
                f"{way} {1000 * percentile(lat[way], 50):.1f} /"
                f" {1000 * percentile(lat[way], 99):.1f}"
                for way in HEADER_WAYS
            )
        )
    res.notes.append(
        f"{SIZE} B objects of a private bucket, {GET_OBJECTS} stored with"
        f" {', '.join(STORED_HEADERS)} and {GET_OBJECTS} without; {CLIENTS} concurrent clients,"
        f" keep-alive; at most {count} GETs or {s.small_seconds:.0f} s per way and run, the two"
        " taking turns to go first"
    )


SCENARIOS = [
    Scenario(
        "objects.put_4k",
        "4 KiB object PUTs/s from 32 clients: one PUT = one command, vs nginx WebDAV PUT",
        put_4k,
        needs=frozenset({"nginx"}),
    ),
    Scenario(
        "objects.put_4k_quota",
        "4 KiB object PUTs/s from 32 lean clients by a user with a quota vs one without",
        put_4k_quota,
    ),
    Scenario(
        "objects.put_digest",
        "a large object PUT with Content-MD5, with x-amz-checksum-sha256, vs without a digest",
        put_digest,
    ),
    Scenario(
        "objects.copy",
        "copies/s of one large object (x-amz-copy-source) vs nginx WebDAV COPY of the file",
        copy,
        needs=frozenset({"nginx"}),
    ),
    Scenario(
        "objects.get_4k",
        "4 KiB private-object GETs/s from 32 clients, by token and by signed URL, vs nginx",
        get_4k,
        needs=frozenset({"nginx"}),
    ),
    Scenario(
        "objects.get_headers",
        "4 KiB object GETs/s of objects with the five stored headers vs the same without them",
        get_headers,
    ),
    Scenario(
        "objects.head_4k",
        "HEADs/s of 4 KiB objects and of their files' content from 32 clients, vs nginx HEAD",
        head_4k,
        needs=frozenset({"nginx"}),
    ),
]
