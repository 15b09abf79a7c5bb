"""The "bare streaming endpoint" baseline: the least a Python upload endpoint must do.

A plain ASGI app under uvicorn (the same server, event loop and HTTP parser as Cairn's
API): `PUT /upload/NAME` streams the body into a file while hashing it with sha256, fsyncs
it, renames it into place and answers with the digest. No framework, no auth, no database,
no bus. Whatever Cairn spends beyond this on an upload is the price of its features.

Run: `BENCH_BARE_DIR=/some/dir python -m uvicorn tests.bench.bare_app:app --port N`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("BENCH_BARE_DIR", "."))
_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


async def _respond(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            ROOT.mkdir(parents=True, exist_ok=True)
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    if scope["method"] == "GET" and path == "/health":
        await _respond(send, 200, {"status": "ok"})
        return
    name = path.removeprefix("/upload/")
    if scope["method"] != "PUT" or name == path or not _NAME.fullmatch(name):
        await _respond(send, 404, {"error": "not found"})
        return
    final = ROOT / name
    tmp = ROOT / f".{name}.part"
    hasher = hashlib.sha256()
    size = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                os.close(fd)
                fd = -1
                tmp.unlink(missing_ok=True)
                return
            body = msg.get("body", b"")
            if body:
                hasher.update(body)
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                size += len(body)
            if not msg.get("more_body", False):
                break
        os.fsync(fd)
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, final)
    await _respond(send, 201, {"sha256": hasher.hexdigest(), "size": size})
