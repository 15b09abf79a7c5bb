"""The fetch worker's completion: the file a plain fetch becomes exists as soon as the fetch
reads COMPLETED, made by the actor in the completion's own step, so a worker that dies
right after the completion's answer leaves nothing for anyone to make up (real Postgres
and broker, no files handler running to make up for it)."""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import pytest

from bus.actors.commandbus import CommandBus, CommandResult
from bus.config.settings import Settings
from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.files.commands import CreateFile
from domain.kernel import Command
from tests.api.origins import ended, origin_server
from tests.system import start_system, wait_until

# No handlers: nothing creates the file from FetchCompleted after the fact.
KINDS = ("api", "actors", "relay", "projector", "fetcher")


class WorkerDied(Exception):
    """Stands for the worker's process dying once the completion was answered."""


@pytest.mark.timeout(120)
async def test_a_completed_fetchs_file_exists_without_the_worker_sending_it(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_after_completion: list[str] = []
    real_send = CommandBus.send

    async def send(self: CommandBus, cmd: Command, *args: Any, **kw: Any) -> CommandResult:
        # The API's commands go through here too: only the fetch's file is refused.
        if isinstance(cmd, CreateFile) and cmd.command_id.startswith("file-from-fetch-"):
            sent_after_completion.append(cmd.command_id)
            raise WorkerDied(cmd.command_id)
        return await real_send(self, cmd, *args, **kw)

    monkeypatch.setattr(CommandBus, "send", send)
    system = await start_system(
        dataclasses.replace(settings, fetch_allow_private=True), pool, KINDS
    )
    store = PostgresEventStore(pool)
    try:
        async with origin_server(b"fetched bytes\n" * 1000) as o, system.client("w") as c:
            r = await c.post("/v1/fetches", json={"url": o.url("/range/notes.txt")})
            assert r.status_code == 202, r.text
            fid = r.json()["id"]
            done = await ended(c, fid, timeout=60)
            assert done["status"] == "COMPLETED", done
            file_id = done["file_id"]
            assert file_id == policies.fetch_file_id(fid)
            # Read at once, no waiting: the completion was answered after the file existed.
            [created] = await store.read_stream(f"file-{file_id}")
            assert created.causation_id == policies.fetch_file_command_id(fid)
            assert created.payload.sha256 == o.sha256  # type: ignore[union-attr]
            assert created.payload.content_type.startswith("text/plain")  # type: ignore[union-attr]
            assert sent_after_completion == []  # the worker had nothing left to send

            async def content() -> bytes | None:
                got = await c.get(f"/v1/files/{file_id}/content")
                return got.content if got.status_code == 200 else None

            assert await wait_until(content) == o.data
    finally:
        await system.shutdown()


class Bug(Exception):
    """Stands for a crash nothing foresaw in a run (a bug, or input no check caught)."""


@pytest.mark.timeout(120)
async def test_a_run_that_crashes_again_and_again_fails_the_fetch(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, the worker picked the crashed fetch up again at once, ten times a second for
    # ever, with the fetch IN_PROGRESS and no last_error.
    from handlers import fetch_run, fetcher

    runs: list[str] = []

    async def crash(self: Any) -> None:
        runs.append(self.fetch_id)
        raise Bug("boom")

    monkeypatch.setattr(fetch_run.FetchRun, "execute", crash)
    system = await start_system(
        dataclasses.replace(settings, fetch_allow_private=True), pool, KINDS
    )
    try:
        async with origin_server(b"x" * 1000) as o, system.client("crashy") as c:
            r = await c.post("/v1/fetches", json={"url": o.url("/range/x.bin")})
            assert r.status_code == 202, r.text
            fid = r.json()["id"]

            async def finished() -> dict[str, Any] | None:
                body = (await c.get(f"/v1/fetches/{fid}")).json()
                return body if body["status"] not in ("PENDING", "IN_PROGRESS") else None

            done = await wait_until(finished, timeout=60)
            assert done["status"] == "FAILED", done
            assert "failed 3 times: Bug" in done["last_error"]
            assert runs == [fid] * fetcher.MAX_CRASHES
            events = await PostgresEventStore(pool).read_stream(f"fetch-{fid}")
            assert events[-1].data["details"] == {"code": "worker_failed", "crashes": 3}
    finally:
        await system.shutdown()
