"""A running Cairn for the client tests, and a way to run `cairn` against it as a
subprocess (the way a user does), with its own cache and config dirs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.system import System, isolated_system

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
async def system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as s:
        yield s


@dataclass
class Done:
    code: int
    out: str
    err: str


class Cli:
    """`cairn ...` in a subprocess; the server runs in this test's event loop, so the
    subprocess is awaited, never waited for with a blocking call."""

    def __init__(self, system: System, home: Path, user: str) -> None:
        self.system = system
        self.env = {
            **os.environ,
            "CAIRN_URL": system.url,
            "CAIRN_TOKEN": system.token(user),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "COLUMNS": "200",
        }
        # Where the command runs (a test that downloads to a default name, or to `-`,
        # sets a directory of its own: never the checkout).
        self.cwd = ROOT
        # A command to run it under (`setpriv ...`: a test of unreadable files, as root).
        self.prefix: list[str] = []

    async def start(
        self, *args: str, stdin: int | None = None, **env: str
    ) -> asyncio.subprocess.Process:
        """`stdin`: asyncio.subprocess.PIPE (written with `proc.stdin`), or a file
        descriptor (a pty's); by default this process's own."""
        return await asyncio.create_subprocess_exec(
            *self.prefix,
            sys.executable,
            "-m",
            "bus.run.cli",
            *args,
            cwd=self.cwd,
            env={**self.env, **env},
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def finish(self, proc: asyncio.subprocess.Process) -> Done:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return Done(proc.returncode, out.decode(), err.decode())

    async def __call__(self, *args: str, **env: str) -> Done:
        done = await self.finish(await self.start(*args, **env))
        assert "Traceback" not in done.err, done.err
        return done

    async def interrupt(self, proc: asyncio.subprocess.Process) -> Done:
        proc.send_signal(signal.SIGINT)
        return await self.finish(proc)

    async def uploaded(self, path: Path, size: int) -> tuple[str, bytes]:
        """`size` random bytes written to `path` and sent with `cairn upload`: the new
        file's id and its bytes."""
        data = os.urandom(size)
        path.write_bytes(data)
        done = await self("upload", str(path), "--json")
        assert done.code == 0, done.err
        return json.loads(done.out)["files"][0]["file_id"], data


@pytest.fixture
def cli_for(system: System, tmp_path: Path) -> Any:
    def make(user: str) -> Cli:
        return Cli(system, tmp_path / "home", user)

    return make
