"""Real subprocesses for the fault tests: start them, SIGKILL them, wait for them.

Two ways a fault test runs Cairn in other processes, both here so that no test writes its
own start/kill/wait code:

- `cairn up` as a user runs it (`start_up`, `Up`, the `runs` fixture), on free ports and a
  temporary data dir: the supervisor in its own process group (so a test can SIGKILL it as
  a whole), its output in files (a full pipe would block it), and helpers to find every
  process it is responsible for, including the ones that do not descend from it (`pg_ctl`
  daemonises PostgreSQL) and the ones left behind by a run that was SIGKILLed.
- one kind (`cairn run api|fetcher|tasks|...`) joining an in-process test system
  (`kind_env`, `start_kind`), to be SIGKILLed alone (`sigkill`) and started again.

And what a client does while a part is down: `send_retrying`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from bus.config.settings import Settings
from bus.run.embedded import EmbeddedPostgres
from bus.run.supervisor import TANSU_PID_FILE
from tests.ports import free_port

T = TypeVar("T")

BANNER = "Cairn is up."
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
CLI = [sys.executable, "-m", "bus.run.cli"]
RETRY_FOR = 90.0


def cairn_env(data_dir: Path) -> dict[str, str]:
    """The environment of a `cairn up` with everything embedded, on free ports (none of
    the caller's own CAIRN_* variables: an external database or broker must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update(
        CAIRN_DATA_DIR=str(data_dir),
        CAIRN_HOST="127.0.0.1",
        CAIRN_PORT=str(free_port()),
        CAIRN_EMBEDDED_PG_PORT=str(free_port()),
        CAIRN_EMBEDDED_KAFKA_PORT=str(free_port()),
        CAIRN_LOG_LEVEL="warning",
        CAIRN_COMMAND_TIMEOUT="5",
    )
    return env


def alive(pid: int) -> bool:
    # Zombies count as gone: orphans are re-parented to pid 1, which may never reap them.
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def running(p: psutil.Process) -> bool:
    """Whether this very process (not a recycled pid) is still running, zombies excluded."""
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def describe(pids: Iterable[int]) -> str:
    out = []
    for pid in pids:
        try:
            out.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:160]}")
        except psutil.Error:
            out.append(f"{pid}: (gone)")
    return "\n".join(out)


