"""How a command ends when it is stopped from outside.

The reader of its output going away (`cairn events | head -1`) ends it quietly with 141
(128 + SIGPIPE, as shell tools), whichever way it prints: before, a table (Rich) exited 1
on its own, and `--json` printed `io_error: Broken pipe`. Ctrl-C is 130, with the advice
to run it again only where that resumes something (uploads, downloads)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(120)]


async def _with_reader_gone(cli: Any, *args: str) -> tuple[int, str]:
    """Run `cairn ARGS` with its stdout a pipe whose reading end is already closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bus.run.cli",
            *args,
            cwd=cli.cwd,
            env=cli.env,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize("json", [False, True])
async def test_a_reader_gone_is_quiet_and_141(cli_for: Any, json: bool) -> None:
    cli = cli_for(f"pipe-{int(json)}")
    assert (await cli("buckets", "create", f"pipe-{int(json)}")).code == 0
    flags = ["--json"] if json else []
    # A listing (one write, then the end) and a stream of events (its writes come as
    # events do: the one the bucket made is the first).
    for args in (["buckets", "ls", *flags], ["events", "--since", "0", *flags]):
        code, err = await _with_reader_gone(cli, *args)
        assert (code, err) == (141, ""), args


async def test_ctrl_c_on_events_says_interrupted_without_a_resume_hint(cli_for: Any) -> None:
    cli = cli_for("ctrl-c-events")
    assert (await cli("buckets", "create", "ctrl-c-events")).code == 0
    # --follow: without it the command stops once caught up, maybe before the Ctrl-C.
    proc = await cli.start("events", "--since", "0", "--follow")
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 60)  # it runs: an event came
    assert b"BucketCreated" in first
    done = await cli.interrupt(proc)
    assert (done.code, done.err) == (130, "cairn: interrupted\n")
