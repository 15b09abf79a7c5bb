"""Awaiting another process's exit (bus/run/pidwait.py), and a `cairn run` child's watch of
its supervisor built on it (bus/run/cli.py): against real processes, with and without
pidfds."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from bus.run import pidwait
from bus.run.cli import _watch_supervisor

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def sleeper() -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    yield proc
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


def no_pidfds(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(pid: int) -> int:
        raise OSError("pidfd_open: not supported")

    monkeypatch.setattr(os, "pidfd_open", missing)
    monkeypatch.setattr(pidwait, "POLL_INTERVAL", 0.05)


async def still_waiting(task: asyncio.Task[None]) -> bool:
    done, _ = await asyncio.wait({task}, timeout=0.3)
    return not done


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "polling"])
async def test_wait_for_exit_returns_once_the_process_exits(
    sleeper: asyncio.subprocess.Process, monkeypatch: pytest.MonkeyPatch, pidfds: bool
) -> None:
    if not pidfds:
        no_pidfds(monkeypatch)
    task = asyncio.create_task(pidwait.wait_for_exit(sleeper.pid))
    assert await still_waiting(task)
    sleeper.send_signal(signal.SIGKILL)
    await sleeper.wait()  # reaped: without pidfds, kill(0) sees a zombie as alive
    async with asyncio.timeout(10):
        await task


async def test_without_pidfds_alive_says_when_it_is_gone(
    sleeper: asyncio.subprocess.Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_pidfds(monkeypatch)
    there = True
    task = asyncio.create_task(pidwait.wait_for_exit(sleeper.pid, alive=lambda: there))
    assert await still_waiting(task)
    there = False  # the process itself still runs: `alive` alone decides
    async with asyncio.timeout(10):
        await task
    assert sleeper.returncode is None


async def test_a_gone_process_is_not_waited_for() -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    async with asyncio.timeout(5):
        await pidwait.wait_for_exit(proc.pid)


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "polling"])
async def test_a_child_stops_when_its_supervisor_is_gone(
    sleeper: asyncio.subprocess.Process, monkeypatch: pytest.MonkeyPatch, pidfds: bool
) -> None:
    """With a pidfd, the supervisor's exit; without, this process re-parented (the
    supervisor here is not this test's parent, so it reads as re-parented at once)."""
    stop = asyncio.Event()
    if not pidfds:
        no_pidfds(monkeypatch)
    watch = asyncio.create_task(_watch_supervisor(sleeper.pid, stop))
    if pidfds:
        assert await still_waiting(watch) and not stop.is_set()
        sleeper.send_signal(signal.SIGKILL)
    async with asyncio.timeout(10):
        await watch
    assert stop.is_set()
