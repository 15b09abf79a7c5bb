"""SIGKILL the embedded PostgreSQL's postmaster; the supervisor starts it again.

What was acknowledged before the kill is still there (fsync and synchronous_commit are on;
a small file's bytes too, which are a row, not a file),
`/ready` says 503 during the outage and 200 after, reads meanwhile are answered or 503
(never a bare 500), and new commands are served again
without restarting Cairn.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.proc import (
    Up,
    bearer,
    cairn_env,
    poll,
    postgres_pids,
    run_up,
    send_retrying,
)


async def send(c: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """Any 5xx is retried: the database's outage may surface as more than 503."""
    return await send_retrying(c, method, url, retry=lambda status: status >= 500, **kw)


@pytest.mark.timeout(300)
async def test_postgres_killed_is_restarted_and_keeps_what_was_acknowledged(
    tmp_path: Path, runs: list[Up]
) -> None:
    env = cairn_env(tmp_path / "data")
    up = await run_up(env, tmp_path, "up", runs)
    auth = await bearer(env)
    async with httpx.AsyncClient(base_url=up.url, headers=auth, timeout=60) as c:
        body = {"file_name": "a.bin", "file_size": 10, "chunk_size": 10}
        r = await send(c, "POST", "/v1/uploads", json=body)
        assert r.status_code == 201, r.text
        before = r.json()["id"]
        # A small file: its one chunk is a row of blobs.inline (bus/blobs/inline.py), whose
        # commit is all that makes it durable; the kill comes right after the answers.
        small = os.urandom(10)
        r = await send(c, "POST", "/v1/uploads", json=body)
        assert r.status_code == 201, r.text
        upload = r.json()["id"]
        r = await send(c, "PUT", f"/v1/uploads/{upload}/chunks/0", content=small)
        assert r.status_code == 201, r.text
        r = await send(c, "POST", f"/v1/uploads/{upload}/complete")
        assert r.status_code == 200, r.text
        file_id = r.json()["file_id"]

        [postmaster, *_] = postgres_pids(up.data_dir)
        os.kill(postmaster, signal.SIGKILL)

        async def not_ready() -> bool:
            return (await c.get("/ready")).status_code == 503

        await poll("/ready to answer 503", not_ready, 30, up.log)

        async def restarted() -> bool:
            pids = postgres_pids(up.data_dir)
            return bool(pids) and pids[0] != postmaster

        await poll("a new postmaster", restarted, 60, up.log)

        # Reads during the outage: answered, or 503 with Retry-After (the database is
        # unavailable, retry), never a bare 500.
        outage: list[httpx.Response] = []

        async def ready() -> bool:
            outage.append(await c.get(f"/v1/uploads/{before}"))
            return (await c.get("/ready")).status_code == 200

        await poll("/ready to answer 200 again", ready, 60, up.log)
        for r in outage:
            assert r.status_code in (200, 503), r.text
            if r.status_code == 503:
                assert "Retry-After" in r.headers and r.json()["error"]["code"], r.text
        r = await send(c, "GET", f"/v1/uploads/{before}")
        assert r.status_code == 200, r.text
        r = await send(c, "GET", f"/v1/files/{file_id}/content")
        assert r.status_code == 200 and r.content == small, r.text
        # New small blobs are stored again (the tier's pool drops its dead connections).
        r = await send(c, "POST", "/v1/uploads", json=body)
        assert r.status_code == 201, r.text
        after, more = r.json()["id"], os.urandom(10)
        r = await send(c, "PUT", f"/v1/uploads/{after}/chunks/0", content=more)
        assert r.status_code == 201, r.text
        r = await send(c, "POST", f"/v1/uploads/{after}/complete")
        assert r.status_code == 200, r.text
        r = await send(c, "GET", f"/v1/files/{r.json()['file_id']}/content")
        assert r.status_code == 200 and r.content == more, r.text
    assert await up.stop() == 0, up.log()
    await poll("every process gone", lambda: not up.left(), 30, up.log)
