"""SIGKILL every process of `cairn up` while small object PUTs race into the inline tier.

A 4 KiB object's bytes are a row of blobs.inline, and the rows of PUTs that arrive together
are written by one INSERT (bus/blobs/inline_rows.py), so the kill lands with batches in
every state: queued, in flight, committed but unanswered, answered. Started again on the
same data dir: every PUT answered 2xx reads back byte for byte ("a 2xx means durable"),
every other one reads back whole or not at all (never other bytes), and each object's
stream holds its creation once.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from domain.files.keys import object_file_id
from tests.faults.proc import (
    Up,
    bearer,
    cairn_env,
    describe,
    poll,
    run_up,
    send_retrying,
    stop_cleanly,
)

BUCKET = "racing"
OBJECTS = 160
CLIENTS = 32  # PUTs in flight at once: enough for the inline rows to go in batches
KILL_AFTER = 24  # answered PUTs before the kill


@pytest.mark.timeout(300)
async def test_kill_everything_mid_object_puts_keeps_each_acknowledged_one(
    tmp_path: Path, runs: list[Up]
) -> None:
    env = cairn_env(tmp_path / "data")
    db_url = f"postgresql://postgres@127.0.0.1:{env['CAIRN_EMBEDDED_PG_PORT']}/cairn"
    bodies = {f"k/{i}": os.urandom(4096) for i in range(OBJECTS)}

    first = await run_up(env, tmp_path, "up1", runs)
    auth = await bearer(env)

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=first.url, headers=auth, timeout=60, limits=limits) as c:
        r = await send_retrying(c, "POST", "/v1/buckets", json={"name": BUCKET})
        assert r.status_code == 201, r.text
        answered: set[str] = set()
        killed = asyncio.Event()

        async def put(key: str) -> httpx.Response | BaseException:
            try:
                r = await c.put(f"/v1/buckets/{BUCKET}/objects/{key}", content=bodies[key])
            except httpx.TransportError as e:
                return e
            # Counted and killed in the same step as the answer is read: the PUTs still
            # in flight are anywhere between the socket and their batch's commit.
            if r.is_success and not killed.is_set():
                answered.add(key)
                if len(answered) >= KILL_AFTER:
                    first.kill_everything()
                    killed.set()
            return r

        results = dict(zip(bodies, await asyncio.gather(*(put(k) for k in bodies)), strict=True))
    assert killed.is_set(), "every PUT was answered before the kill"
    for key, res in results.items():
        # A 2xx, the bus unavailable, or the connection lost: nothing else.
        if isinstance(res, httpx.Response):
            assert res.is_success or res.status_code == 503, f"{key}: {res.status_code}"
    unanswered = [k for k, res in results.items() if k not in answered]
    assert unanswered, "the kill came after the last PUT"
    await poll(
        "the killed processes to be gone",
        lambda: not first.left(),
        10,
        lambda: describe(first.left()),
    )

    second = await run_up(env, tmp_path, "up2", runs)
    kept: set[str] = set()
    async with httpx.AsyncClient(base_url=second.url, headers=auth, timeout=60) as c:
        for key, body in bodies.items():
            r = await send_retrying(
                c, "GET", f"/v1/buckets/{BUCKET}/objects/{key}", through_refused=False
            )
            if key in answered:
                assert r.status_code == 200, f"acknowledged but lost: {key}: {r.text[:200]}"
            else:
                assert r.status_code in (200, 404), f"{key}: {r.status_code} {r.text[:200]}"
            if r.status_code == 200:
                assert r.content == body, f"{key} reads back other bytes"
                kept.add(key)
    assert answered <= kept

    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, version, event_type FROM eventstore.events"
            " WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version",
            [f"file-{object_file_id(BUCKET, k)}" for k in bodies],
        )
    finally:
        await conn.close()
    created = Counter(r["stream_id"] for r in rows if r["event_type"] == "FileCreated")
    assert created == Counter({f"file-{object_file_id(BUCKET, k)}": 1 for k in kept}), (
        "each object kept is created exactly once, and nothing else is"
    )
    versions: dict[str, list[int]] = {}
    for r in rows:
        versions.setdefault(r["stream_id"], []).append(r["version"])
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())

    await stop_cleanly(second, first)
