"""SIGKILL the task worker process mid-compress and mid-extract: a restarted worker takes
the task over once the dead one's lease runs out, and the task completes once, with one
result file (compress) and every member created exactly once (extract)."""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bus.config.settings import Settings
from domain.tasks.ids import item_file_id, result_file_id
from tests.api.tasks_helpers import clone_files, finished, start, upload
from tests.archives import zip_of
from tests.faults.proc import kind_env, sigkill, start_kind, terminate
from tests.system import System, start_system, wait_until

KINDS = ("api", "actors", "relay", "projector", "handlers")


def worker_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = kind_env(
        settings,
        CAIRN_TASK_LEASE_SECONDS="3",
        CAIRN_DEFAULT_CHUNK_BYTES="1048576",
        CAIRN_LOG_LEVEL="info",
        CAIRN_LOG_JSON="false",
    )
    return start_kind("tasks", env, log)


@asynccontextmanager
async def killable(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[tuple[System, list[subprocess.Popen[bytes]], Path]]:
    system = await start_system(settings, pool, KINDS)
    log = tmp_path / "tasks.log"
    procs = [worker_process(system.settings, log)]
    try:
        yield system, procs, log
    finally:
        await terminate(procs)
        await system.shutdown()


async def kill_when(
    c: httpx.AsyncClient, tid: str, procs: list[subprocess.Popen[bytes]], ready: Any
) -> dict[str, Any]:
    async def progressed() -> dict[str, Any] | None:
        t = (await c.get(f"/v1/tasks/{tid}")).json()
        return t if t["status"] == "RUNNING" and ready(t) else None

    try:
        before = await wait_until(progressed, timeout=120)
    except TimeoutError:
        raise AssertionError((await c.get(f"/v1/tasks/{tid}")).json()) from None
    await sigkill(procs[0])
    return before  # type: ignore[no-any-return]


async def count(pool: asyncpg.Pool, sql: str, *args: Any) -> int:
    return int(await pool.fetchval(sql, *args))


@pytest.mark.timeout(300)
async def test_sigkill_mid_compress_completes_once_with_one_result(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with killable(settings, pool, tmp_path) as (system, procs, log):
        async with system.client("zipper") as c:
            seed = await upload(c, os.urandom(2 << 20), "seed.bin")
            ids = [seed, *await clone_files(system.pool, c, "zipper", seed, 19, "f")]
            tid = await start(
                c, {"type": "compress", "params": {"files": ids, "output": {"file_name": "a.zip"}}}
            )
            await kill_when(c, tid, procs, lambda t: t["progress"]["bytes_done"] > 0)
            procs.append(worker_process(system.settings, log))  # the restart
            procs.pop(0)
            t = await finished(c, tid, timeout=180)
            assert t["status"] == "COMPLETED", (t, log.read_text()[-3000:])
            assert t["attempts"] == 2 and t["result_file_ids"] == [result_file_id(tid)]
            created = await count(
                system.pool,
                "SELECT count(*) FROM eventstore.events WHERE event_type = 'FileCreated'"
                " AND owner = 'zipper'",
            )
            assert created == 20 + 1  # the sources and one archive
            body = (await c.get(f"/v1/files/{result_file_id(tid)}/content")).content
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                assert z.testzip() is None and len(z.namelist()) == 20


@pytest.mark.timeout(300)
async def test_sigkill_mid_extract_creates_every_member_once(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    n = 150
    members = {f"m/{i:04d}.bin": os.urandom(64 * 1024) for i in range(n)}
    async with killable(settings, pool, tmp_path) as (system, procs, log):
        async with system.client("unzipper") as c:
            archive = await upload(c, zip_of(members), "many.zip")
            tid = await start(c, {"type": "extract", "params": {"file": archive}})
            before = await kill_when(c, tid, procs, lambda t: t["progress"]["items_done"] > 0)
            assert before["progress"]["items_done"] < n
            procs.append(worker_process(system.settings, log))
            procs.pop(0)
            t = await finished(c, tid, timeout=180)
            assert t["status"] == "COMPLETED", (t, log.read_text()[-3000:])
            assert t["attempts"] == 2
            assert [r["index"] for r in t["results"]] == list(range(n))
            assert [r["result"] for r in t["results"]] == [item_file_id(tid, i) for i in range(n)]
            created = await count(
                system.pool,
                "SELECT count(*) FROM eventstore.events WHERE event_type = 'FileCreated'"
                " AND owner = 'unzipper'",
            )
            assert created == 1 + n  # the archive and each member once
            got = (await c.get(f"/v1/files/{item_file_id(tid, n - 1)}")).json()
            assert got["metadata"]["archive_path"] == f"m/{n - 1:04d}.bin"
