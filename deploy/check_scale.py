"""Scale-out under load and faults: two processes of every kind, each SIGKILLed in turn.

The multi-process check (check_multiprocess.py) proves the manifests start; this proves the
production shape keeps its promises while processes die. Against ONE embedded PostgreSQL,
ONE Tansu broker and the local S3 server (tests/s3server.py, moto behind a checksum-verifying
proxy), it starts `cairn run KIND` twice for every kind in bus/run/processes.py KINDS (two api
processes on two ports, which the clients alternate between; the second relay is the standby),
then:

1. drives concurrent native (chunked, PUTs alternating between the apis) and tus uploads,
   and downloads of what was acknowledged, from several client threads; and, from one more
   thread, URL fetches (of a local origin server, one new URL each) and copy tasks (of an
   acknowledged file), so the fetch and task workers work, and die, under load too;
2. SIGKILLs one process of each kind, one kind at a time, mid-load; waits until uploads are
   acknowledged without it, restarts it, waits until uploads are acknowledged again;
3. stops the load, waits for relay and projection lag 0, and asserts:
   - every acknowledged upload is a COMPLETED file whose content is byte-exact;
   - every accepted fetch and task COMPLETED exactly once: one FetchCompleted / one
     TaskCompleted per stream, the fetched file byte-exact and created once, each copy
     task's copy created once (one file of its name, a byte-exact copy);
   - no aggregate has a duplicated transition (event store: versions 1..n without gaps,
     one UploadInitiated / UploadCompleted / FileCreated per stream, no chunk index or
     append offset recorded twice);
   - every read model equals a rebuild from the event store (projections/rebuild.py);
   - the Kafka event topics hold every stored event, each stream on one partition, in
     version order (the relay is at-least-once: a re-send after a kill may repeat a run of
     events, never skip ahead);
4. SIGTERMs everything; every process must exit 0.

The clients retry what a client of a scaled deployment retries: a request that failed on
the network or with 502/503 goes to the other api, and a 409
`idempotency_request_in_progress` (the same Idempotency-Key still held by the request a
killed api was running) is retried after its Retry-After; a tus PATCH resumes from HEAD's offset;
a native upload re-sends its chunks (same bytes again = 200). An upload counts as
acknowledged only once `complete` answered 200 or the last tus PATCH 204 (then its file_id
is read from GET /v1/uploads/{id}).

Small form (CI, deploy/check.sh): a few client threads and small files, about a minute or
two. `--full` (by hand, `just scale --full`): more clients, bigger files, a longer load.
`--measure` runs the same load without kills, first with one process of each kind then with
two, and prints uploads/s and MB/s of each (the numbers in deploy/README.md).

Run with the project's development environment (moto is a dev dependency):
`uv run python deploy/check_scale.py [--full] [--measure] [--keep]`. Traffic stays on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.s3server and the project's packages

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres, free_port  # noqa: E402
from bus.run.processes import KINDS  # noqa: E402
from bus.store import db  # noqa: E402
from tests.s3server import S3Server  # noqa: E402

HOST = "127.0.0.1"
BUCKET = "cairn-scale"
GRACE_SECONDS = 30  # terminationGracePeriodSeconds of the Deployments
START_TIMEOUT = 180.0  # the machine is shared and loaded: generous, never a measurement
PROGRESS_TIMEOUT = 240.0
JWT_SECRET = "scale-check-jwt-secret-0123456789-0123456789"
RETRY_STATUSES = {502, 503, 504}


def _in_progress(r: httpx.Response | None) -> bool:
    """409 `idempotency_request_in_progress`: the same key's first request still holds it."""
    if r is None or r.status_code != 409:
        return False
    try:
        return bool(r.json()["error"]["code"] == "idempotency_request_in_progress")
    except (ValueError, KeyError, TypeError):
        return False


def _retry_after(r: httpx.Response | None) -> float:
    try:
        return min(5.0, max(0.2, float(r.headers.get("retry-after", "1")))) if r else 0.2
    except ValueError:
        return 1.0


@dataclass(frozen=True)
class Form:
    clients: int
    min_size: int
    max_size: int
    chunk: int
    acks_between: int  # acknowledged uploads awaited after a kill, and after the restart
    measure_seconds: float


SMALL = Form(
    clients=3,
    min_size=20_000,
    max_size=200_000,
    chunk=64 * 1024,
    acks_between=2,
    measure_seconds=30,
)
FULL = Form(
    clients=8,
    min_size=256 * 1024,
    max_size=4 * 1024 * 1024,
    chunk=1024 * 1024,
    acks_between=8,
    measure_seconds=90,
)


class CheckFailed(Exception):
    pass


def fail(message: str) -> NoReturn:
    raise CheckFailed(message)


def ok(message: str) -> None:
    print(f"  ok    {message}", flush=True)


# ------------------------------------------------------------------ processes


@dataclass
class Proc:
    kind: str
    index: int
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    port: int = 0  # the api's HTTP port, or the metrics port of the other kinds

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(f"      | {line}" for line in text[-lines:])


