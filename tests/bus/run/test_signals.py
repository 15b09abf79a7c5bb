"""One SIGINT or SIGTERM, however delivered, stops `cairn up` cleanly with exit 0.

Without a terminal: `cairn up` runs in a new process group, as under a service manager or a
script, and the signal goes to the whole group (every process in it gets one), followed by
the copy a wrapper such as `uv run` or `just` forwards. Every child must then stop on its
own (exit 0), none force-killed, and the supervisor exit 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.faults.proc import CLI, STOP_TIMEOUT, Up, cairn_env, poll

pytestmark = pytest.mark.timeout(240)


def _start(tmp_path: Path, runs: list[Up], argv: list[str], name: str) -> Up:
    env = cairn_env(tmp_path / name)
    env.update(CAIRN_LOG_LEVEL="info", CAIRN_LOG_JSON="true")
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=o, stderr=e, start_new_session=True
        )
    up = Up(proc, out, err, env)
    runs.append(up)
    return up


def _log_events(up: Up) -> list[dict[str, object]]:
    events = []
    for line in up.err.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


async def _signal_group_and_check(up: Up, sig: signal.Signals, forward: bool) -> None:
    await up.wait_up()
    up.processes()
    os.killpg(up.proc.pid, sig)
    if forward:
        # What `uv run` does on top: forward the signal it got to its child.
        up.proc.send_signal(sig)
    try:
        code = up.proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cairn up did not stop\n{up.log()}")
    assert code == 0, up.log()
    events = _log_events(up)
    stopped = [e for e in events if e.get("event") == "child stopped"]
    assert stopped, up.log()
    assert all(e["exit_code"] == 0 for e in stopped), stopped
    kinds = {e["kind"] for e in stopped}
    assert kinds == {"api", "actors", "relay", "projector", "handlers", "tasks", "fetcher"}, kinds
    assert not [e for e in events if e.get("event") == "forcing stop: killing children"]
    await poll("every process gone", lambda: not up.left(), 30, up.log)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_one_signal_to_the_group_stops_cleanly(
    tmp_path: Path, runs: list[Up], sig: signal.Signals
) -> None:
    up = _start(tmp_path, runs, [*CLI, "up"], sig.name)
    await _signal_group_and_check(up, sig, forward=True)


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")
async def test_uv_run_cairn_up_stops_cleanly_on_one_group_sigint(
    tmp_path: Path, runs: list[Up]
) -> None:
    uv = shutil.which("uv")
    assert uv is not None
    up = _start(tmp_path, runs, [uv, "run", "--locked", "cairn", "up"], "uv")
    # uv is the group leader here; the supervisor is its child.
    await _signal_group_and_check(up, signal.SIGINT, forward=False)
