"""`cairn up`: one foreground process that owns the embedded infrastructure and the children.

Someone trying Cairn on a laptop should need one command and nothing but Python. The
supervisor starts whatever is not configured externally (PostgreSQL, the Tansu broker),
prepares it (database, migrations, topics, JWT secret), then runs every process kind as a
child (`python -m bus.run.cli run KIND`, exactly what production runs one per container),
restarts children that die, prints where everything is, and on Ctrl-C takes it all down in
dependency order. Each child is its own OS process so that a crash or a blocked event loop
in one kind cannot take the others with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil

from bus.aio import Backoff, sleep_unless_stopped
from bus.config.logs import configure, get_logger
from bus.config.private import private_dir
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics
from bus.run import listen
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from bus.run.pidwait import wait_for_exit
from bus.run.processes import RUNNERS
from bus.store import db
from bus.store.relay import EMBEDDED_LINGER_FROM, EMBEDDED_LINGER_MS, rewind_all
from bus.terminal import printable

log = get_logger("bus.run.supervisor")

DATABASE_NAME = "cairn"
# Partitions per topic on the embedded broker, unless CAIRN_KAFKA_PARTITIONS says otherwise.
# Every consumer's fetch names each partition it reads, 100 times a second at the 10 ms
# deadline the embedded broker gets (CAIRN_KAFKA_FETCH_MAX_WAIT_MS), and the broker
# answers for each: with one process per kind on one machine, the default 8 only
# multiplied that work (the broker's CPU per 4 KiB tus upload fell from 5.9 to 2.3 ms with
# 2, issue 13). Two leave room for a second process of a kind. The embedded broker keeps
# nothing across restarts, so its topics are created anew, with this count, at each start.
EMBEDDED_PARTITIONS = 2
# The consumers' session timeout on the embedded broker, unless CAIRN_KAFKA_SESSION_TIMEOUT_MS
# says otherwise. Tansu holds every JoinGroup for half of it, so it is most of what a
# consumer takes to start, and a crashed child's partitions move after it: 4 s instead of the
# 10 s default brings `cairn up`'s banner from 13.0 to 10.7 s. All processes run on this one
# machine under this supervisor, so a member is silent for 4 s only if it is gone.
EMBEDDED_SESSION_TIMEOUT_MS = 4000
# The embedded broker's command topics are recycled (deleted and created empty) once a
# partition has carried this many commands, unless CAIRN_KAFKA_COMMAND_RECYCLE_AFTER says
# otherwise (bus/actors/recycle.py): its fetches slow down with every batch a partition
# holds, about 0.8 us of broker CPU per batch and fetch, and stall past some 20,000. Low,
# because a burst starts from what the last pause left: 250 against 1,000 took the broker's
# CPU per object PUT from 0.77 to 0.66 ms in bursts of 1,000 (README "Kafka").
EMBEDDED_RECYCLE_AFTER = 250
LOCK_FILE = "supervisor.pid"
RUNTIME_FILE = "supervisor.json"
TANSU_PID_FILE = "tansu.pid"

# A child that keeps crashing is restarted after 0.5 s, 1 s, 2 s, ... up to 30 s, so a broken
# kind neither spins the CPU nor stays down for long once its cause (say, Kafka) recovers.
# A child that ran for STABLE_AFTER seconds before dying starts again from the minimum.
BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
# How long children get between SIGTERM and SIGKILL: enough to finish in-flight commands
# and flush checkpoints, short enough that Ctrl-C still feels like it works.
STOP_TIMEOUT = 10.0
HEALTH_TIMEOUT = 120.0
HEALTH_POLL = 0.25
# One stop request often arrives as several signals: a terminal's Ctrl-C or a service
# manager's killpg reaches every process of the group, and wrappers such as `uv run` and
# `just` forward what they got to us as well. Signals within this window of the first one
# are that same request; only a later one is a person asking again, and forces.
FORCE_AFTER = 1.0
# Children stop in phases: first those that send commands (the API drains its requests, the
# handlers finish a follow-up command) while the actors are still there to answer them,
# then the rest. Stopping all at once had the handlers wait for replies that never came,
# until they were killed. Kinds not named here stop in the last phase.
STOP_PHASES: tuple[tuple[str, ...], ...] = (
    ("api", "handlers", "tasks"),
    ("actors", "projector", "relay"),
)
# The banner waits for /ready (a command round trip) when every kind it needs runs here.
READY_NEEDS = frozenset({"api", "actors", "relay", "projector"})
# At most this many API processes on one port (CAIRN_API_PROCESSES).
MAX_API_PROCESSES = 64


async def wait_for_cairn(url: str, timeout: float) -> bool:
    """Whether Cairn's /ready (or /health) at `url` answers that it is, within `timeout`.

    Bounded polling: the API child needs a moment to import and bind, and it may be
    restarted meanwhile, so there is nothing to await but the answer itself. Only Cairn's
    own answer counts (see `is_cairn_ready`): another server on the port, such as a
    metrics endpoint that took it meanwhile, answering 200 is not Cairn being up."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = await client.get(url)
                if is_cairn_ready(r.status_code, r.content):
                    return True
            await asyncio.sleep(HEALTH_POLL)
    return False


