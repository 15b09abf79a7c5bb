"""The client side of Cairn's native upload API (and of the bare endpoint), over httpx.

Bodies stream from the test file on disk in 1 MiB pieces (os.pread): however big the file,
the client holds about one piece per request in flight. Every PUT carries Content-Length, so
nothing is sent chunked. Timings are split into create / chunk PUTs / complete, which shows
where an upload's time goes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.bench.core import MiB

# A chunk PUT answered 503 is sent again at most this many times (see native_upload); the
# `cairn` client sends one up to 20 times.
RETRIES_503 = 10

PIECE = 1 * MiB
TIMEOUT = httpx.Timeout(300.0, connect=10.0)
READY_TIMEOUT = 90.0


def client(
    base_url: str = "", headers: dict[str, str] | None = None, conns: int = 64
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers or {},
        timeout=TIMEOUT,
        limits=httpx.Limits(max_connections=conns, max_keepalive_connections=conns),
    )


async def file_pieces(path: Path, offset: int, length: int) -> AsyncIterator[bytes]:
    """Bytes [offset, offset+length) of `path` in PIECE-sized reads."""
    fd = os.open(path, os.O_RDONLY)
    try:
        end = offset + length
        while offset < end:
            data = os.pread(fd, min(PIECE, end - offset), offset)
            if not data:
                raise OSError(f"{path} ended at {offset}, expected {end}")
            offset += len(data)
            yield data
    finally:
        os.close(fd)


@dataclass
class UploadTiming:
    file_id: str
    size: int
    seconds: float
    create: float
    complete: float
    chunk_size: int
    puts: list[float] = field(default_factory=list)
    retries: int = 0  # chunk PUTs sent again after a 503 (their time counts)


def _check(r: httpx.Response, what: str) -> None:
    if r.is_error:
        raise RuntimeError(f"{what}: HTTP {r.status_code} {r.text[:300]}")


async def native_upload(
    c: httpx.AsyncClient, path: Path, *, name: str, size: int | None = None
) -> UploadTiming:
    """Upload the file through POST /v1/uploads, PUT every chunk in order, complete.

    The chunk size is the server's default (what a client that does not choose gets)."""
    size = path.stat().st_size if size is None else size
    t0 = time.perf_counter()
    r = await c.post("/v1/uploads", json={"file_name": name, "file_size": size})
    _check(r, "create upload")
    up = r.json()
    t1 = time.perf_counter()
    chunk = int(up["chunk_size"])
    puts = []
    retries = 0
    for i in range(int(up["total_chunks"])):
        n = min(chunk, size - i * chunk)
        ts = time.perf_counter()
        for attempt in range(RETRIES_503 + 1):
            r = await c.put(
                f"/v1/uploads/{up['id']}/chunks/{i}",
                content=file_pieces(path, i * chunk, n),
                headers={"Content-Length": str(n), "Content-Type": "application/octet-stream"},
            )
            # 503 + Retry-After is Cairn's "retry later" (the `cairn` client does too): a
            # blob store that stalled for a moment, such as the bench's local S3 server
            # under a full run's load. Counted, and its time stays in the figure.
            if r.status_code != 503 or attempt == RETRIES_503:
                break
            retries += 1
            await asyncio.sleep(float(r.headers.get("Retry-After") or 1))
        _check(r, f"PUT chunk {i}")
        puts.append(time.perf_counter() - ts)
    t2 = time.perf_counter()
    r = await c.post(f"/v1/uploads/{up['id']}/complete")
    _check(r, "complete upload")
    t3 = time.perf_counter()
    return UploadTiming(
        file_id=r.json()["file_id"],
        size=size,
        seconds=t3 - t0,
        retries=retries,
        create=t1 - t0,
        complete=t3 - t2,
        chunk_size=chunk,
        puts=puts,
    )


async def native_upload_bytes(c: httpx.AsyncClient, data: bytes, *, name: str) -> str:
    """A small file in one chunk: create, PUT, complete; the file id."""
    r = await c.post("/v1/uploads", json={"file_name": name, "file_size": len(data)})
    _check(r, "create upload")
    upload_id = r.json()["id"]
    r = await c.put(
        f"/v1/uploads/{upload_id}/chunks/0",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    _check(r, "PUT chunk 0")
    r = await c.post(f"/v1/uploads/{upload_id}/complete")
    _check(r, "complete upload")
    return str(r.json()["file_id"])


async def put_file(c: httpx.AsyncClient, url: str, path: Path) -> None:
    """One streaming PUT of the whole file (the bare endpoint; nginx for small files)."""
    size = path.stat().st_size
    r = await c.put(
        url,
        content=file_pieces(path, 0, size),
        headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
    )
    _check(r, f"PUT {url}")


async def put_bytes(c: httpx.AsyncClient, url: str, data: bytes) -> None:
    r = await c.put(url, content=data, headers={"Content-Type": "application/octet-stream"})
    _check(r, f"PUT {url}")


async def wait_commands_flow(c: httpx.AsyncClient) -> float:
    """Right after start-up the actor host may still be joining its consumer group, and the
    first commands time out (503). Retry a tiny upload until one goes through; its seconds."""
    deadline = time.monotonic() + READY_TIMEOUT
    last: Exception | None = None
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        try:
            await native_upload_bytes(c, b"ready?", name="bench-ready")
            return time.monotonic() - t0
        except (RuntimeError, httpx.HTTPError) as e:
            last = e
            await asyncio.sleep(0.5)
    raise TimeoutError(f"no command got through in {READY_TIMEOUT:.0f} s: {last}")
