"""An API process SIGKILLed in the middle of a create: the client's retry with the same
Idempotency-Key goes ahead within seconds (not after a ten-minute timeout), answers with the
upload the dead request started, and nothing is applied twice.

The API runs as a real subprocess (`cairn run api`) next to an in-process system on the
session's embedded Postgres and broker; the actors are stopped while the create is sent, so
the request is provably in flight (its key claimed, its command published, no answer yet)
when the process is killed."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.idempotency import LEASE, RENEW_EVERY
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


async def _start_api(
    env: dict[str, str], log: Path, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """`cairn run api` with `env`, once it answers /health; kept in `procs` from the start
    (the test's end SIGKILLs every one of them, also one that never came up)."""
    proc = await asyncio.to_thread(start_kind, "api", env, log, own_group=True)
    procs.append(proc)
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
        procs: list[subprocess.Popen[bytes]] = []
        port, port_b = free_port(), free_port()
        env = _api_env(system, port, tmp_path / "api-data")
        # Part 2's two processes listen on a port of their own, so that the first of them
        # starts while part 1 waits out the dead process's lease (about 2 s of the test): a
        # starting API process frees the claims of its predecessor at its own host and port
        # only (api/app.py), never those of part 1's dead process, which must expire.
        env_b = _api_env(system, port_b, tmp_path / "api-data")
        log, log_b = tmp_path / "api.log", tmp_path / "api-b.log"
        starting_b: asyncio.Task[subprocess.Popen[bytes]] | None = None
        proc = await _start_api(env, log, procs)
        try:
            # 1. Retried through another API process: the dead holder's lease runs out.
            user, key = "crash-a", "key-a"
            await _crash_mid_create(system, proc, port, user, key)
            killed_at = time.monotonic()
            starting_b = asyncio.create_task(_start_api(env_b, log_b, procs))
            r, waited = await _retry(system.url, system.token(user), key)
            took = time.monotonic() - killed_at
            assert r.status_code == 201, r.text
            upload_id = r.json()["id"]
            print(f"retry through another process: {took:.1f} s after the kill, {waited} x 409")
            # Once the lease ran out (the claim was killed before its first renewal), not
            # sooner: nothing else freed it, part 2's process starting meanwhile included.
            assert took >= LEASE.total_seconds() - RENEW_EVERY, took

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
            proc = await starting_b
            user, key = "crash-b", "key-b"
            await _crash_mid_create(system, proc, port_b, user, key)
            proc = await _start_api(env_b, log_b, procs)
            r, waited = await _retry(f"http://127.0.0.1:{port_b}", system.token(user), key)
            assert r.status_code == 201, r.text
            assert waited == 0
            assert await wait_until(lambda: _uploads_of(system, user)) == [r.json()["id"]]
            # Exactly one upload per user: nothing applied twice.
            for who in ("crash-a", "crash-b"):
                assert len(await _uploads_of(system, who)) == 1
        finally:
            if starting_b is not None and not starting_b.done():
                starting_b.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting_b
            for p in procs:
                await sigkill(p, group=True)
