"""`cairn up` end to end: embedded infrastructure, children, restarts, Ctrl-C, and a second start.

The supervisor runs as a real subprocess on free ports and its own data dir. Process kinds
whose module is not importable yet are left out (`--only`), so this test checks the
supervisor itself whatever state the rest of the code base is in; once every kind exists
it runs them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import io
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from aiokafka import AIOKafkaConsumer

from bus.config.settings import Settings
from bus.run import listen
from bus.run.processes import KINDS, RUNNERS
from bus.run.supervisor import (
    EMBEDDED_PARTITIONS,
    EMBEDDED_RECYCLE_AFTER,
    EMBEDDED_SESSION_TIMEOUT_MS,
    TANSU_PID_FILE,
    DataDirLock,
    Supervisor,
    child_names,
    is_cairn_ready,
    port_in_use,
    wait_for_cairn,
)
from bus.store.relay import EMBEDDED_LINGER_FROM, EMBEDDED_LINGER_MS
from tests.faults.proc import sample
from tests.ports import free_port

START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


AVAILABLE = [k for k in RUNNERS if _importable(KINDS[k][0].partition(":")[0])]


def _alive(pid: int) -> bool:
    # Zombies count as gone: postgres is re-parented to pid 1, which may never reap it.
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _wait_until(what: str, check: Callable[[], Any], timeout: float, log: Callable[[], str]) -> Any:
    """Start-up polling: these are other processes, so there is nothing to await."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{log()}")
        time.sleep(0.1)


def _query(url: str, sql: str, *args: Any) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    # A private loop: asyncio.run() would unset the loop pytest-asyncio keeps for the session.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(go())
    finally:
        loop.close()


