"""Long-running processes the bench starts (Cairn, nginx, uvicorn), each stopped on any exit.

Every process is started in a session of its own, so a Ctrl-C at the terminal reaches the
bench only, which then stops them itself in order: first the signal the program expects
(SIGTERM, or SIGQUIT for nginx's graceful stop), then SIGKILL to the process group after a
timeout. An atexit hook stops whatever is still registered should the bench die
unexpectedly.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_RUNNING: list[Managed] = []


class Managed:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        _RUNNING.append(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the process (and its process group); blocking, bounded by stop_timeout + 5 s."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                # Not reaped yet, so its pid is still the id of the group it leads (its own
                # session): kill the whole group, nginx workers and all.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        with contextlib.suppress(ValueError):
            _RUNNING.remove(self)


def stop_all() -> None:
    for m in reversed(list(_RUNNING)):
        with contextlib.suppress(Exception):
            m.stop()


atexit.register(stop_all)


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll a callable until it returns truthy; TimeoutError naming `what` after `timeout`."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(interval)


async def run_to_end(
    argv: Sequence[str], timeout: float, *, cwd: Path | None = None
) -> tuple[int, bytes, bytes]:
    """Run a short-lived program `argv` (no stdin) to its end: its exit code, stdout and
    stderr. Killed, and waited for, on timeout or cancellation (then TimeoutError or
    CancelledError), so that none outlives the scenario that ran it."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out, err