async def poll(
    what: str,
    check: Callable[[], Awaitable[T | None] | T | None],
    timeout: float,
    log: Callable[[], str] = lambda: "",
    interval: float = 0.2,
) -> T:
    """Bounded polling of a condition in another process: there is nothing to await."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{log()}")
        await asyncio.sleep(interval)


async def cli(env: dict[str, str], *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run `cairn ARGS...`; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def postgres_pids(data_dir: Path) -> list[int]:
    """The embedded postmaster of data_dir and all its processes (not our descendants)."""
    try:
        pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
        master = psutil.Process(pid)
        return [pid, *(c.pid for c in master.children(recursive=True))]
    except (OSError, ValueError, IndexError, psutil.Error):
        return []


def tansu_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / TANSU_PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def listener_pid(port: int) -> int | None:
    """The pid listening on 127.0.0.1:port, if any."""
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
            return c.pid
    return None


@dataclass
class Up:
    """One `cairn up` subprocess, leader of its own process group."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    env: dict[str, str]
    # Every process this run was seen responsible for, kept as psutil handles so that a
    # recycled pid is never mistaken for one of ours.
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return Path(self.env["CAIRN_DATA_DIR"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['CAIRN_PORT']}"

    def log(self) -> str:
        out = self.out.read_text(errors="replace")
        err = self.err.read_text(errors="replace")[-8000:]
        return f"--- stdout\n{out}\n--- stderr (tail)\n{err}"

    def children(self) -> dict[int, str]:
        """pid -> kind (or command) of every live descendant (the kinds and the broker)."""
        found: dict[int, str] = {}
        try:
            procs = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return found
        for p in procs:
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            if alive(p.pid):
                found[p.pid] = cmd[-1] if cmd[-2:-1] == ["run"] else os.path.basename(cmd[0])
        return found

    def processes(self) -> list[int]:
        """Everything this run is responsible for right now: itself, its children, Postgres.

        Also remembered (`seen`), so that a test can check later that all of it is gone."""
        pids = [self.proc.pid, *self.children(), *postgres_pids(self.data_dir)]
        tansu = tansu_pid(self.data_dir)
        if tansu is not None and alive(tansu):
            pids.append(tansu)
        for pid in pids:
            if pid not in self.seen:
                try:
                    self.seen[pid] = psutil.Process(pid)
                except psutil.Error:
                    pass
        return pids

    def left(self) -> list[int]:
        """Those of `seen` still running."""
        return [pid for pid, p in self.seen.items() if running(p)]

    def ports(self) -> list[int]:
        return [
            int(self.env[k])
            for k in ("CAIRN_PORT", "CAIRN_EMBEDDED_PG_PORT", "CAIRN_EMBEDDED_KAFKA_PORT")
        ]

    async def wait_up(self, timeout: float = START_TIMEOUT) -> None:
        """Until the banner is printed (after the API's /health answered 200).

        The banner, not /health itself: after a SIGKILL an orphaned API child of the previous
        run may still be answering /health on the same port."""
        await poll(
            "the ready banner",
            lambda: BANNER in self.out.read_text() or self.proc.poll() is not None,
            timeout,
            self.log,
        )
        assert self.proc.poll() is None, (
            f"cairn up exited with {self.proc.returncode}\n{self.log()}"
        )
        async with httpx.AsyncClient(timeout=5) as c:
            r = await c.get(f"{self.url}/health")
        assert r.status_code == 200, r.text
        self.processes()

    def kill_group(self) -> None:
        """SIGKILL the supervisor's process group (start_new_session: pgid == its pid)."""
        self.processes()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def kill_everything(self) -> None:
        """SIGKILL every process of this run, as an OOM kill of the whole container would.

        The supervisor's group reaches only the supervisor (the kinds, the broker and
        PostgreSQL each run in a session of their own), so each is killed by pid, from the
        handles taken just before. The postmaster is frozen first, so that it cannot fork a
        backend between the listing and the kill."""
        master = postgres_pids(self.data_dir)[:1]
        for pid in master:
            os.kill(pid, signal.SIGSTOP)
        pids = self.processes()
        os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in reversed(pids):  # the postmaster last
            if pid != self.proc.pid:
                try:
                    self.seen[pid].kill()
                except psutil.Error:
                    pass
        self.proc.wait(STOP_TIMEOUT)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Ctrl-C: SIGINT to the supervisor, and its exit code."""
        self.processes()
        self.proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"cairn up did not stop within {timeout}s\n{self.log()}")


def start_up(env: dict[str, str], logs: Path, name: str) -> Up:
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [*CLI, "up"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=o,
            stderr=e,
            start_new_session=True,
        )
    return Up(proc, out, err, env)


async def run_up(env: dict[str, str], logs: Path, name: str, runs: list[Up]) -> Up:
    """`start_up`, kept in `runs` (the fixture's cleanup takes it down if the test fails),
    once it answers."""
    up = start_up(env, logs, name)
    runs.append(up)
    await up.wait_up()
    return up


async def bearer(env: dict[str, str], user: str = "alice") -> dict[str, str]:
    """The Authorization header of a token `cairn token` mints for `user`."""
    code, out, err = await cli(env, "token", user)
    assert code == 0, err
    return {"Authorization": f"Bearer {out.strip()}"}


async def stop_cleanly(last: Up, *earlier: Up) -> None:
    """Ctrl-C to the running `last`: it exits 0, and no process of it or of the `earlier`
    (killed) runs is left."""
    assert await last.stop() == 0, last.log()
    runs = (*earlier, last)
    await poll(
        "every process of the runs to be gone",
        lambda: not any(up.left() for up in runs),
        30,
        lambda: describe([pid for up in runs for pid in up.left()]),
    )


def cleanup(runs: Iterable[Up]) -> None:
    """After a failed test only: take down whatever the runs left (each pid we started)."""
    for up in runs:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGINT)
            try:
                up.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(up.proc.pid, signal.SIGKILL)
                up.proc.wait()
    for up in runs:
        # A Postgres left by a SIGKILLed run: a fast shutdown, not a SIGKILL of its processes.
        pg = up.data_dir / "pg"
        if postgres_pids(up.data_dir):
            EmbeddedPostgres(pg, int(up.env["CAIRN_EMBEDDED_PG_PORT"])).stop()
        for pid in up.left():
            try:
                up.seen[pid].kill()
            except psutil.Error:
                pass


@pytest.fixture
def runs() -> Iterator[list[Up]]:
    """The `cairn up` runs a test starts (append each); what they left is taken down after
    the test (a no-op when the test got to its end and stopped them)."""
    started: list[Up] = []
    yield started
    cleanup(started)


def kind_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of a `cairn run KIND` that joins the in-process system of `settings`:
    its database, broker, topics, blob store and token secret, none of the caller's own
    CAIRN_* variables; `overrides` (CAIRN_* names) last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update(
        CAIRN_DATA_DIR=str(settings.data_dir),
        CAIRN_DATABASE_URL=settings.database_url or "",
        CAIRN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap or "",
        CAIRN_KAFKA_IDEMPOTENCE="false",  # Tansu has no InitProducerId
        CAIRN_KAFKA_FETCH_MAX_WAIT_MS="10",
        CAIRN_KAFKA_SESSION_TIMEOUT_MS=str(settings.kafka_session_timeout_ms),
        CAIRN_KAFKA_PARTITIONS=str(settings.kafka_partitions),
        CAIRN_TOPIC_PREFIX=settings.topic_prefix,
        CAIRN_BLOB_STORE=settings.blob_store,
        CAIRN_JWT_SECRET=settings.resolved_jwt_secret(),
    )
    env.update(overrides)
    return env


def start_kind(
    kind: str, env: dict[str, str], log: Path, *, own_group: bool = False
) -> subprocess.Popen[bytes]:
    """`cairn run KIND`, its output appended to `log` (a restart appends to the same log).
    `own_group`: a session of its own, so that `sigkill(group=True)` reaches its children."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [*CLI, "run", kind],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )


async def sigkill(proc: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """SIGKILL `proc` (with `group`, its whole process group) and reap it: no clean-up
    code of it runs, as in a crash or an OOM kill."""
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait, STOP_TIMEOUT)


async def terminate(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """The end of a test: SIGTERM each one still running, and wait for it."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            await asyncio.to_thread(proc.wait, STOP_TIMEOUT)


async def send_retrying(
    c: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    retry: Callable[[int], bool] = lambda status: status == 503,
    through_refused: bool = True,
    retry_for: float = RETRY_FOR,
    **kw: Any,
) -> httpx.Response:
    """What a real client does while a part of Cairn is down: the same request again while
    the answer's status is one to `retry` (503: bus or database unavailable, actors still
    joining) and, with `through_refused`, while the connection fails; a test failure after
    `retry_for` seconds."""
    deadline = time.monotonic() + retry_for
    last = "no answer"
    while True:
        try:
            r = await c.request(method, url, **kw)
            if not retry(r.status_code):
                return r
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.TransportError as e:
            if not through_refused:
                raise
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            pytest.fail(f"{method} {url} still failing after {retry_for}s: {last}")
        await asyncio.sleep(0.2)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (labels in any order)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        metric, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if metric.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None
