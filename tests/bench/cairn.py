"""The system under test: `cairn up` on its embedded default, in a temporary data dir.

Free ports for the API, the embedded PostgreSQL and the embedded Tansu broker; every
CAIRN_* variable that would point Cairn elsewhere (an external database, broker or blob
store) is removed from its environment, so what is measured is the one-command default.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil

from bus.config.settings import Settings
from bus.run.cli import make_token
from bus.run.embedded import EmbeddedPostgres, free_port
from tests.bench.procs import Managed

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0
STOP_TIMEOUT = 45.0  # the supervisor gives each child 10 s, then stops Kafka and Postgres
EXTERNAL = ("CAIRN_DATABASE_URL", "CAIRN_KAFKA_BOOTSTRAP", "CAIRN_BLOB_STORE", "CAIRN_HOST")
# The one bench user with a quota (objects.put_4k_quota): far more than any run stores (a
# full run's PUTs of it come to some 33 MB), so it never refuses; everyone else ("bench")
# has none, as on a server without CAIRN_QUOTA_BYTES.
QUOTA_USER = "bench-quota"
QUOTA_BYTES = 1 << 30


class Cairn:
    def __init__(self, work: Path, env: dict[str, str] | None = None, name: str = "cairn") -> None:
        """`env` adds settings on top of the default (e.g. an S3 blob store)."""
        self.extra_env = env or {}
        self.data_dir = work / name
        # Three different ports (each is free when picked, but released at once).
        self.port = free_port()
        self.pg_port = free_port(avoid={self.port})
        self.kafka_port = free_port(avoid={self.port, self.pg_port})
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = ""
        self.kafka_bootstrap = ""
        self.token = ""
        self.proc = Managed(
            name,
            [sys.executable, "-m", "bus.run.cli", "up"],
            log=work / f"{name}.log",
            env=self._env(),
            cwd=REPO,
            stop_signal=signal.SIGTERM,
            stop_timeout=STOP_TIMEOUT,
        )
        self.start_seconds = 0.0

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in EXTERNAL}
        env.update(
            CAIRN_DATA_DIR=str(self.data_dir),
            CAIRN_PORT=str(self.port),
            CAIRN_EMBEDDED_PG_PORT=str(self.pg_port),
            CAIRN_EMBEDDED_KAFKA_PORT=str(self.kafka_port),
            # events.sse_fanout holds 1,000 streams of one user (the default allows 100).
            CAIRN_EVENTS_MAX_STREAMS_PER_USER="2000",
            CAIRN_QUOTAS=f"{QUOTA_USER}:{QUOTA_BYTES}",
        )
        env.update(self.extra_env)
        return env

    @property
    def supervisor_pid(self) -> int:
        return self.proc.pid

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def headers_for(self, user: str) -> dict[str, str]:
        """Credentials of another user of the running system (e.g. QUOTA_USER)."""
        settings = Settings.from_env({"CAIRN_DATA_DIR": str(self.data_dir)})
        return {"Authorization": f"Bearer {make_token(settings, user)}"}

    def settings(self) -> Settings:
        """Settings to reach the running system's Postgres and broker from the bench."""
        return Settings.from_env(
            {
                "CAIRN_DATA_DIR": str(self.data_dir),
                "CAIRN_DATABASE_URL": self.database_url,
                "CAIRN_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "CAIRN_KAFKA_IDEMPOTENCE": "false",  # Tansu has no InitProducerId
                # what `cairn up` gives its own processes on the embedded broker
                "CAIRN_KAFKA_FETCH_MAX_WAIT_MS": "10",
            }
        )

    def start(self) -> None:
        """Blocking: start `cairn up` and wait until /ready answers 200."""
        t0 = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc.start()
        deadline = t0 + START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not self.proc.alive():
                    raise RuntimeError(f"cairn up exited at start-up:\n{self.proc.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/ready").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"Cairn not ready after {START_TIMEOUT:.0f} s:\n{self.proc.log_tail()}"
                    )
                time.sleep(0.2)
        runtime = json.loads((self.data_dir / "supervisor.json").read_text())
        self.database_url = runtime["database_url"]
        self.kafka_bootstrap = runtime["kafka_bootstrap"]
        self.token = make_token(Settings.from_env({"CAIRN_DATA_DIR": str(self.data_dir)}), "bench")
        self.start_seconds = time.monotonic() - t0

    def stop(self) -> None:
        """Blocking: SIGTERM the supervisor (it stops children, broker, Postgres in order);
        if that does not finish in time, kill what is left of what it started."""
        if self.proc.proc is None:
            return
        leftovers: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            leftovers = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.stop()
        for p in leftovers:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
        pg = self.data_dir / "pg"
        if (pg / "postmaster.pid").exists():
            # The supervisor did not get to stop its PostgreSQL (it was killed): do it here.
            with contextlib.suppress(Exception):
                EmbeddedPostgres(pg, self.pg_port).stop()