def is_cairn_ready(status: int, body: bytes) -> bool:
    """A 200 with the body Cairn's /ready or /health answers it with."""
    if status != 200:
        return False
    try:
        doc = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        return False
    return isinstance(doc, dict) and doc.get("status") in ("ready", "ok")


def child_names(kinds: Iterable[str], api_processes: int) -> dict[str, str]:
    """Each child's name -> its process kind: one child per kind, named after it, but
    `api_processes` API children sharing the port (bus/run/listen.py), named api, api-2,
    api-3... (the first keeps the kind's name, and its idempotency holder: api/app.py)."""
    names: dict[str, str] = {}
    for kind in kinds:
        copies = api_processes if kind == "api" else 1
        for i in range(1, copies + 1):
            names[kind if i == 1 else f"{kind}-{i}"] = kind
    return names


class SupervisorError(RuntimeError):
    """A problem the user must fix (busy port, second instance): reported without a traceback."""


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port (we try to bind it ourselves)."""
    with socket.socket(listen.family_of(host), socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: sockets in TIME_WAIT from a previous run must not count as "busy";
        # on Linux a live listener still makes bind() fail.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def redact_url(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class DataDirLock:
    """One Cairn process owning a data dir at a time (`supervisor.pid`, held with flock).

    flock rather than "is the pid in the file alive": the kernel drops the lock when the
    holder dies however it dies, so a stale file never blocks a start and a recycled pid
    never fakes a live supervisor. The pid in the file is only for the error message.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def holder(self) -> int | None:
        """The pid of whoever holds the lock, None if nobody does (or it is us)."""
        if self._fd is not None or not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = self.path.read_text().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def acquire(self) -> None:
        private_dir(self.path.parent)  # the data dir: its first creation on `cairn up`
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            text = self.path.read_text().strip()
            who = f"pid {text}" if text.isdigit() else "another process"
            raise SupervisorError(
                f"another Cairn supervisor or command ({who}) is already using data dir "
                f"{self.path.parent}; stop it first, or point CAIRN_DATA_DIR elsewhere"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        # The file stays (only emptied): unlinking a locked file would let a process that
        # opened the old inode and one that creates a new file both "hold" the lock.
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class RuntimeInfo:
    """What a running supervisor started, for `cairn migrate` / `cairn replay` to reuse."""

    pid: int
    database_url: str
    kafka_bootstrap: str
    embedded_kafka: bool

    def write(self, data_dir: Path) -> None:
        path = data_dir / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self)))
        tmp.chmod(0o600)
        tmp.replace(path)

    @classmethod
    def of_running(cls, data_dir: Path) -> RuntimeInfo | None:
        """The info of the supervisor holding data_dir's lock, None if none is running."""
        holder = DataDirLock(data_dir).holder()
        if holder is None:
            return None
        try:
            info = cls(**json.loads((data_dir / RUNTIME_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return info if info.pid == holder else None


def _postmaster_of(pg_dir: Path) -> tuple[int, int] | None:
    """(pid, port) from a cluster's postmaster.pid, if that postmaster is alive."""
    try:
        lines = (pg_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if _alive(pid) else None


def check_pg_port(settings: Settings) -> None:
    port = settings.embedded_pg_port
    if not port_in_use("127.0.0.1", port):
        return
    # Our own cluster left running by a supervisor that was SIGKILLed: EmbeddedPostgres
    # stops it before starting, so the port is not really taken.
    if (_postmaster_of(settings.data_dir / "pg") or (0, 0))[1] == port:
        return
    raise SupervisorError(
        f"port {port} for the embedded PostgreSQL is already in use; set "
        "CAIRN_EMBEDDED_PG_PORT to a free port, or CAIRN_DATABASE_URL to use an existing server"
    )


def _stale_tansu(data_dir: Path, port: int) -> psutil.Process | None:
    """The broker a SIGKILLed supervisor left behind for this data dir, if still running."""
    try:
        proc = psutil.Process(int((data_dir / TANSU_PID_FILE).read_text().strip()))
        cmdline = " ".join(proc.cmdline())
    except (OSError, ValueError, psutil.Error):
        return None
    # Check it is really that broker, not a process that got the pid recycled.
    if "tansu" in cmdline and f"127.0.0.1:{port}" in cmdline and _alive(proc.pid):
        return proc
    return None


def check_kafka_port(settings: Settings) -> None:
    port = settings.embedded_kafka_port
    if not port_in_use("127.0.0.1", port) or _stale_tansu(settings.data_dir, port):
        return
    raise SupervisorError(
        f"port {port} for the embedded Kafka broker is already in use; set "
        "CAIRN_EMBEDDED_KAFKA_PORT to a free port, or CAIRN_KAFKA_BOOTSTRAP to use an "
        "existing Kafka"
    )


def _kill_stale_tansu(data_dir: Path, port: int) -> None:
    proc = _stale_tansu(data_dir, port)
    if proc is None:
        return
    log.warning("stopping broker left by a previous run", pid=proc.pid)
    with contextlib.suppress(psutil.Error):
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    # Start-up polling: the kernel frees the listening port shortly after the exit.
    deadline = time.monotonic() + STOP_TIMEOUT
    while port_in_use("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)


def start_embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    """Blocking: check the port, then start (initdb on first use) the data dir's cluster."""
    check_pg_port(settings)
    pg = EmbeddedPostgres(settings.data_dir / "pg", settings.embedded_pg_port)
    pg.start()
    return pg


@contextlib.asynccontextmanager
async def database_for_command(settings: Settings) -> AsyncIterator[str]:
    """A database URL for one-shot commands (`cairn migrate`, `cairn replay`).

    CAIRN_DATABASE_URL if set; else the embedded server of a running `cairn up` on this data
    dir (starting a second server on the same files would stop the first one's); else the
    embedded server started for the duration of the command, holding the data-dir lock so
    that a `cairn up` started meanwhile refuses instead of fighting over the files.
    """
    if settings.database_url:
        await db.check_reachable(settings.database_url)
        yield settings.database_url
        return
    data_dir = settings.data_dir.resolve()
    running = RuntimeInfo.of_running(data_dir)
    if running:
        yield running.database_url
        return
    lock = DataDirLock(data_dir)
    lock.acquire()
    try:
        pg = await asyncio.to_thread(
            start_embedded_postgres, dataclasses.replace(settings, data_dir=data_dir)
        )
        try:
            yield await db.ensure_database(pg.url, DATABASE_NAME)
        finally:
            await asyncio.to_thread(pg.stop)
    finally:
        lock.release()


def _stderr_fd() -> int:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2


def token_command(data_dir: Path) -> str:
    """The command that mints a token this server accepts, as a user can paste it anywhere.

    From a checkout (dev.py next to the code) the bootstrap works with nothing on PATH and
    from any directory (it runs in the checkout, whose `.cairn` is the default data dir);
    elsewhere `cairn` is the installed console script. A data dir other than the default
    must be named, or the command would mint with another data dir's secret."""
    checkout = Path(__file__).resolve().parents[2]
    dev = checkout / "dev.py"
    on_checkout = dev.exists()
    command = f"python3 {shlex.quote(str(dev))} token alice" if on_checkout else "cairn token alice"
    default_dir = (checkout if on_checkout else Path.cwd()) / ".cairn"
    if data_dir.resolve() != default_dir.resolve() and not os.environ.get("CAIRN_JWT_SECRET"):
        command = f"CAIRN_DATA_DIR={shlex.quote(str(data_dir))} {command}"
    return command


class Supervisor:
    """Runs the embedded infrastructure and one child per process kind until told to stop."""

    def __init__(
        self,
        settings: Settings,
        kinds: Iterable[str] | None = None,
        *,
        out: IO[str] | None = None,
    ) -> None:
        self.settings = dataclasses.replace(settings, data_dir=settings.data_dir.resolve())
        self.kinds = list(RUNNERS) if kinds is None else list(dict.fromkeys(kinds))
        unknown = [k for k in self.kinds if k not in RUNNERS]
        if unknown:
            raise SupervisorError(
                f"unknown process kind(s) {', '.join(unknown)}; known: {', '.join(RUNNERS)}"
            )
        n = self.settings.api_processes
        if not 1 <= n <= MAX_API_PROCESSES:
            raise SupervisorError(f"CAIRN_API_PROCESSES must be 1 to {MAX_API_PROCESSES}, not {n}")
        if n > 1 and not listen.AVAILABLE:
            raise SupervisorError(
                "CAIRN_API_PROCESSES above 1 needs SO_REUSEPORT (Linux); set it to 1 here"
            )
        # The children: name -> kind (several API processes are several children of a kind).
        self.children = child_names(self.kinds, n)
        self._apis = [name for name, kind in self.children.items() if kind == "api"]
        # The children that serve /metrics on a port of their own: all but the api, whose
        # /metrics is on the API port, unless several API processes share that port (then
        # the API processes too, after the others).
        self._own_metrics = [name for name in self.children if name not in self._apis]
        if n > 1:
            self._own_metrics += self._apis
        self.out = out or sys.stdout
        self._lock = DataDirLock(self.settings.data_dir)
        self._pg: EmbeddedPostgres | None = None
        self._kafka: EmbeddedKafka | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._first_signal: float | None = None
        # Per child: set to stop it (its kind in STOP_PHASES order), and a pending restart
        # request with the step to run while the child is down.
        self._halt = {name: asyncio.Event() for name in self.children}
        self._restart: dict[str, asyncio.Event] = {name: asyncio.Event() for name in self.children}
        self._while_down: dict[str, Callable[[], Awaitable[None]]] = {}
        self._metrics_ports: dict[str, int] = {}

    # ---------------------------------------------------------------- entry point

    def run(self) -> int:
        """Run in the foreground until SIGINT/SIGTERM; 0 after a clean stop."""
        # The lock comes first, before logging or any port check, so that a second
        # `cairn up` on the same data dir says exactly that and touches nothing.
        self._lock.acquire()
        try:
            configure(self.settings.log_level, self.settings.log_json, process="supervisor")
            return asyncio.run(self._main())
        finally:
            self._lock.release()

    def _on_signal(self, signum: int) -> None:
        now = time.monotonic()
        name = signal.Signals(signum).name
        if self._first_signal is None:
            self._first_signal = now
            log.info("stopping; press Ctrl-C again to force", signal=name)
            self._stop.set()
        elif now - self._first_signal <= FORCE_AFTER:
            log.info("stop already under way; signal ignored", signal=name)
        elif not self._force.is_set():
            log.warning("forcing stop: killing children", signal=name)
            self._force.set()

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        # Handlers go in before anything is started so that a Ctrl-C during start-up still
        # runs the teardown below instead of leaving Postgres and the broker behind.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        children: dict[str, asyncio.Task[None]] = {}
        watchers: list[asyncio.Task[None]] = []
        try:
            ready = await self._start_infrastructure()
            if ready and not self._stop.is_set():
                watchers = self._watch_infrastructure()
                children = {n: asyncio.create_task(self._keep_running(n)) for n in self.children}
                banner = asyncio.create_task(self._announce_when_ready())
                await self._stop.wait()
                banner.cancel()
        finally:
            # Dependency order: children first (they flush to Kafka and Postgres while
            # stopping), then the broker, then Postgres, which holds the source of truth.
            self._stop.set()
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await self._stop_children(children)
            await self._stop_infrastructure()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        log.info("stopped")
        return 130 if self._force.is_set() else 0

    # ---------------------------------------------------------------- infrastructure

    async def _start_infrastructure(self) -> bool:
        """Start and prepare Postgres and Kafka; False if a stop was asked for meanwhile."""
        s = self.settings
        # Every port check up front: fail in a second, before initdb or a broker start.
        if "api" in self.kinds and port_in_use(s.host, s.port):
            raise SupervisorError(
                f"port {s.port} for the API is already in use; set CAIRN_PORT to a free port"
            )
        if not s.database_url:
            check_pg_port(s)
        if not s.kafka_bootstrap:
            check_kafka_port(s)
        # Generated before any child starts: they all read the same file, so they agree.
        s.resolved_jwt_secret()

        database_url = s.database_url
        if database_url:
            await db.check_reachable(database_url)
        else:
            log.info("starting embedded PostgreSQL", port=s.embedded_pg_port)
            self._pg = EmbeddedPostgres(s.data_dir / "pg", s.embedded_pg_port)
            await asyncio.to_thread(self._pg.start)
            database_url = await db.ensure_database(self._pg.url, DATABASE_NAME)
        if self._stop.is_set():
            return False

        bootstrap = s.kafka_bootstrap
        if not bootstrap:
            log.info("starting embedded Kafka broker", port=s.embedded_kafka_port)
            await asyncio.to_thread(_kill_stale_tansu, s.data_dir, s.embedded_kafka_port)
            kafka = EmbeddedKafka(s.embedded_kafka_port, log_path=s.data_dir / "tansu.log")
            self._kafka = kafka
            await asyncio.to_thread(kafka.start)
            if kafka.proc is not None:
                (s.data_dir / TANSU_PID_FILE).write_text(f"{kafka.proc.pid}\n")
            bootstrap = kafka.bootstrap
        if self._stop.is_set():
            return False

        self.settings = s = dataclasses.replace(
            s,
            database_url=database_url,
            kafka_bootstrap=bootstrap,
            kafka_idempotence=s.kafka_idempotence and self._kafka is None,
            kafka_partitions=(
                EMBEDDED_PARTITIONS
                if self._kafka is not None and "CAIRN_KAFKA_PARTITIONS" not in os.environ
                else s.kafka_partitions
            ),
        )
        applied = await db.migrate(database_url)
        if applied:
            log.info("migrations applied", names=applied)
        await ensure_topics(s)
        if self._kafka is not None:
            # The embedded broker keeps nothing across restarts: rewind the relay so it
            # republishes the whole history and the topics are complete again. Consumers
            # dedupe by event id, so the repeats are harmless.
            conn = await db.connect(database_url)
            try:
                await conn.execute("UPDATE eventstore.relay_checkpoints SET position = 0")
            finally:
                await conn.close()
        RuntimeInfo(os.getpid(), database_url, bootstrap, self._kafka is not None).write(s.data_dir)
        return True

    async def _stop_infrastructure(self) -> None:
        (self.settings.data_dir / RUNTIME_FILE).unlink(missing_ok=True)
        if self._kafka is not None:
            log.info("stopping embedded Kafka broker")
            kafka, self._kafka = self._kafka, None
            if self._force.is_set() and kafka.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    kafka.proc.kill()
            await asyncio.to_thread(kafka.stop)
            (self.settings.data_dir / TANSU_PID_FILE).unlink(missing_ok=True)
        if self._pg is not None:
            log.info("stopping embedded PostgreSQL")
            pg, self._pg = self._pg, None
            await asyncio.to_thread(pg.stop)  # fast shutdown: rolls back open transactions

    # ---------------------------------------------------------------- infrastructure watch

    def _watch_infrastructure(self) -> list[asyncio.Task[None]]:
        tasks = []
        if self._kafka is not None:
            tasks.append(asyncio.create_task(self._watch_kafka(self._kafka)))
        if self._pg is not None:
            tasks.append(asyncio.create_task(self._watch_postgres(self._pg)))
        return tasks

    async def _watch_kafka(self, kafka: EmbeddedKafka) -> None:
        """Restart the embedded broker whenever it dies, and refill it.

        It keeps everything in memory, so a restarted broker is empty: the topics are
        created again and the relay republishes the history from Postgres, as on a full
        restart. The relay child is stopped around the rewind of its checkpoint: a relay
        pass that read the old checkpoint and was still retrying against the dead broker
        could otherwise save it back after the rewind (checkpoints only move forward) and
        leave the new broker without the events before it.
        """
        delay = BACKOFF_MIN
        while True:
            assert kafka.proc is not None
            started = time.monotonic()
            await wait_for_exit(kafka.proc.pid)
            code = kafka.proc.wait()  # reap it: a dead child must not stay a zombie
            if time.monotonic() - started >= STABLE_AFTER:
                delay = BACKOFF_MIN
            log.error("embedded Kafka broker died; restarting", exit_code=code, restart_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            try:
                await asyncio.to_thread(kafka.start)
            except Exception as e:
                log.error("embedded Kafka broker did not start", error=str(e))
                continue
            (self.settings.data_dir / TANSU_PID_FILE).write_text(f"{kafka.proc.pid}\n")
            try:
                await ensure_topics(self.settings)
            except Exception as e:
                log.error("could not create the topics on the restarted broker", error=str(e))
            if "relay" in self.kinds:
                self.restart_child("relay", self._rewind_relay)
            else:
                await self._rewind_relay()
            log.info("embedded Kafka broker restarted", pid=kafka.proc.pid)

    async def _rewind_relay(self) -> None:
        conn = await db.connect(self.settings.database_url or "")
        try:
            await rewind_all(conn)
        finally:
            await conn.close()

    async def _watch_postgres(self, pg: EmbeddedPostgres) -> None:
        """Restart the embedded PostgreSQL whenever its postmaster dies.

        The children keep running: their pools reconnect, the relay re-runs its leader
        election, and what was committed is on disk (fsync and synchronous_commit are on).
        """
        delay = BACKOFF_MIN
        while True:
            pid = (_postmaster_of(pg.data_dir) or (0, 0))[0]
            if not pid:
                log.error("embedded PostgreSQL is not running; starting it")
            else:
                started = time.monotonic()
                await wait_for_exit(pid)
                if time.monotonic() - started >= STABLE_AFTER:
                    delay = BACKOFF_MIN
                log.error("embedded PostgreSQL died; restarting", restart_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            try:
                await asyncio.to_thread(pg.start)
                log.info("embedded PostgreSQL restarted")
            except Exception as e:
                log.error("embedded PostgreSQL did not start", error=str(e))

    # ---------------------------------------------------------------- children

    def _metrics_port(self, name: str) -> int:
        """A child's own metrics port (see `_own_metrics`): CAIRN_METRICS_PORT, +1, +2... in
        that order when set, else a free port; kept across restarts of the child."""
        if name not in self._metrics_ports:
            base = self.settings.metrics_port
            index = self._own_metrics.index(name)
            self._metrics_ports[name] = base + index if base else self._free_metrics_port()
        return self._metrics_ports[name]

    def _free_metrics_port(self) -> int:
        """A free port that none of the system's own listeners is to take. Free now is not
        enough: the API, the embedded broker and PostgreSQL bind theirs later, and where
        they were given ephemeral ports (tests, the bench) the kernel may hand out the same
        one again here; a child's metrics server that took the API's port left the API
        unable to bind, and its port answering /ready with metrics (seen in `just bench`)."""
        s = self.settings
        taken = {s.port, s.embedded_pg_port, s.embedded_kafka_port, *self._metrics_ports.values()}
        return free_port(avoid=taken)

    def _child_env(self, name: str = "") -> dict[str, str]:
        s = self.settings
        env = {
            **os.environ,
            "CAIRN_DATABASE_URL": s.database_url or "",
            "CAIRN_KAFKA_BOOTSTRAP": s.kafka_bootstrap or "",
            "CAIRN_DATA_DIR": str(s.data_dir),
            # Lets a child notice it was orphaned (supervisor SIGKILLed) and stop itself.
            "CAIRN_SUPERVISOR_PID": str(os.getpid()),
        }
        if name in self._own_metrics:
            env["CAIRN_METRICS_PORT"] = str(self._metrics_port(name))
        if name in self._apis:
            env["CAIRN_API_PROCESSES"] = str(len(self._apis))
            env["CAIRN_API_INSTANCE"] = str(self._apis.index(name) + 1)
        if self._kafka is not None:
            env["CAIRN_KAFKA_IDEMPOTENCE"] = "false"  # Tansu has no InitProducerId
            # Tansu holds fetches until their deadline: keep command latency low.
            env.setdefault("CAIRN_KAFKA_FETCH_MAX_WAIT_MS", "10")
            env.setdefault("CAIRN_KAFKA_SESSION_TIMEOUT_MS", str(EMBEDDED_SESSION_TIMEOUT_MS))
            env.setdefault("CAIRN_KAFKA_COMMAND_RECYCLE_AFTER", str(EMBEDDED_RECYCLE_AFTER))
            # One batch per relay pass, kept for ever: fewer passes (bus/store/relay.py).
            env.setdefault("CAIRN_RELAY_LINGER_MS", str(EMBEDDED_LINGER_MS))
            env.setdefault("CAIRN_RELAY_LINGER_FROM", str(EMBEDDED_LINGER_FROM))
            # The partitions the topics were created with (see EMBEDDED_PARTITIONS).
            env["CAIRN_KAFKA_PARTITIONS"] = str(s.kafka_partitions)
        return env

    async def _stop_children(self, children: dict[str, asyncio.Task[None]]) -> None:
        named = {k for phase in STOP_PHASES for k in phase}
        phases = [*STOP_PHASES, tuple({k for k in self.children.values() if k not in named})]
        for phase in phases:
            names = [n for n in children if self.children[n] in phase]
            for name in names:
                self._halt[name].set()
            if names:
                await asyncio.gather(*(children[n] for n in names), return_exceptions=True)

    def restart_child(self, name: str, while_down: Callable[[], Awaitable[None]]) -> None:
        """Stop the child `name`, run `while_down`, start it again (no backoff)."""
        if name in self._restart:
            self._while_down[name] = while_down
            self._restart[name].set()

    async def _keep_running(self, name: str) -> None:
        """Run one child until stop, restarting it with backoff whenever it dies. (Logged
        as `kind`: its name, api-2 for the second API process.)"""
        kind = self.children[name]
        backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX, jitter=False)
        env = self._child_env(name)
        while not self._halt[name].is_set():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bus.run.cli",
                "run",
                kind,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=_stderr_fd(),
                stderr=_stderr_fd(),
                # Own session: a terminal Ctrl-C reaches only the supervisor, which then
                # stops the children itself, in order, instead of everyone at once.
                start_new_session=True,
            )
            log.info("child started", kind=name, pid=proc.pid)
            exited = asyncio.create_task(proc.wait())
            halting = asyncio.create_task(self._halt[name].wait())
            restarting = asyncio.create_task(self._restart[name].wait())
            await asyncio.wait({exited, halting, restarting}, return_when=asyncio.FIRST_COMPLETED)
            halting.cancel()
            restarting.cancel()
            if self._halt[name].is_set():
                await self._stop_child(name, proc)
                exited.cancel()
                return
            if self._restart[name].is_set():
                self._restart[name].clear()
                log.info("restarting child", kind=name)
                await self._stop_child(name, proc)
                exited.cancel()
                step = self._while_down.pop(name, None)
                if step is not None:
                    try:
                        await step()
                    except Exception:
                        log.exception("step before restarting a child failed", kind=name)
                continue
            code = exited.result()
            if self._stop.is_set():
                await self._halt[name].wait()  # stopping: not restarted, just awaited
                return
            if time.monotonic() - started >= STABLE_AFTER:
                backoff.reset()
            delay = backoff.next()
            log.error("child died; restarting", kind=name, exit_code=code, restart_in=delay)
            await sleep_unless_stopped(self._halt[name], delay)

    async def _stop_child(self, name: str, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        exited = asyncio.create_task(proc.wait())
        forced = asyncio.create_task(self._force.wait())
        await asyncio.wait(
            {exited, forced}, timeout=STOP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        forced.cancel()
        if proc.returncode is None:
            log.warning("child did not stop in time; killing it", kind=name, pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await exited
        log.info("child stopped", kind=name, exit_code=proc.returncode)

    # ---------------------------------------------------------------- banner

    async def _announce_when_ready(self) -> None:
        s = self.settings
        base = f"http://{_display_host(s.host)}:{s.port}"
        healthy = True
        if "api" in self.kinds:
            # /ready is 200 once a command round trip works: the moment to say so.
            path = "/ready" if READY_NEEDS <= set(self.kinds) else "/health"
            healthy = await self._wait_for_health(f"{base}{path}")
        if healthy:
            log.info("ready")
        self._print_banner(base, healthy)

    async def _wait_for_health(self, url: str) -> bool:
        if await wait_for_cairn(url, HEALTH_TIMEOUT):
            return True
        log.error("the API did not answer that it is ready in time; see the logs above", url=url)
        return False

    def _print_banner(self, base: str, healthy: bool) -> None:
        s = self.settings
        rows: list[tuple[str, str]] = []
        if "api" in self.kinds:
            rows += [
                ("API", f"{base}/v1"),
                ("Console", f"{base}/console"),
                ("API docs", f"{base}/schema/swagger"),
                ("OpenAPI", f"{base}/schema/openapi.json"),
                ("AsyncAPI", f"{base}/schema/asyncapi.json"),
                ("Metrics", f"{base}/metrics"),
                ("Health", f"{base}/health"),
                ("Ready", f"{base}/ready"),
            ]
        embedded_pg = " (embedded)" if self._pg is not None else ""
        embedded_kafka = " (embedded)" if self._kafka is not None else ""
        host = _display_host(s.metrics_host)
        rows += [
            (f"Metrics {n}", f"http://{host}:{self._metrics_port(n)}/metrics")
            for n in self._own_metrics
        ]
        pg_url = s.database_url or ""
        if self._pg is not None:
            # Cairn's processes use the socket; people connect over TCP (README).
            pg_url = db.database_url(self._pg.tcp_url, DATABASE_NAME)
        rows += [
            ("Postgres", redact_url(pg_url) + embedded_pg),
            ("Kafka", (s.kafka_bootstrap or "") + embedded_kafka),
            ("Data dir", str(s.data_dir)),
            ("Processes", ", ".join(self.children) or "(none)"),
        ]
        width = max(len(k) for k, _ in rows)
        head = "Cairn is up." if healthy else "Cairn started, but the API is not answering yet."
        lines = [head, *(f"  {k:<{width}}  {v}" for k, v in rows)]
        if "api" in self.kinds:
            lines.append(f"Get a token:  {token_command(s.data_dir)}   (add --admin for an admin)")
        lines.append("Press Ctrl-C to stop.")
        # The data dir, the URLs and the broker's address come from the environment: shown
        # with their control and bidi characters as escapes, never obeyed (bus/terminal.py).
        print("\n".join(map(printable, lines)), file=self.out, flush=True)
