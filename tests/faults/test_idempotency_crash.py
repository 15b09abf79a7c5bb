"""An API process SIGKILLed in the middle of a create: the client's retry with the same
Idempotency-Key goes ahead within seconds (not after a ten-minute timeout), answers with the
upload the dead request started, and nothing is applied twice.

The API runs as a real subprocess (`cairn run api`) next to an in-process system on the
session's embedded Postgres and broker; the actors are stopped while the create is sent, so
the request is provably in flight (its key claimed, its command published, no answer yet)
when the process is killed."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.idempotency import LEASE
from tests.faults.proc import kind_env, sigkill, start_kind
from tests.ports import free_port
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

BODY = {"file_name": "crash.bin", "file_size": 3000, "chunk_size": 1000}


def _api_env(system: System, port: int, data_dir: Path) -> dict[str, str]:
    return kind_env(
        system.settings,
        CAIRN_HOST="127.0.0.1",
        CAIRN_PORT=str(port),
        CAIRN_DATA_DIR=str(data_dir),
        CAIRN_COMMAND_TIMEOUT="60",
        CAIRN_LOG_LEVEL="warning",
    )


async def _start_api(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    proc = await asyncio.to_thread(start_kind, "api", env, log, own_group=True)
    url = f"http://127.0.0.1:{env['CAIRN_PORT']}/health"

    async def healthy() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(url)).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(healthy, timeout=60, interval=0.1)
    return proc


async def _crash_mid_create(
    system: System, proc: subprocess.Popen[bytes], port: int, user: str, key: str
) -> None:
    """Send a create with `key` to the subprocess API, and SIGKILL it while the request
    waits for the actors' answer (they are stopped), after its key was claimed."""
    await system.stop("actors")
    headers = {"Authorization": f"Bearer {system.token(user)}", "Idempotency-Key": key}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
        pending = asyncio.create_task(c.post("/v1/uploads", json=BODY, headers=headers))

        async def claimed() -> bool:
            return bool(
                await system.pool.fetchval(
                    "SELECT 1 FROM api.idempotency_keys"
                    " WHERE owner = $1 AND key = $2 AND completed_at IS NULL",
                    user,
                    key,
                )
            )

        await wait_until(claimed)
        await sigkill(proc, group=True)
        with pytest.raises(httpx.TransportError):
            await pending  # the client never got an answer
    system.start("actors")


async def _retry(base_url: str, token: str, key: str) -> tuple[httpx.Response, int]:
    """Retry like a client: again while the key is in progress; (answer, 409s seen)."""
    in_progress = 0
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as c:

        async def answered() -> httpx.Response | None:
            nonlocal in_progress
            r = await c.post("/v1/uploads", json=BODY, headers=headers)
            if r.status_code == 409 and r.json()["error"]["code"] == (
                "idempotency_request_in_progress"
            ):
                in_progress += 1
                return None
            return r

        # Deadline far below the old ten-minute takeover; the lease is LEASE.
        r = await wait_until(answered, timeout=LEASE.total_seconds() * 6, interval=0.25)
    return r, in_progress


async def _uploads_of(system: System, user: str) -> list[str]:
    rows = await system.pool.fetch(
        "SELECT stream_id FROM eventstore.events WHERE event_type = 'UploadInitiated'"
        " AND owner = $1",
        user,
    )
    return [r["stream_id"].removeprefix("upload-") for r in rows]


async def test_a_create_cut_off_by_a_crash_is_retried_with_its_key(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str, tmp_path: Path
) -> None:
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as system:
        port = free_port()
        env = _api_env(system, port, tmp_path / "api-data")
        log = tmp_path / "api.log"
        proc = await _start_api(env, log)
        try:
            # 1. Retried through another API process: the dead holder's lease runs out.
            user, key = "crash-a", "key-a"
            await _crash_mid_create(system, proc, port, user, key)
            killed_at = time.monotonic()
            r, waited = await _retry(system.url, system.token(user), key)
            took = time.monotonic() - killed_at
            assert r.status_code == 201, r.text
            upload_id = r.json()["id"]
            print(f"retry through another process: {took:.1f} s after the kill, {waited} x 409")

            # The dead request's command went through once the actors were back, or the
            # retry's did: one upload either way, and it is the one the retry names.
            async def one_upload() -> list[str]:
                return await _uploads_of(system, user)

            assert await wait_until(one_upload) == [upload_id]
            replay = await _retry(system.url, system.token(user), key)
            assert replay[0].content == r.content
            assert replay[0].headers["idempotent-replayed"] == "true"

            # 2. Retried through the restarted process (same host and port): it frees the
            # claims of the process it replaces as it starts, so the first retry goes ahead.
            proc = await _start_api(env, log)
            user, key = "crash-b", "key-b"
            await _crash_mid_create(system, proc, port, user, key)
            proc = await _start_api(env, log)
            r, waited = await _retry(f"http://127.0.0.1:{port}", system.token(user), key)
            assert r.status_code == 201, r.text
            assert waited == 0
            assert await wait_until(lambda: _uploads_of(system, user)) == [r.json()["id"]]
            # Exactly one upload per user: nothing applied twice.
            for who in ("crash-a", "crash-b"):
                assert len(await _uploads_of(system, who)) == 1
        finally:
            await sigkill(proc, group=True)