class Cluster:
    """`cairn run KIND` processes sharing one database, broker and S3 bucket."""

    def __init__(self, workdir: Path, bindir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.bindir = bindir
        self.env = env
        self.procs: list[Proc] = []

    def add(self, kind: str, index: int) -> Proc:
        port = free_port()
        data_dir = self.workdir / "procs" / f"{kind}-{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "CAIRN_DATA_DIR": str(data_dir), "CAIRN_METRICS_HOST": HOST}
        if kind == "api":
            env["CAIRN_PORT"] = str(port)
        else:
            env["CAIRN_METRICS_PORT"] = str(port)
        proc = Proc(kind, index, env, self.workdir / "logs" / f"{kind}-{index}.log", port=port)
        self.procs.append(proc)
        self.start(proc)
        return proc

    def start(self, proc: Proc) -> None:
        proc.log.parent.mkdir(exist_ok=True)
        with open(proc.log, "ab") as out:
            proc.popen = subprocess.Popen(
                [str(self.bindir / "cairn"), "run", proc.kind],
                env=proc.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, proc: Proc) -> None:
        assert proc.popen is not None
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait()
        proc.popen = None

    def assert_alive(self) -> None:
        for p in self.procs:
            if p.popen is not None and p.popen.poll() is not None:
                fail(f"{p.name} died with exit code {p.popen.returncode}\n{p.tail()}")

    def wait_up(self, proc: Proc) -> None:
        """The api answers /ready 200; another kind serves its /metrics."""
        path = "/ready" if proc.kind == "api" else "/metrics"
        wait_for(
            f"{proc.name} {path} answers 200",
            lambda: _get_ok(f"{proc.url}{path}"),
            START_TIMEOUT,
            self,
        )

    def stop_all(self, check: bool) -> list[str]:
        running = [p for p in self.procs if p.popen is not None and p.popen.poll() is None]
        for p in running:
            assert p.popen is not None
            p.popen.send_signal(signal.SIGTERM)
        problems = []
        deadline = time.monotonic() + GRACE_SECONDS
        for p in running:
            assert p.popen is not None
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait()
                problems.append(f"{p.name} ignored SIGTERM for {GRACE_SECONDS}s (killed)")
                continue
            if check and p.popen.returncode != 0:
                problems.append(f"{p.name} exited {p.popen.returncode} after SIGTERM\n{p.tail()}")
        return problems


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(what: str, predicate: Any, timeout: float, cluster: Cluster | None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster is not None:
            cluster.assert_alive()
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    fail(f"{what}: not within {timeout:.0f}s")


# ------------------------------------------------------------------ load


@dataclass
class Acked:
    upload_id: str
    file_id: str
    seed: int
    size: int
    sha256: str
    via: str  # "native" or "tus"


def content(seed: int, size: int) -> bytes:
    """An upload's bytes, regenerated from its seed (nothing holds every file in memory)."""
    return random.Random(seed).randbytes(size)


class Origin:
    """The origin fetches download from: `/o/SEED/SIZE` is `content(SEED, SIZE)`, with a
    strong ETag and single byte ranges (a fetch taken over after a kill resumes with
    `Range` + `If-Range`). A threaded HTTP server on loopback."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                try:
                    _, o, seed, size = self.path.split("/")
                    assert o == "o"
                    data = content(int(seed), int(size))
                except (ValueError, AssertionError):
                    self.send_error(404)
                    return
                etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
                start, status = 0, 200
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and rng.startswith("bytes=") and if_range in (None, etag):
                    first = rng[len("bytes=") :].split("-", 1)[0]
                    if first.isdigit() and int(first) < len(data):
                        start, status = int(first), 206
                part = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(part)))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if body:
                    self.wfile.write(part)

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, seed: int, size: int) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}/o/{seed}/{size}"


@dataclass
class Fetched:
    fetch_id: str
    seed: int
    size: int


@dataclass
class Tasked:
    task_id: str
    source: Acked
    prefix: str


@dataclass
class Load:
    """Client threads uploading (native and tus, alternately) and downloading, with retries;
    with an `origin`, one more thread asking for fetches and copy tasks."""

    apis: list[str]
    token: str
    form: Form
    origin: Origin | None = None
    fetches: list[Fetched] = field(default_factory=list)
    tasks: list[Tasked] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[Acked] = field(default_factory=list)
    downloads: int = 0
    bytes_up: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for i in range(self.form.clients):
            t = threading.Thread(target=self._client, args=(i,), daemon=True, name=f"client-{i}")
            t.start()
            self.threads.append(t)
        if self.origin is not None:
            t = threading.Thread(target=self._work, daemon=True, name="work")
            t.start()
            self.threads.append(t)

    def work_count(self) -> tuple[int, int]:
        with self.lock:
            return len(self.fetches), len(self.tasks)

    # -- fetches and tasks (accepted = 202; they complete in the background)

    def _work(self) -> None:
        assert self.origin is not None
        rng = random.Random(-1)
        client = [
            httpx.Client(base_url=u, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
            for u in self.apis
        ]
        turn = [0]
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                size = rng.randint(self.form.min_size, self.form.max_size)
                seed = rng.getrandbits(63)
                # A new URL each time (the same URL again is the same fetch).
                r = self._request(
                    client,
                    turn,
                    "POST",
                    "/v1/fetches",
                    {202},
                    json={"url": self.origin.url(seed, size)},
                )
                if r.status_code != 202:
                    raise CheckFailed(f"POST /v1/fetches: {r.status_code} {r.text[:300]}")
                with self.lock:
                    self.fetches.append(Fetched(r.json()["id"], seed, size))
                    source = rng.choice(self.acked) if self.acked else None
                if source is not None:
                    prefix = f"copy{n}-"
                    body = {
                        "type": "copy",
                        "params": {
                            "files": [source.file_id],
                            "to": {"bucket": "default", "prefix": prefix},
                        },
                    }
                    r = self._request(
                        client,
                        turn,
                        "POST",
                        "/v1/tasks",
                        {202},
                        json=body,
                        headers={"Idempotency-Key": f"task-{n}"},
                    )
                    if r.status_code != 202:
                        raise CheckFailed(f"POST /v1/tasks: {r.status_code} {r.text[:300]}")
                    with self.lock:
                        self.tasks.append(Tasked(r.json()["id"], source, prefix))
                self.stop.wait(1.0)  # pacing: about one fetch and one task a second
        except CheckFailed as e:
            with self.lock:
                self.errors.append(f"work: {e}")
        finally:
            for c in client:
                c.close()

    def finish(self, timeout: float = PROGRESS_TIMEOUT) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout)
            if t.is_alive():
                fail(f"{t.name} did not finish its upload within {timeout:.0f}s")
        if self.errors:
            fail("client errors:\n    " + "\n    ".join(self.errors[:10]))

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    # -- one client

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        clients = [
            httpx.Client(base_url=u, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
            for u in self.apis
        ]
        turn = [n]
        try:
            i = 0
            while not self.stop.is_set():
                size = rng.randint(self.form.min_size, self.form.max_size)
                seed = rng.getrandbits(63)
                via = "tus" if (i + n) % 2 else "native"
                i += 1
                try:
                    done = (self._tus if via == "tus" else self._native)(clients, turn, seed, size)
                    with self.lock:
                        self.acked.append(done)
                        self.bytes_up += size
                    with self.lock:
                        earlier = rng.choice(self.acked)
                    self._download(clients, turn, earlier)
                except CheckFailed as e:
                    with self.lock:
                        self.errors.append(f"client {n}: {e}")
                    return
        finally:
            for c in clients:
                c.close()

    def _request(
        self,
        clients: list[httpx.Client],
        turn: list[int],
        method: str,
        url: str,
        ok_statuses: set[int],
        **kw: Any,
    ) -> httpx.Response:
        """One request, alternating apis; network errors, 502/503/504 and a key still in
        progress retried on the other."""
        deadline = time.monotonic() + PROGRESS_TIMEOUT
        last = ""
        r: httpx.Response | None = None
        while time.monotonic() < deadline:
            c = clients[turn[0] % len(clients)]
            turn[0] += 1
            r = None
            try:
                r = c.request(method, url, **kw)
            except httpx.HTTPError as e:
                last = f"{type(e).__name__} via {c.base_url}"
            else:
                if r.status_code in ok_statuses:
                    return r
                if r.status_code not in RETRY_STATUSES and not _in_progress(r):
                    return r  # the caller decides
                last = f"{r.status_code} via {c.base_url}: {r.text[:200]}"
            with self.lock:
                self.retries += 1
            # Back-off between retries, not a wait for an event; an Idempotency-Key still
            # held by a request on a killed api answers 409 with Retry-After until its
            # lease runs out: a client retries after that.
            time.sleep(_retry_after(r) if _in_progress(r) else 0.2)
        fail(f"{method} {url}: no answer within {PROGRESS_TIMEOUT:.0f}s (last: {last})")

    def _native(self, clients: list[httpx.Client], turn: list[int], seed: int, size: int) -> Acked:
        data = content(seed, size)
        sha = hashlib.sha256(data).hexdigest()
        body = {"file_name": f"n-{seed}.bin", "file_size": size, "chunk_size": self.form.chunk}
        key = {"Idempotency-Key": f"create-{seed}"}
        r = self._request(clients, turn, "POST", "/v1/uploads", {201}, json=body, headers=key)
        if r.status_code != 201:
            fail(f"POST /v1/uploads: {r.status_code} {r.text[:300]}")
        upload_id = r.json()["id"]
        for i in range(0, size, self.form.chunk):
            piece = data[i : i + self.form.chunk]
            path = f"/v1/uploads/{upload_id}/chunks/{i // self.form.chunk}"
            r = self._request(clients, turn, "PUT", path, {200, 201}, content=piece)
            if r.status_code not in (200, 201):
                fail(f"PUT {path}: {r.status_code} {r.text[:300]}")
        path = f"/v1/uploads/{upload_id}/complete"
        r = self._request(
            clients, turn, "POST", path, {200}, headers={"Idempotency-Key": f"c-{seed}"}
        )
        if r.status_code == 409:
            # A first `complete` that finished on an api killed before it answered (or the
            # files handler finishing it) leaves the upload COMPLETED: that is our answer.
            r = self._request(clients, turn, "GET", f"/v1/uploads/{upload_id}", {200})
            if r.status_code == 200 and r.json().get("status") == "COMPLETED":
                fid = r.json().get("file_id")
                return Acked(upload_id, fid, seed, size, sha, "native")
        if r.status_code != 200:
            fail(f"POST {path}: {r.status_code} {r.text[:300]}")
        if r.json().get("sha256") != sha:
            fail(f"POST {path}: sha256 {r.json().get('sha256')} != {sha}")
        return Acked(upload_id, r.json()["file_id"], seed, size, sha, "native")

    def _tus(self, clients: list[httpx.Client], turn: list[int], seed: int, size: int) -> Acked:
        data = content(seed, size)
        tus = {"Tus-Resumable": "1.0.0"}
        name = base64.b64encode(f"t-{seed}.bin".encode()).decode()
        r = self._request(
            clients,
            turn,
            "POST",
            "/v1/tus",
            {201},
            headers={**tus, "Upload-Length": str(size), "Upload-Metadata": f"filename {name}"},
        )
        if r.status_code != 201:
            fail(f"POST /v1/tus: {r.status_code} {r.text[:300]}")
        upload_id = r.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
        path = f"/v1/tus/{upload_id}"
        offset = 0
        step = max(self.form.chunk, size // 3 + 1)  # a few PATCHes per upload
        while offset < size:
            piece = data[offset : offset + step]
            headers = {
                **tus,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            }
            r = self._request(clients, turn, "PATCH", path, {204}, content=piece, headers=headers)
            if r.status_code == 204:
                offset = int(r.headers["Upload-Offset"])
                continue
            if r.status_code != 409:
                fail(f"PATCH {path}: {r.status_code} {r.text[:300]}")
            # 409: our earlier PATCH got further than we were told: resume from the server's.
            r = self._request(clients, turn, "HEAD", path, {200}, headers=tus)
            offset = int(r.headers["Upload-Offset"])

        # Completed with the last PATCH (or by the files handler if that api died after
        # storing the bytes): the file id is on the upload.
        def file_id() -> str | None:
            r = self._request(clients, turn, "GET", f"/v1/uploads/{upload_id}", {200})
            return r.json().get("file_id") if r.status_code == 200 else None

        fid = wait_for(f"tus upload {upload_id} has a file_id", file_id, PROGRESS_TIMEOUT, None)
        sha = hashlib.sha256(data).hexdigest()
        return Acked(upload_id, fid, seed, size, sha, "tus")

    def _download(self, clients: list[httpx.Client], turn: list[int], a: Acked) -> None:
        r = self._request(clients, turn, "GET", f"/v1/files/{a.file_id}/content", {200})
        if r.status_code != 200 or hashlib.sha256(r.content).hexdigest() != a.sha256:
            fail(f"download of {a.file_id}: {r.status_code}, {len(r.content)} bytes, wrong content")
        with self.lock:
            self.downloads += 1


# ------------------------------------------------------------------ the system


@dataclass
class System:
    workdir: Path
    bindir: Path
    pg: EmbeddedPostgres
    kafka: EmbeddedKafka
    s3: S3Server
    env: dict[str, str]
    database_url: str

    @classmethod
    def start(cls, workdir: Path, bindir: Path) -> System:
        pg = EmbeddedPostgres(workdir / "pg", free_port())
        kafka = EmbeddedKafka(free_port(), log_path=workdir / "tansu.log")
        s3 = S3Server()
        pg.start()
        try:
            kafka.start()
            s3.start()
            s3.create_bucket(BUCKET)
            database_url = asyncio.run(db.ensure_database(pg.url, "cairn"))
        except BaseException:
            s3.stop()
            kafka.stop()
            pg.stop()
            raise
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRN_", "AWS_"))}
        env = {
            **base,
            "CAIRN_DATABASE_URL": database_url,
            "CAIRN_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "CAIRN_KAFKA_IDEMPOTENCE": "false",  # Tansu has no InitProducerId
            "CAIRN_KAFKA_FETCH_MAX_WAIT_MS": "10",
            "CAIRN_KAFKA_PARTITIONS": "4",
            "CAIRN_BLOB_STORE": f"s3://{BUCKET}/blobs",
            "CAIRN_S3_ENDPOINT": s3.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "CAIRN_JWT_SECRET": JWT_SECRET,
            "CAIRN_HOST": HOST,
            "CAIRN_COMMAND_TIMEOUT": "30",
            # The fetches' origin is on loopback; a killed worker's leases run out sooner.
            "CAIRN_FETCH_ALLOW_PRIVATE": "true",
            "CAIRN_FETCH_LEASE": "10",
            "CAIRN_TASK_LEASE_SECONDS": "10",
            "CAIRN_LOG_LEVEL": "info",
        }
        # Its TCP address, for a person to connect to (the processes use its socket).
        ok(f"PostgreSQL {pg.tcp_url.split('@')[1]}, Tansu {kafka.bootstrap}, S3 {s3.endpoint}")
        return cls(workdir, bindir, pg, kafka, s3, env, database_url)

    def setup(self) -> None:
        """What the setup Job does: migrations, then the topics."""
        env = {**self.env, "CAIRN_DATA_DIR": str(self.workdir / "setup")}
        for args in (
            [str(self.bindir / "cairn"), "migrate"],
            [
                sys.executable,
                "-c",
                "import asyncio; from bus.kafka.clients import ensure_topics;"
                " from bus.config.settings import Settings;"
                " asyncio.run(ensure_topics(Settings.from_env()))",
            ],
        ):
            r = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                fail(f"{' '.join(args[:2])}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        ok("migrated, topics created")

    def token(self) -> str:
        env = {**self.env, "CAIRN_DATA_DIR": str(self.workdir / "setup")}
        return subprocess.run(
            [str(self.bindir / "cairn"), "token", "scale-check"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def stop(self) -> None:
        self.s3.stop()
        self.kafka.stop()
        self.pg.stop()


def start_cluster(system: System, per_kind: int) -> tuple[Cluster, dict[str, list[Proc]]]:
    cluster = Cluster(system.workdir, system.bindir, system.env)
    by_kind: dict[str, list[Proc]] = {}
    for kind in KINDS:
        by_kind[kind] = [cluster.add(kind, i) for i in range(per_kind)]
    for procs in by_kind.values():
        for p in procs:
            cluster.wait_up(p)
    ok(f"{per_kind} process(es) of each kind up: {', '.join(KINDS)}")
    return cluster, by_kind


def caught_up(api: str, since: float) -> bool:
    """Relay and projection lag 0 in the api's /metrics, as read after `since` (monotonic):
    those gauges may be up to 5 s old (api/routes/ops.py, LagGauges)."""
    asked = time.monotonic()
    try:
        text = httpx.get(f"{api}/metrics", timeout=10).text
    except httpx.HTTPError:
        return False
    lines = text.splitlines()
    ages = [float(x.split()[-1]) for x in lines if x.startswith("cairn_lag_gauges_age_seconds ")]
    if not ages or ages[0] >= asked - since:
        return False
    lags = [
        line
        for line in lines
        if line.startswith(("cairn_relay_lag_events", "cairn_projection_lag_events"))
    ]
    return bool(lags) and all(line.rsplit(" ", 1)[1] in ("0", "0.0") for line in lags)


# ------------------------------------------------------------------ the checks afterwards


async def check_event_store(database_url: str) -> dict[str, list[int]]:
    """No duplicated transition; returns every stream's versions (for the Kafka check)."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        gaps = await conn.fetch(
            "SELECT stream_id, count(*) AS n, max(version) AS m FROM eventstore.events"
            " GROUP BY stream_id HAVING count(*) <> max(version)"
        )
        if gaps:
            fail(f"streams whose versions are not 1..n: {[dict(r) for r in gaps[:5]]}")
        dup = await conn.fetch(
            """
            SELECT stream_id, event_type, k, count(*) AS n FROM (
                SELECT stream_id, event_type,
                       CASE event_type
                           WHEN 'UploadChunkStored' THEN data->>'index'
                           WHEN 'UploadBytesAppended' THEN data->>'offset'
                           WHEN 'FetchBytesAppended' THEN data->>'offset'
                           ELSE '' END AS k
                FROM eventstore.events
                WHERE event_type IN ('UploadInitiated', 'UploadCompleted', 'FileCreated',
                                     'UploadChunkStored', 'UploadBytesAppended',
                                     'UploadAborted', 'UploadFailed', 'FileDeleted',
                                     'FetchRequested', 'FetchCompleted', 'FetchFailed',
                                     'FetchBytesAppended', 'TaskCreated', 'TaskCompleted',
                                     'TaskFailed')
            ) t GROUP BY stream_id, event_type, k HAVING count(*) > 1
            """
        )
        if dup:
            fail(f"duplicated transitions: {[dict(r) for r in dup[:5]]}")
        versions: dict[str, list[int]] = defaultdict(list)
        for r in await conn.fetch(
            "SELECT stream_id, version FROM eventstore.events ORDER BY stream_id, version"
        ):
            versions[r["stream_id"]].append(r["version"])
        return versions
    finally:
        await conn.close()


async def wait_projected(database_url: str, timeout: float = 60.0) -> None:
    """Until every projection has applied every stored event of its aggregates (per stream,
    `readmodel.applied` at the stream's last version). The read models are compared with
    their rebuild only then: a projector killed and restarted under load is still catching
    up, and its group may be rebalancing, when the load stops (one run compared three file
    streams the projector had not reached yet)."""
    import asyncpg

    from domain.registry import stream_id_for
    from projections.rebuild import PROJECTIONS

    behind_sql = (
        "SELECT count(*) FROM (SELECT stream_id, max(version) AS v FROM eventstore.events"
        " WHERE stream_id LIKE ANY($2::text[]) GROUP BY stream_id) e"
        " LEFT JOIN readmodel.applied a ON a.projection = $1 AND a.stream_id = e.stream_id"
        " WHERE coalesce(a.version, 0) < e.v"
    )
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            behind = {}
            for name, projection in PROJECTIONS.items():
                patterns = [stream_id_for(a, "%") for a in projection.aggregates]
                n = await conn.fetchval(behind_sql, name, patterns)
                if n:
                    behind[name] = n
            if not behind:
                return
            if time.monotonic() > deadline:
                fail(f"read models still behind the event store after {timeout:.0f} s: {behind}")
            await asyncio.sleep(0.2)  # polling a condition, with a deadline
    finally:
        await conn.close()


async def check_rebuild(database_url: str) -> int:
    """Every read model equals a rebuild of it from the event store; returns rows compared."""
    from bus.store.db import create_pool
    from projections.rebuild import PROJECTIONS, rebuild

    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        tables = sorted(
            {t for p in PROJECTIONS.values() for t in p.tables}
            | {"readmodel.usage_daily", "readmodel.applied"}
        )

        async def snapshot() -> dict[str, list[tuple[Any, ...]]]:
            out = {}
            async with pool.acquire() as conn:
                for t in tables:
                    rows = await conn.fetch(f"SELECT * FROM {t}")
                    out[t] = sorted((tuple(r.values()) for r in rows), key=repr)
            return out

        live = await snapshot()
        for name in PROJECTIONS:
            await rebuild(pool, name)
        rebuilt = await snapshot()
        for t in tables:
            if live[t] != rebuilt[t]:
                only_live = [r for r in live[t] if r not in rebuilt[t]][:3]
                only_rebuilt = [r for r in rebuilt[t] if r not in live[t]][:3]
                fail(
                    f"{t} differs from its rebuild: live-only {only_live}, rebuilt-only {only_rebuilt}"
                )
        return sum(len(v) for v in live.values())
    finally:
        await pool.close()


async def check_kafka(system: System, versions: dict[str, list[int]]) -> tuple[int, int]:
    """Every stored event on Kafka, each stream on one partition, never ahead of its order."""
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from bus.config.settings import Settings
    from bus.kafka.clients import AGGREGATES

    settings = Settings.from_env(system.env)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=system.kafka.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        tps = []
        for a in AGGREGATES:
            topic = settings.topic(a)
            for p in consumer.partitions_for_topic(topic) or await _partitions(consumer, topic):
                tps.append(TopicPartition(topic, p))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        seen: dict[str, list[int]] = defaultdict(list)
        partition_of: dict[str, tuple[str, int]] = {}
        messages = 0
        deadline = time.monotonic() + PROGRESS_TIMEOUT

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            if time.monotonic() > deadline:
                fail("the event topics could not be read to their end")
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, msgs in batch.items():
                for m in msgs:
                    ev = orjson.loads(m.value)
                    stream = ev["stream_id"]
                    where = (tp.topic, tp.partition)
                    if partition_of.setdefault(stream, where) != where:
                        fail(f"{stream} on two partitions: {partition_of[stream]} and {where}")
                    seen[stream].append(ev["version"])
                    messages += 1
    finally:
        await consumer.stop()
    for stream, stored in versions.items():
        got = seen.get(stream, [])
        if sorted(set(got)) != stored:
            fail(f"{stream}: Kafka holds versions {sorted(set(got))}, the store {stored}")
        high = 0
        for v in got:
            if v > high + 1:
                fail(f"{stream}: version {v} published before {high + 1} ({got})")
            high = max(high, v)
    return messages, messages - sum(len(v) for v in versions.values())


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # aiokafka learns of topics lazily
    return consumer.partitions_for_topic(topic) or set()


def _finished(c: httpx.Client, url: str, what: str) -> dict[str, Any]:
    """Poll a fetch or task until it is terminal; fail unless it COMPLETED."""

    def terminal() -> dict[str, Any] | None:
        r = c.get(url)
        if r.status_code != 200:
            return None
        body: dict[str, Any] = r.json()
        return body if body.get("status") in ("COMPLETED", "FAILED", "CANCELLED") else None

    body: dict[str, Any] = wait_for(f"{what} finished", terminal, PROGRESS_TIMEOUT, None)
    if body["status"] != "COMPLETED":
        fail(f"{what}: {body['status']} {body.get('last_error') or body.get('error')}")
    return body


def verify_work(load: Load, apis: list[str]) -> None:
    """Every accepted fetch and copy task COMPLETED, and its file exists once, byte-exact."""
    with httpx.Client(headers={"Authorization": f"Bearer {load.token}"}, timeout=60) as c:
        for i, f in enumerate(load.fetches):
            api = apis[i % len(apis)]
            body = _finished(c, f"{api}/v1/fetches/{f.fetch_id}", f"fetch {f.fetch_id}")
            url = f"{api}/v1/files/{body['file_id']}/content"

            # The actor creates the file right after appending the completion, before it
            # answers (domain.policies.follow_ups); an actor host SIGKILLed between the two
            # appends leaves it to the redelivered command or the files handler, either
            # maybe rebalancing after its own kill. So the file may come a little after.
            def present(url: str = url) -> httpx.Response | None:
                r = c.get(url)
                return None if r.status_code == 404 else r

            r = wait_for(f"fetch {f.fetch_id}: its file", present, PROGRESS_TIMEOUT, None)
            if r.status_code != 200 or r.content != content(f.seed, f.size):
                fail(f"fetch {f.fetch_id}: its file answered {r.status_code}, wrong content")
        for i, t in enumerate(load.tasks):
            api = apis[i % len(apis)]
            _finished(c, f"{api}/v1/tasks/{t.task_id}", f"task {t.task_id}")

            # The read model lags the task's completion a little.
            def copies(t: Tasked = t, api: str = api) -> list[dict[str, Any]] | None:
                r = c.get(f"{api}/v1/files", params={"prefix": t.prefix, "limit": 10})
                items: list[dict[str, Any]] = r.json()["items"] if r.status_code == 200 else []
                return items or None

            found = wait_for(f"task {t.task_id}'s copy listed", copies, PROGRESS_TIMEOUT, None)
            if len(found) != 1:
                fail(f"task {t.task_id}: {len(found)} files named {t.prefix}*, not one")
            r = c.get(f"{api}/v1/files/{found[0]['id']}/content")
            if r.status_code != 200 or r.content != content(t.source.seed, t.source.size):
                fail(f"task {t.task_id}: the copy answered {r.status_code}, wrong content")
    ok(
        f"all {len(load.fetches)} fetches and {len(load.tasks)} copy tasks COMPLETED once, "
        "their files byte-exact"
    )


async def check_work_once(database_url: str) -> tuple[int, int]:
    """One FetchCompleted per fetch and one TaskCompleted per task, and nothing more."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT event_type, count(*) AS streams, sum(n) AS events FROM ("
            " SELECT stream_id, event_type, count(*) AS n FROM eventstore.events"
            " WHERE event_type IN ('FetchCompleted', 'TaskCompleted')"
            " GROUP BY stream_id, event_type) t GROUP BY event_type"
        )
    finally:
        await conn.close()
    got = {r["event_type"]: (r["streams"], r["events"]) for r in rows}
    return got.get("FetchCompleted", (0, 0))[1], got.get("TaskCompleted", (0, 0))[1]


def verify(system: System, load: Load, apis: list[str]) -> None:
    with httpx.Client(headers={"Authorization": f"Bearer {load.token}"}, timeout=60) as c:
        for i, a in enumerate(load.acked):
            r = c.get(f"{apis[i % len(apis)]}/v1/files/{a.file_id}/content")
            if r.status_code != 200 or r.content != content(a.seed, a.size):
                fail(
                    f"acknowledged {a.via} upload {a.upload_id}: file {a.file_id} "
                    f"answered {r.status_code} with {len(r.content)} of {a.size} bytes"
                )
            r = c.get(f"{apis[0]}/v1/uploads/{a.upload_id}")
            if r.status_code != 200 or r.json().get("status") != "COMPLETED":
                fail(f"upload {a.upload_id}: {r.status_code} {r.text[:200]}")
    ok(f"all {len(load.acked)} acknowledged uploads COMPLETED and byte-exact")
    if load.origin is not None:
        verify_work(load, apis)
        fetched, tasked = asyncio.run(check_work_once(system.database_url))
        if (fetched, tasked) != (len(load.fetches), len(load.tasks)):
            fail(
                f"event store: {fetched} FetchCompleted for {len(load.fetches)} fetches, "
                f"{tasked} TaskCompleted for {len(load.tasks)} tasks"
            )
        ok(f"event store: exactly {fetched} FetchCompleted and {tasked} TaskCompleted")
    versions = asyncio.run(check_event_store(system.database_url))
    ok(f"event store: {len(versions)} streams, versions 1..n, no duplicated transition")
    asyncio.run(wait_projected(system.database_url))
    rows = asyncio.run(check_rebuild(system.database_url))
    ok(f"read models equal their rebuild from the event store ({rows} rows)")
    messages, repeats = asyncio.run(check_kafka(system, versions))
    ok(
        f"Kafka: every event on its stream's partition in order ({messages} messages, "
        f"{repeats} re-sent by a relay after a kill)"
    )


# ------------------------------------------------------------------ runs


def run_faults(system: System, form: Form) -> None:
    cluster, by_kind = start_cluster(system, 2)
    origin = Origin()
    origin.start()
    try:
        apis = [p.url for p in by_kind["api"]]
        token = system.token()
        load = Load(apis, token, form, origin=origin)
        load.start()
        wait_for(
            "first uploads acknowledged, a fetch and a task accepted",
            lambda: (
                (load.count() >= form.acks_between and min(load.work_count()) >= 1) or load.errors
            ),
            PROGRESS_TIMEOUT,
            cluster,
        )
        if load.errors:
            load.finish()
        ok(
            f"load running: {form.clients} clients, native and tus, across {len(apis)} apis;"
            " fetches and copy tasks"
        )
        for kind, procs in by_kind.items():
            victim = procs[0]
            if kind == "relay":  # the leader, when one says so: the interesting one to lose
                victim = next((p for p in procs if "relay.leader" in p.log.read_text()), victim)
            before = load.count()
            cluster.kill(victim)
            wait_for(
                f"uploads acknowledged with {victim.name} dead",
                lambda b=before: load.count() >= b + form.acks_between or load.errors,
                PROGRESS_TIMEOUT,
                cluster,
            )
            if load.errors:
                load.finish()
            cluster.start(victim)
            cluster.wait_up(victim)
            before = load.count()
            wait_for(
                f"uploads acknowledged after {victim.name} restarted",
                lambda b=before: load.count() >= b + form.acks_between or load.errors,
                PROGRESS_TIMEOUT,
                cluster,
            )
            if load.errors:
                load.finish()
            ok(f"SIGKILLed {victim.name} mid-load, restarted it; uploads kept being acknowledged")
        load.finish()
        ok(
            f"load stopped: {len(load.acked)} uploads acknowledged, {load.downloads} downloads "
            f"checked, {len(load.fetches)} fetches and {len(load.tasks)} tasks accepted, "
            f"{load.retries} retried requests"
        )
        since = time.monotonic()
        wait_for(
            "relay and projection lag 0",
            lambda: caught_up(apis[0], since),
            PROGRESS_TIMEOUT,
            cluster,
        )
        verify(system, load, apis)
        cluster.assert_alive()
        problems = cluster.stop_all(check=True)
        cluster = None  # type: ignore[assignment]
        if problems:
            fail("; ".join(problems))
        ok("every process exited 0 on SIGTERM")
    finally:
        if cluster is not None:
            cluster.stop_all(check=False)
        origin.stop()


def run_measure(system: System, form: Form) -> None:
    """The same load without faults, one then two processes of each kind."""
    results = []
    for n in (1, 2):
        cluster, by_kind = start_cluster(system, n)
        try:
            apis = [p.url for p in by_kind["api"]]
            load = Load(apis, system.token(), form)
            load.start()
            wait_for(
                "warm-up uploads",
                lambda ld=load: ld.count() >= form.clients,
                PROGRESS_TIMEOUT,
                cluster,
            )
            count0, bytes0, t0 = load.count(), load.bytes_up, time.monotonic()
            time.sleep(form.measure_seconds)  # the measured window itself, not a wait
            count1, bytes1, t1 = load.count(), load.bytes_up, time.monotonic()
            load.finish()
            rate, mbs = (count1 - count0) / (t1 - t0), (bytes1 - bytes0) / (t1 - t0) / 1e6
            load_avg = os.getloadavg()[0]
            results.append((n, rate, mbs, load_avg))
            ok(
                f"{n} of each kind: {rate:.2f} uploads/s, {mbs:.2f} MB/s up "
                f"(+ a download each), load average {load_avg:.1f}"
            )
        finally:
            problems = cluster.stop_all(check=False)
            for p in problems:
                print(f"  warn  {p}")
    (_, r1, m1, _), (_, r2, m2, _) = results
    print(
        f"\nscale-out on {os.cpu_count()} cores: uploads/s x{r2 / r1:.2f}, MB/s x{m2 / m1:.2f} "
        f"from 1 to 2 processes of each kind"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the full form (by hand): more, bigger")
    ap.add_argument(
        "--measure",
        action="store_true",
        help="throughput with 1 then 2 processes of each kind, no kills",
    )
    ap.add_argument(
        "--bindir",
        type=Path,
        default=Path(sys.executable).parent,
        help="where `cairn` lives (default: next to this Python)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    args = ap.parse_args()
    form = FULL if args.full else SMALL
    workdir = Path(tempfile.mkdtemp(prefix="cairn-scale-check-"))
    started = time.monotonic()
    system = None
    try:
        system = System.start(workdir, args.bindir.resolve())
        system.setup()
        (run_measure if args.measure else run_faults)(system, form)
    except CheckFailed as e:
        print(f"  FAIL  {e}", flush=True)
        print(f"scale check FAILED after {time.monotonic() - started:.0f}s; logs in {workdir}")
        return 1
    finally:
        if system is not None:
            system.stop()
    print(f"scale check passed in {time.monotonic() - started:.0f}s")
    if args.keep:
        print(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