@dataclass
class Up:
    """One `cairn up` subprocess with its output in files (a full pipe would block it)."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def log(self) -> str:
        out = self.out.read_text(errors="replace")
        err = self.err.read_text(errors="replace")[-6000:]
        return f"--- stdout\n{out}\n--- stderr (tail)\n{err}"

    def children(self, kind: str) -> list[int]:
        pids = []
        for child in psutil.Process(self.proc.pid).children():
            try:
                cmd = child.cmdline()
            except psutil.Error:
                continue
            if cmd[-2:] == ["run", kind] and _alive(child.pid):
                pids.append(child.pid)
        return pids


def _partitions(bootstrap: str, topic: str) -> int:
    async def count() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            await consumer.topics()  # refreshes the metadata
            return len(consumer.partitions_for_topic(topic) or ())
        finally:
            await consumer.stop()

    return asyncio.run(count())


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {
        k: v
        for k, v in os.environ.items()
        # (and the suite's own session timeout, tests/conftest.py: `cairn up` sets its own)
        if k
        not in (
            "CAIRN_DATABASE_URL",
            "CAIRN_KAFKA_BOOTSTRAP",
            "CAIRN_JWT_SECRET",
            "CAIRN_KAFKA_SESSION_TIMEOUT_MS",
            "CAIRN_KAFKA_COMMAND_RECYCLE_AFTER",
            "CAIRN_RELAY_LINGER_MS",
            "CAIRN_RELAY_LINGER_FROM",
        )
    }
    e.update(
        CAIRN_DATA_DIR=str(tmp_path / "data"),
        CAIRN_HOST="127.0.0.1",
        CAIRN_PORT=str(free_port()),
        CAIRN_EMBEDDED_PG_PORT=str(free_port()),
        CAIRN_EMBEDDED_KAFKA_PORT=str(free_port()),
        CAIRN_LOG_JSON="true",
    )
    return e


@pytest.fixture
def start(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[[], Up]]:
    started: list[Up] = []

    def _start() -> Up:
        n = len(started)
        out, err = tmp_path / f"up{n}.out", tmp_path / f"up{n}.err"
        only = [] if AVAILABLE == list(RUNNERS) else ["--only", ",".join(AVAILABLE)]
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bus.run.cli", "up", *only],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
            )
        up = Up(proc, out, err)
        started.append(up)
        _wait_until(
            "the ready banner",
            lambda: "Cairn is up." in out.read_text() or proc.poll() is not None,
            START_TIMEOUT,
            up.log,
        )
        assert proc.poll() is None, f"cairn up exited with {proc.returncode}\n{up.log()}"
        return up

    yield _start
    for up in started:  # only if a test failed half-way
        if up.proc.poll() is None:
            up.proc.kill()
            up.proc.wait()


def _stop(up: Up, data_dir: Path, ports: list[int]) -> None:
    postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    tansu = int((data_dir / TANSU_PID_FILE).read_text())
    children = [c.pid for c in psutil.Process(up.proc.pid).children(recursive=True)]
    assert _alive(postmaster) and _alive(tansu)

    up.proc.send_signal(signal.SIGINT)
    try:
        code = up.proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cairn up did not stop within {STOP_TIMEOUT}s\n{up.log()}")
    assert code == 0, up.log()
    left = [pid for pid in [postmaster, tansu, *children] if _alive(pid)]
    assert not left, f"processes left running: {left}\n{up.log()}"
    assert not [p for p in ports if port_in_use("127.0.0.1", p)]
    assert not (data_dir / "supervisor.json").exists()


@pytest.mark.timeout(240)
def test_up_runs_everything_and_stops_cleanly(start: Callable[[], Up], env: dict[str, str]) -> None:
    data_dir = Path(env["CAIRN_DATA_DIR"])
    api_port, pg_port, kafka_port = (
        int(env[k]) for k in ("CAIRN_PORT", "CAIRN_EMBEDDED_PG_PORT", "CAIRN_EMBEDDED_KAFKA_PORT")
    )
    db_url = f"postgresql://postgres@127.0.0.1:{pg_port}/cairn"
    cli = [sys.executable, "-m", "bus.run.cli"]

    up = start()
    banner = up.out.read_text()
    assert f"127.0.0.1:{kafka_port} (embedded)" in banner
    assert f"{db_url} (embedded)" in banner
    assert str(data_dir) in banner
    if "api" in AVAILABLE:
        assert f"http://127.0.0.1:{api_port}/schema/openapi.json" in banner
        assert f"CAIRN_DATA_DIR={data_dir}" in banner and "token alice" in banner
        assert httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=5).status_code == 200
        # The console's address, printed, is where the console answers.
        console = re.search(r"Console\s+(http://\S+)", banner)
        assert console is not None, banner
        assert console.group(1) == f"http://127.0.0.1:{api_port}/console"
        assert httpx.get(console.group(1), timeout=5).status_code == 200

    assert _query(db_url, "SELECT count(*) FROM pg_namespace WHERE nspname = 'eventstore'") == 1
    # The embedded broker's topics have EMBEDDED_PARTITIONS, and the children know it; they
    # run their consumers with the embedded session timeout unless one is set, recycle the
    # command topics (bus/actors/recycle.py) and linger after every relay pass
    # (bus/store/relay.py).
    topic = Settings.from_env(env).command_topic("uploads")
    assert _partitions(f"127.0.0.1:{kafka_port}", topic) == EMBEDDED_PARTITIONS
    told = []
    for child in psutil.Process(up.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.cmdline()[-2:-1] == ["run"]:
                child_env = child.environ()
                told.append(
                    (
                        child_env["CAIRN_KAFKA_PARTITIONS"],
                        child_env["CAIRN_KAFKA_SESSION_TIMEOUT_MS"],
                        child_env["CAIRN_KAFKA_COMMAND_RECYCLE_AFTER"],
                        child_env["CAIRN_RELAY_LINGER_MS"],
                        child_env["CAIRN_RELAY_LINGER_FROM"],
                    )
                )
    expected = (
        str(EMBEDDED_PARTITIONS),
        str(EMBEDDED_SESSION_TIMEOUT_MS),
        str(EMBEDDED_RECYCLE_AFTER),
        str(EMBEDDED_LINGER_MS),
        str(EMBEDDED_LINGER_FROM),
    )
    assert told and set(told) == {expected}, told
    assert (data_dir / "jwt-secret").exists()  # generated before the children started
    _query(
        db_url,
        "INSERT INTO eventstore.relay_checkpoints (name, position) VALUES ($1, 42)",
        "test-marker",
    )

    # A second supervisor on the same data dir refuses, naming the first one.
    second = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"pid {up.proc.pid}" in second.stderr

    # One-shot commands reuse the running supervisor's infrastructure.
    migrate = subprocess.run([*cli, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 0, migrate.stderr
    assert "up to date" in migrate.stdout
    if "relay" in AVAILABLE:
        replay = subprocess.run(
            [*cli, "replay", "--from", "0"], env=env, capture_output=True, text=True, timeout=60
        )
        assert replay.returncode == 0, replay.stderr
        assert "republished" in replay.stdout

    # A child that dies is restarted, and the supervisor lives on.
    if AVAILABLE:
        kind = "relay" if "relay" in AVAILABLE else AVAILABLE[0]
        [victim] = _wait_until(f"one {kind} child", lambda: up.children(kind), 30, up.log)
        os.kill(victim, signal.SIGKILL)
        _wait_until(
            f"a new {kind} child",
            lambda: [p for p in up.children(kind) if p != victim],
            30,
            up.log,
        )
        assert up.proc.poll() is None

    _stop(up, data_dir, [api_port, pg_port, kafka_port])

    # Without a supervisor, `cairn migrate` starts the embedded Postgres for itself.
    migrate = subprocess.run([*cli, "migrate"], env=env, capture_output=True, text=True, timeout=90)
    assert migrate.returncode == 0, migrate.stderr
    assert "up to date" in migrate.stdout
    assert not port_in_use("127.0.0.1", pg_port)

    # Starting again keeps the data; the new (empty) embedded broker rewinds the relay.
    up = start()
    assert (
        _query(
            db_url,
            "SELECT position FROM eventstore.relay_checkpoints WHERE name = $1",
            "test-marker",
        )
        == 0
    )
    _stop(up, data_dir, [api_port, pg_port, kafka_port])


def test_child_names_give_each_api_process_its_own_name() -> None:
    kinds = ["api", "actors", "relay"]
    assert child_names(kinds, 1) == {"api": "api", "actors": "actors", "relay": "relay"}
    assert child_names(kinds, 3) == {
        "api": "api",
        "api-2": "api",
        "api-3": "api",
        "actors": "actors",
        "relay": "relay",
    }
    assert child_names(["actors"], 4) == {"actors": "actors"}  # no api here: nothing to copy


def test_up_refuses_an_impossible_number_of_api_processes(env: dict[str, str]) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "bus.run.cli", "up"],
        env={**env, "CAIRN_API_PROCESSES": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "CAIRN_API_PROCESSES must be 1 to 64, not 0" in bad.stderr
    assert not Path(env["CAIRN_DATA_DIR"], "pg").exists()  # refused before starting anything


@pytest.mark.skipif(
    "api" not in AVAILABLE or not listen.AVAILABLE, reason="needs the api and SO_REUSEPORT"
)
@pytest.mark.timeout(240)
def test_up_runs_several_api_processes_on_one_port(
    start: Callable[[], Up], env: dict[str, str]
) -> None:
    env["CAIRN_API_PROCESSES"] = "2"
    api = f"http://127.0.0.1:{env['CAIRN_PORT']}"
    up = start()
    banner = up.out.read_text()
    metrics = dict(re.findall(r"Metrics (api(?:-2)?)\s+(http://\S+/metrics)", banner))
    assert set(metrics) == {"api", "api-2"}, banner
    assert "Processes" in banner and "api, api-2, " in banner
    pids = _wait_until(
        "two api children", lambda: len(up.children("api")) == 2 and up.children("api"), 30, up.log
    )
    instances = sorted(psutil.Process(p).environ()["CAIRN_API_INSTANCE"] for p in pids)
    assert instances == ["1", "2"]

    def unmatched(url: str) -> float:  # GETs no route matched, counted by one process
        text = httpx.get(url, timeout=5).text
        return sample(text, "cairn_http_requests_total", route="unmatched", status="404") or 0

    # New connections are spread over both processes (by a hash of the client's port: with
    # 60 connections, one process getting none has a chance of 2 * 2**-60).
    before = {n: unmatched(u) for n, u in metrics.items()}
    for _ in range(60):
        with httpx.Client(timeout=5) as client:  # a fresh connection each time
            assert client.get(f"{api}/v1/no-such-route").status_code == 404
    after = {n: unmatched(u) for n, u in metrics.items()}
    served = {n: after[n] - before[n] for n in metrics}
    assert sum(served.values()) == 60 and min(served.values()) > 0, served

    # One of them killed: the other answers every request meanwhile, and the supervisor
    # starts the dead one again.
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    _wait_until("the victim gone", lambda: not _alive(victim), 30, up.log)
    for _ in range(20):
        with httpx.Client(timeout=5) as client:
            assert client.get(f"{api}/health").status_code == 200
    _wait_until(
        "a new api child",
        lambda: len([p for p in up.children("api") if p != victim]) == 2,
        60,
        up.log,
    )
    assert up.proc.poll() is None
    data_dir = Path(env["CAIRN_DATA_DIR"])
    _stop(
        up,
        data_dir,
        [
            int(env[k])
            for k in ("CAIRN_PORT", "CAIRN_EMBEDDED_PG_PORT", "CAIRN_EMBEDDED_KAFKA_PORT")
        ],
    )


def test_only_cairns_own_answer_counts_as_ready() -> None:
    assert is_cairn_ready(200, b'{"status": "ready", "checks": {}}')
    assert is_cairn_ready(200, b'{"status": "ok"}')  # /health
    assert not is_cairn_ready(503, b'{"status": "unavailable", "checks": {}}')
    # Another server on the port: a Prometheus endpoint, a web page, anything else.
    assert not is_cairn_ready(200, b"# HELP python_info Python platform information\n")
    assert not is_cairn_ready(200, b"<html>It works!</html>")
    assert not is_cairn_ready(200, b'["ready"]')
    assert not is_cairn_ready(200, b"\xff\xfe")


async def test_waiting_for_cairn_is_not_fooled_by_another_server_on_its_port() -> None:
    # A server that answers every GET 200 with a text body (as a child's Prometheus
    # metrics server did when it was handed the API's port): never taken for Cairn.
    async def foreign(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(foreign, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert not await wait_for_cairn(f"http://127.0.0.1:{port}/ready", timeout=0.6)


def test_the_data_dir_is_created_owner_only(tmp_path: Path) -> None:
    """`cairn up` creates the data dir through its lock (the first thing it does there):
    it holds the secrets, the embedded Postgres and the blobs, so 0700, not 0755."""
    data_dir = tmp_path / "new" / "data"
    lock = DataDirLock(data_dir)
    old = os.umask(0o022)
    try:
        lock.acquire()
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    finally:
        os.umask(old)
        lock.release()


def test_a_free_metrics_port_is_never_one_of_the_systems_own_listeners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child's metrics port is picked free before the API, the broker and PostgreSQL bind
    theirs; where those are ephemeral ports too (tests, the bench) the kernel may hand one
    out again. The supervisor skips them (and the other children's): in `just bench` a
    child's metrics server once took the API's port, so POST /v1/uploads met it (405)."""
    from bus.run import embedded
    from bus.run import supervisor as sup

    settings = dataclasses.replace(
        Settings.from_env({}),
        data_dir=tmp_path,
        port=40001,
        embedded_pg_port=40002,
        embedded_kafka_port=40003,
        metrics_port=0,
    )
    offered = iter([40001, 40002, 40003, 40010, 40010, 40001, 40011])

    class Kernel:  # what the kernel offers for port 0, in turn
        def __init__(self) -> None:
            self.port = next(offered)

        def __enter__(self) -> Kernel:
            return self

        def __exit__(self, *_: object) -> None: ...

        def bind(self, _address: object) -> None: ...

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(embedded.socket, "socket", Kernel)
    s = sup.Supervisor(settings)
    first, second = s._own_metrics[:2]
    assert s._metrics_port(first) == 40010
    assert s._metrics_port(second) == 40011  # not the API's, not the first child's
    assert s._metrics_port(first) == 40010  # kept


def test_the_banner_shows_names_holding_terminal_controls_escaped(tmp_path: Path) -> None:
    """The data dir and the broker's address come from the environment: ESC[2J, CR, the
    one-byte CSI and a right-to-left override in them are shown, not obeyed."""
    nasty = "x\x1b[2J\r\x9b2J\u202egpj.exe"
    settings = dataclasses.replace(
        Settings.from_env(), data_dir=tmp_path / nasty, kafka_bootstrap=f"{nasty}:9092"
    )
    out = io.StringIO()
    Supervisor(settings, ["api"], out=out)._print_banner("http://127.0.0.1:1", healthy=True)
    banner = out.getvalue()
    assert "x\\x1b[2J\\x0d\\x9b2J\\u202egpj.exe:9092" in banner, banner
    assert f"{tmp_path}/x\\x1b[2J" in banner, banner
    for raw in ("\x1b", "\r", "\x9b", "\u202e"):
        assert raw not in banner, repr(banner)
