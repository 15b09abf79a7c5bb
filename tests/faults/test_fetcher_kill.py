"""SIGKILL the fetch worker process mid-transfer: a restarted worker takes the fetch over
(after the dead one's lease runs out) and resumes from the last recorded byte, not from
zero; the file's sha256 is the origin's."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bus.config.settings import Settings
from tests.api.origins import ended, origin_server
from tests.faults.proc import kind_env, sigkill, start_kind, terminate
from tests.system import start_system, wait_until

KINDS = ("api", "actors", "relay", "projector", "handlers")


def fetcher_process(settings: Settings, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = kind_env(
        settings,
        CAIRN_FETCH_ALLOW_PRIVATE="true",
        CAIRN_FETCH_LEASE="3",
        CAIRN_FETCH_CHUNK_BYTES="16K",
        CAIRN_LOG_LEVEL="info",
        CAIRN_LOG_JSON="false",
        **extra,
    )
    return start_kind("fetcher", env, log)


async def started_fetch(c: httpx.AsyncClient, url: str) -> str:
    """A fetch of `url` accepted: its id."""
    r = await c.post("/v1/fetches", json={"url": url})
    assert r.status_code == 202, r.text
    fid: str = r.json()["id"]
    return fid


async def served(c: httpx.AsyncClient, file_id: str) -> bytes:
    """The file's content, once the read model serves it."""

    async def content() -> bytes | None:
        r = await c.get(f"/v1/files/{file_id}/content")
        return r.content if r.status_code == 200 else None

    got: bytes = await wait_until(content)
    return got


@pytest.mark.timeout(240)
async def test_sigkill_mid_transfer_resumes_from_the_last_durable_byte(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    system = await start_system(
        dataclasses.replace(settings, fetch_allow_private=True), pool, KINDS
    )
    log = tmp_path / "fetcher.log"
    proc = fetcher_process(system.settings, log)
    try:
        async with (
            origin_server(os.urandom(600_000), slow_piece=4096, slow_tick=0.01) as o,
            system.client("kill") as c,
        ):
            fid = await started_fetch(c, o.url("/slow"))

            async def recorded() -> dict[str, Any] | None:
                body = (await c.get(f"/v1/fetches/{fid}")).json()
                return body if body["bytes"] >= 100_000 else None

            before = await wait_until(recorded, timeout=120)
            assert before["status"] == "IN_PROGRESS"
            await sigkill(proc)
            await asyncio.wait_for(o.disconnected.wait(), 30)  # the dead worker's socket closed
            durable = (await c.get(f"/v1/fetches/{fid}")).json()["bytes"]
            assert durable >= before["bytes"] > 0
            o.slow_tick = 0.0
            proc = fetcher_process(system.settings, log)  # the restart

            final = await ended(c, fid)
            assert final["status"] == "COMPLETED", (final, log.read_text()[-3000:])
            assert final["sha256"] == o.sha256 and final["bytes"] == len(o.data)
            # The take-over asked for the rest, from the byte recorded before the kill.
            ranges = [r["range"] for r in o.requests("/slow")]
            assert ranges[0] == "bytes=0-" and ranges[-1] == f"bytes={durable}-", ranges
            assert final["attempts"] == 2  # a second run (the take-over), not a new fetch
            assert await served(c, final["file_id"]) == o.data
    finally:
        await terminate([proc])
        await system.shutdown()


@pytest.mark.timeout(240)
async def test_sigkill_mid_segmented_transfer_resumes_every_segment_where_it_stood(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    system = await start_system(
        dataclasses.replace(settings, fetch_allow_private=True), pool, KINDS
    )
    log = tmp_path / "fetcher.log"
    segmented = {"CAIRN_FETCH_SEGMENTS": "4", "CAIRN_FETCH_SEGMENT_MIN_BYTES": "64K"}
    proc = fetcher_process(system.settings, log, **segmented)
    size = 800_000  # four segments of 200,000 bytes
    bounds = [(k * 200_000, (k + 1) * 200_000) for k in range(4)]
    try:
        async with (
            origin_server(os.urandom(size), slow_piece=2048, slow_tick=0.02) as o,
            system.client("kill-seg") as c,
        ):
            fid = await started_fetch(c, o.url("/slow"))

            async def every_segment_holds_bytes() -> dict[str, Any] | None:
                body = (await c.get(f"/v1/fetches/{fid}")).json()
                segs = body["segments"]
                return body if len(segs) == 4 and all(g["bytes"] > 0 for g in segs) else None

            await wait_until(every_segment_holds_bytes, timeout=120)
            await sigkill(proc)
            await asyncio.wait_for(o.disconnected.wait(), 30)
            held = [g["bytes"] for g in (await c.get(f"/v1/fetches/{fid}")).json()["segments"]]
            assert all(0 < h < 200_000 for h in held), held
            asked = len(o.requests("/slow"))
            o.slow_tick = 0.0
            proc = fetcher_process(system.settings, log, **segmented)  # the restart

            final = await ended(c, fid)
            assert final["status"] == "COMPLETED", (final, log.read_text()[-3000:])
            assert final["sha256"] == o.sha256 and final["bytes"] == size
            # The take-over asked each segment for the rest of its range only: from the
            # byte recorded before the kill, not from the segment's start or from zero.
            resumed = sorted(r["range"] for r in o.requests("/slow")[asked:])
            assert resumed == sorted(
                f"bytes={a + h}-{b - 1}" for (a, b), h in zip(bounds, held, strict=True)
            ), (resumed, held)
            assert await served(c, final["file_id"]) == o.data
    finally:
        await terminate([proc])
        await system.shutdown()
