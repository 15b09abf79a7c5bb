"""Origin servers for the fetch tests: one aiohttp app on loopback with a route per behaviour.

Each route records the requests it saw (path, Range, If-Range) so tests can check what the
fetch worker asked for; events let tests await "the client went away" instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from tests.ports import free_port
from tests.system import wait_until

# The settings of a system whose fetches run against these origins (on loopback: private
# addresses allowed) quickly: a short lease and back-off, few retries, small appends, and
# room for the many fetches one test module runs at once.
QUICK_FETCHES: dict[str, Any] = {
    "fetch_allow_private": True,
    "fetch_lease": 3.0,
    "fetch_chunk_bytes": 64 * 1024,
    "fetch_backoff": 0.05,
    "fetch_retries": 3,
    "fetch_per_owner": 50,
    "fetch_concurrency": 50,
}


async def until(
    c: httpx.AsyncClient, fid: str, *statuses: str, timeout: float = 120
) -> dict[str, Any]:
    """The fetch `fid` as GET /v1/fetches/{id} answers it, once its status is one of
    `statuses` (within `timeout` seconds)."""

    async def check() -> dict[str, Any] | None:
        body = (await c.get(f"/v1/fetches/{fid}")).json()
        return body if body["status"] in statuses else None

    return await wait_until(check, timeout=timeout)  # type: ignore[no-any-return]


async def ended(c: httpx.AsyncClient, fid: str, timeout: float = 120) -> dict[str, Any]:
    """The fetch `fid` once it COMPLETED or FAILED (within `timeout` seconds)."""
    return await until(c, fid, "COMPLETED", "FAILED", timeout=timeout)


@dataclass
class Origin:
    port: int
    data: bytes
    host: str = "127.0.0.1"
    seen: list[dict[str, str | None]] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    counts: dict[str, int] = field(default_factory=dict)
    # /changing serves this version; tests flip it
    version: int = 1
    # /slow: how many bytes per tick and the tick length
    slow_piece: int = 4096
    slow_tick: float = 0.02
    drop_after: int = 100_000
    # /range answers 500 to any Range that does not start at 0 while this is set
    fail_ranges: bool = False

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def requests(self, path: str) -> list[dict[str, str | None]]:
        return [r for r in self.seen if r["path"] == path]


def _range(request: web.Request, etag: str, size: int) -> tuple[int, int] | None:
    """`Range: bytes=a-` or `bytes=a-b` -> (a, b inclusive), None for the whole body."""
    rng = request.headers.get("Range")
    if not rng or not rng.startswith("bytes=") or "," in rng:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range != etag:
        return None  # the validator does not match: the whole (new) representation
    first, _, last = rng[6:].partition("-")
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= size else None


async def _serve(
    request: web.Request,
    origin: Origin,
    data: bytes,
    etag: str,
    *,
    ranges: bool = True,
    drop_at: int | None = None,
    slow: bool = False,
    length: int | str | None = "exact",
) -> web.StreamResponse:
    rng = _range(request, etag, len(data)) if ranges else None
    start = rng[0] if rng is not None else None
    if start is not None and start == len(data):
        return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
    resp = web.StreamResponse(status=206 if start is not None else 200)
    resp.headers["ETag"] = etag
    resp.headers["Content-Type"] = "application/octet-stream"
    if ranges:
        resp.headers["Accept-Ranges"] = "bytes"
    body = data[rng[0] : rng[1] + 1] if rng is not None else data
    if rng is not None:
        resp.headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{len(data)}"
    if length == "exact":
        resp.content_length = len(body)
    elif isinstance(length, int):
        resp.content_length = length
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    sent = 0
    step = origin.slow_piece if slow else 65536
    try:
        while sent < len(body):
            piece = body[sent : sent + step]
            if drop_at is not None and sent + len(piece) >= drop_at:
                await resp.write(piece[: drop_at - sent])
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(piece)
            sent += len(piece)
            if slow:
                await asyncio.sleep(origin.slow_tick)
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        origin.disconnected.set()
        raise
    return resp


def _app(origin: Origin) -> web.Application:
    async def record(request: web.Request) -> None:
        origin.seen.append(
            {
                "path": request.path,
                "range": request.headers.get("Range"),
                "if_range": request.headers.get("If-Range"),
            }
        )
        origin.counts[request.path] = origin.counts.get(request.path, 0) + 1

    async def ranged(request: web.Request) -> web.StreamResponse:
        await record(request)
        rng = request.headers.get("Range") or ""
        if origin.fail_ranges and rng and not rng.startswith("bytes=0-"):
            return web.Response(status=500, text="no")
        return await _serve(request, origin, origin.data, '"v1"')

    async def norange(request: web.Request) -> web.StreamResponse:
        await record(request)
        first = origin.counts[request.path] == 1
        return await _serve(
            request, origin, origin.data, '"v1"', ranges=False,
            drop_at=origin.drop_after if first else None,
        )  # fmt: skip

    async def drop(request: web.Request) -> web.StreamResponse:
        await record(request)
        first = origin.counts[request.path] == 1
        return await _serve(
            request, origin, origin.data, '"v1"', drop_at=origin.drop_after if first else None
        )

    async def changing(request: web.Request) -> web.StreamResponse:
        await record(request)
        first = origin.counts[request.path] == 1
        data = origin.data if origin.version == 1 else origin.data[::-1]
        resp = await _serve(
            request, origin, data, f'"v{origin.version}"',
            drop_at=origin.drop_after if first else None,
        )  # fmt: skip
        origin.version = 2  # every later request sees another version of the resource
        return resp

    async def capped(request: web.Request) -> web.StreamResponse:
        """Ranges served, but every answer breaks off after `drop_after` bytes."""
        await record(request)
        return await _serve(request, origin, origin.data, '"v1"', drop_at=origin.drop_after)

    async def slow(request: web.Request) -> web.StreamResponse:
        await record(request)
        return await _serve(request, origin, origin.data, '"v1"', slow=True)

    async def nolength(request: web.Request) -> web.StreamResponse:
        await record(request)
        return await _serve(request, origin, origin.data, '"v1"', ranges=False, length=None)

    async def lie_more(request: web.Request) -> web.StreamResponse:
        """Announces more bytes than it sends, then closes."""
        await record(request)
        return await _serve(
            request, origin, origin.data, '"v1"', ranges=False, length=len(origin.data) + 1000,
            drop_at=len(origin.data),
        )  # fmt: skip

    async def lie_less(request: web.Request) -> web.StreamResponse:
        """Announces fewer bytes than it has: HTTP framing ends the body at the length."""
        await record(request)
        return await _serve(
            request, origin, origin.data, '"v1"', ranges=False, length=len(origin.data) // 2
        )

    async def redirect(request: web.Request) -> web.StreamResponse:
        await record(request)
        n = int(request.match_info["n"])
        target = "/range" if n <= 1 else f"/redirect/{n - 1}"
        raise web.HTTPFound(target)

    async def redirect_to(request: web.Request) -> web.StreamResponse:
        await record(request)
        raise web.HTTPFound(request.query["to"])

    async def status(request: web.Request) -> web.StreamResponse:
        await record(request)
        code = int(request.match_info["code"])
        if code in (429, 503) and origin.counts[request.path] > 1:
            return await _serve(request, origin, origin.data, '"v1"')
        headers = {"Retry-After": "1"} if code in (429, 503) else {}
        return web.Response(status=code, text="no", headers=headers)

    app = web.Application()
    app.router.add_get("/range", ranged)
    app.router.add_get("/range/{name}", ranged)
    app.router.add_get("/norange", norange)
    app.router.add_get("/drop", drop)
    app.router.add_get("/changing", changing)
    app.router.add_get("/slow", slow)
    app.router.add_get("/capped", capped)
    app.router.add_get("/nolength", nolength)
    app.router.add_get("/lie-more", lie_more)
    app.router.add_get("/lie-less", lie_less)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/redirect-to", redirect_to)
    app.router.add_get("/status/{code}", status)
    return app


@asynccontextmanager
async def origin_server(
    data: bytes | None = None, host: str = "127.0.0.1", **kw: object
) -> AsyncIterator[Origin]:
    """An origin on `host` (any 127.x.y.z works on Linux: tests that allow one loopback
    address for fetches serve from 127.0.0.2 and keep 127.0.0.1 as the refused one)."""
    origin = Origin(
        port=free_port(host), data=data if data is not None else os.urandom(300_000), host=host
    )
    for k, v in kw.items():
        setattr(origin, k, v)
    runner = web.AppRunner(_app(origin), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind((host, origin.port))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield origin
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
