"""Run Cairn the way deploy/k8s runs it, as separate OS processes, and prove it works.

Every container of the Kubernetes manifests becomes one OS process here, started with
the manifest's own command/args and environment (ConfigMap + Secret resolved), one per
replica, against the embedded PostgreSQL and Tansu broker on free loopback ports:

1. the Deployments' `wait-for-setup` init container is started first and must keep
   waiting, because nothing is migrated yet;
2. the `cairn-setup` Job: `cairn migrate`, then the topics one-liner;
3. the waiting init container must now finish, and every Deployment's does at once;
4. every replica of every kind starts (`cairn run KIND`; 2 api, 2 actors, 2 relays...);
5. GET /health and GET /ready answer 200 on every api replica;
6. a smoke run across replicas: token from `cairn token`, a chunked upload created on one
   api and finished on another, the bytes read back, a signed URL made by one api (asked
   through a proxy: it names the proxy's https origin) opened on another (the replicas
   share the signing key), the read model (projector) and
   /metrics (relay and projection lag 0) caught up;
7. with 2 relays: the publishing one is SIGKILLed, and the standby must take over;
8. every process gets SIGTERM and must exit 0 within the pod's grace period.

What differs from a cluster, on purpose: loopback addresses and ports,
CAIRN_KAFKA_IDEMPOTENCE=false (Tansu has no InitProducerId), CAIRN_KAFKA_REPLICATION_FACTOR=1
(one broker), temp dirs for /data and the
blob PVC (one shared dir, as the PVC is shared), and no container isolation.

Run with the Python of the environment to test (deploy/check.sh uses the venv replayed
from the Dockerfile): `python deploy/check_multiprocess.py`. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import yaml

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from bus.store import db

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
SCRIPTS_MOUNT = "/opt/cairn"  # where the deploy-scripts ConfigMap is mounted
HOST = "127.0.0.1"
GRACE_SECONDS = 30  # terminationGracePeriodSeconds of the Deployments
START_TIMEOUT = 120.0
CHUNK = 64 * 1024


# ------------------------------------------------------------------ manifests


def manifests() -> list[dict[str, Any]]:
    """The rendered kustomization (or the raw files when kubectl is not installed), plus
    the Secret an operator creates, as secret.example.yaml shows it."""
    secret = [d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()) if d]
    if shutil.which("kubectl"):
        out = subprocess.run(
            ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True
        )
        return [d for d in yaml.safe_load_all(out.stdout) if d] + secret
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = [d for f in kust["resources"] for d in yaml.safe_load_all((K8S / f).read_text()) if d]
    for gen in kust.get("configMapGenerator", []):
        data = {Path(f).name: (K8S / f).read_text() for f in gen.get("files", [])}
        docs.append({"kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    return docs + secret


@dataclass
class Manifests:
    docs: list[dict[str, Any]]
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for d in self.docs:
            if d["kind"] == "ConfigMap":
                self.configmaps[d["metadata"]["name"]] = d.get("data") or {}
            elif d["kind"] == "Secret":
                self.secrets[d["metadata"]["name"]] = d.get("stringData") or {}

    def workload(self, kind: str, name: str) -> dict[str, Any]:
        for d in self.docs:
            if d["kind"] == kind and d["metadata"]["name"] == name:
                return d
        raise SystemExit(f"{kind}/{name} not found in deploy/k8s")

    def deployments(self) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == "Deployment"]

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """The container's environment as the kubelet would build it."""
        env: dict[str, str] = {}
        for ef in container.get("envFrom", []):
            if "configMapRef" in ef:
                env.update(self.configmaps[ef["configMapRef"]["name"]])
            if "secretRef" in ef:
                env.update(self.secrets[ef["secretRef"]["name"]])
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            vf = e.get("valueFrom", {})
            ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
            store = self.configmaps if "configMapKeyRef" in vf else self.secrets
            value = store.get(ref["name"], {}).get(ref["key"])
            if value is None and not ref.get("optional"):
                raise SystemExit(f"{container['name']}: {ref['name']}/{ref['key']} does not exist")
            if value is not None:
                env[e["name"]] = value
        return env


def argv(container: dict[str, Any], bindir: Path) -> list[str]:
    """The container's command line, with the image's binaries mapped to bindir."""
    command = list(container.get("command") or ["cairn"])  # the image ENTRYPOINT
    args = list(container.get("args") or ([] if container.get("command") else ["run", "api"]))
    out = []
    for word in command + args:
        if word in ("cairn", "python"):
            word = str(bindir / word)
        elif word.startswith(SCRIPTS_MOUNT + "/"):
            word = str(K8S / word[len(SCRIPTS_MOUNT) + 1 :])
        out.append(word)
    return out


# ------------------------------------------------------------------ processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    service: bool  # a long-running replica (not an init container or Job step)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(f"      | {line}" for line in text[-lines:])


class Cluster:
    def __init__(self, workdir: Path, bindir: Path, overrides: dict[str, str]) -> None:
        self.workdir = workdir
        self.bindir = bindir
        self.overrides = overrides
        self.procs: list[Proc] = []
        base = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        self.base_env = base

    def start(
        self,
        name: str,
        container: dict[str, Any],
        m: Manifests,
        service: bool = False,
        **extra: str,
    ) -> Proc:
        data_dir = self.workdir / "pods" / name  # the pod's emptyDir at /data
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **self.base_env,
            **m.env(container),
            **self.overrides,
            "CAIRN_DATA_DIR": str(data_dir),
            **extra,
        }
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv(container, self.bindir),
                env=env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log, service)
        self.procs.append(proc)
        return proc

    def run(self, name: str, container: dict[str, Any], m: Manifests, timeout: float) -> Proc:
        proc = self.start(name, container, m)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            fail(f"{name} did not finish in {timeout:.0f}s", proc)
        if proc.popen.returncode != 0:
            fail(f"{name} exited with {proc.popen.returncode}", proc)
        return proc

    def assert_alive(self) -> None:
        for p in self.procs:
            if p.service and p.popen.poll() is not None:
                fail(f"{p.name} died with exit code {p.popen.returncode}", p)

    def stop_all(self, check: bool) -> list[str]:
        """SIGTERM every running process; return the problems (non-zero exits, timeouts)."""
        running = [p for p in self.procs if p.popen.poll() is None]
        for p in running:
            p.popen.send_signal(signal.SIGTERM)
        problems = []
        deadline = time.monotonic() + GRACE_SECONDS
        for p in running:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait()
                problems.append(f"{p.name} ignored SIGTERM for {GRACE_SECONDS}s (killed)")
                continue
            if check and p.popen.returncode != 0:
                problems.append(f"{p.name} exited with {p.popen.returncode} after SIGTERM")
        return problems


class CheckFailed(Exception):
    pass


def fail(message: str, proc: Proc | None = None) -> NoReturn:
    if proc is not None:
        message += f"\n    last lines of {proc.log}:\n{proc.tail()}"
    raise CheckFailed(message)


def ok(message: str) -> None:
    print(f"  ok    {message}", flush=True)


# ------------------------------------------------------------------ HTTP


def wait_http(url: str, timeout: float, procs: Cluster) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        procs.assert_alive()
        try:
            r = httpx.get(url, timeout=8)
            if r.status_code == 200:
                return r
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = type(e).__name__
        time.sleep(0.25)
    fail(f"GET {url} did not answer 200 in {timeout:.0f}s (last: {last})")


def wait_for(what: str, predicate: Any, timeout: float, procs: Cluster) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.assert_alive()
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    fail(f"{what}: not within {timeout:.0f}s")


def smoke(apis: list[str], token: str, procs: Cluster) -> None:
    """One chunked upload spread over the api replicas, then the read side catching up."""
    auth = {"Authorization": f"Bearer {token}"}
    clients = [httpx.Client(base_url=u, headers=auth, timeout=30) for u in apis]
    try:
        data = os.urandom(CHUNK * 3 + 777)
        sha = hashlib.sha256(data).hexdigest()
        r = clients[0].post(
            "/v1/uploads",
            json={"file_name": "deploy-check.bin", "file_size": len(data), "chunk_size": CHUNK},
        )
        if r.status_code != 201:
            fail(f"POST /v1/uploads: {r.status_code} {r.text[:300]}")
        upload = r.json()
        ok(f"upload created through api-0 (actors replied): {upload['id']}")
        pieces = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        for i, piece in enumerate(pieces):
            c = clients[i % len(clients)]
            r = c.put(f"/v1/uploads/{upload['id']}/chunks/{i}", content=piece)
            if r.status_code != 201:
                fail(f"PUT chunk {i} via {c.base_url}: {r.status_code} {r.text[:300]}")
        ok(f"{len(pieces)} chunks stored, spread over {len(clients)} api replica(s)")
        r = clients[-1].post(f"/v1/uploads/{upload['id']}/complete")
        if r.status_code != 200 or r.json().get("sha256") != sha:
            fail(f"POST complete: {r.status_code} {r.text[:300]}")
        file_id = r.json()["file_id"]
        ok(f"upload completed through api-{len(clients) - 1}: file {file_id}, sha256 matches")
        r = clients[0].get(f"/v1/files/{file_id}/content")
        if r.status_code != 200 or r.content != data:
            fail(f"GET content: {r.status_code}, {len(r.content)} bytes")
        ok("file content read back byte for byte (shared blob store)")
        # A signed URL made by one replica must open on every other: they share the
        # signing key (CAIRN_SIGNING_KEY from the Secret), not one of their own each
        # generated into their own emptyDir.
        # Asked through the TLS-terminating proxy the manifests put in front (it sets the
        # X-Forwarded-* headers), the URL names the client's https origin
        # (CAIRN_TRUST_PROXY in the ConfigMap), not the pod's plain http.
        r = clients[0].post(
            f"/v1/files/{file_id}/signed-url",
            json={"expires_in": 600},
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "files.example.com"},
        )
        if r.status_code != 200:
            fail(f"POST signed-url via api-0: {r.status_code} {r.text[:300]}")
        signed = urlsplit(r.json()["url"])
        if (signed.scheme, signed.netloc) != ("https", "files.example.com"):
            fail(f"signed URL behind the proxy names {signed.scheme}://{signed.netloc}")
        with httpx.Client(base_url=apis[-1], timeout=30) as anonymous:
            r = anonymous.get(f"{signed.path}?{signed.query}")
        if r.status_code != 200 or r.content != data:
            fail(f"signed URL of api-0 on api-{len(apis) - 1}: {r.status_code} {r.text[:300]}")
        ok(f"a signed URL made by api-0 serves the file on api-{len(apis) - 1} (shared key)")

        def listed() -> bool:
            r = clients[-1].get("/v1/uploads")
            return r.status_code == 200 and any(
                u["id"] == upload["id"] and u["status"] == "COMPLETED" for u in r.json()["items"]
            )

        wait_for("the uploads read model shows the upload COMPLETED", listed, 60, procs)
        ok("read model caught up (relay -> Kafka -> projector -> Postgres)")

        since = time.monotonic()

        def caught_up() -> bool:
            asked = time.monotonic()
            text = clients[0].get("/metrics").text
            return (
                fresh_since(text, asked - since)
                and "cairn_relay_lag_events 0.0" in text
                and 'cairn_projection_lag_events{projection="uploads"} 0.0' in text
                and 'cairn_projection_lag_events{projection="files"} 0.0' in text
            )

        wait_for("relay and projection lag 0 in /metrics", caught_up, 60, procs)
        ok("/metrics: relay lag 0, projection lag 0")
    finally:
        for c in clients:
            c.close()


def fresh_since(metrics: str, elapsed: float) -> bool:
    """The api's Postgres-backed gauges in `metrics` were read less than `elapsed` seconds
    before it was asked for (they may be up to 5 s old: api/routes/ops.py, LagGauges), so
    they tell the state after whatever happened that long ago."""
    for line in metrics.splitlines():
        if line.startswith("cairn_lag_gauges_age_seconds "):
            return float(line.split()[-1]) < elapsed
    return False


def relay_failover(relays: list[Proc], apis: list[str], token: str, procs: Cluster) -> None:
    """SIGKILL the publishing relay: the standby must take over and publish new events."""
    leader = wait_for(
        "a relay reports leadership",
        lambda: next((p for p in relays if "relay.leader" in p.log.read_text()), None),
        30,
        procs,
    )
    os.killpg(leader.popen.pid, signal.SIGKILL)
    leader.popen.wait()
    leader.service = False
    ok(f"killed the leading relay {leader.name} (SIGKILL)")
    with httpx.Client(base_url=apis[0], headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.post("/v1/uploads", json={"file_name": "after-failover.bin", "file_size": 10})
        if r.status_code != 201:
            fail(f"POST /v1/uploads after the relay kill: {r.status_code} {r.text[:300]}")

        since = time.monotonic()

        def published() -> bool:
            asked = time.monotonic()
            text = c.get("/metrics").text
            return fresh_since(text, asked - since) and "cairn_relay_lag_events 0.0" in text

        wait_for("the standby relay publishes the new events", published, 60, procs)
    standby = next(p for p in relays if p is not leader)
    if "relay.leader" not in standby.log.read_text():
        fail(f"{standby.name} never reported leadership", standby)
    ok(f"{standby.name} took over: relay lag back to 0 after new events")


# ------------------------------------------------------------------ main


def run(args: argparse.Namespace, workdir: Path) -> None:
    bindir = args.bindir.resolve()
    m = Manifests(manifests())
    print(f"processes from {bindir}, work dir {workdir}")

    pg = EmbeddedPostgres(workdir / "pg", free_port())
    kafka = EmbeddedKafka(free_port(), log_path=workdir / "tansu.log")
    pg.start()
    cluster: Cluster | None = None
    try:
        kafka.start()
        database_url = asyncio.run(db.ensure_database(pg.url, "cairn"))
        ok(f"embedded PostgreSQL on {pg.url.split('@')[1]}, Tansu on {kafka.bootstrap}")
        (workdir / "blobs").mkdir()
        overrides = {
            "CAIRN_DATABASE_URL": database_url,
            "CAIRN_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "CAIRN_KAFKA_IDEMPOTENCE": "false",
            "CAIRN_KAFKA_REPLICATION_FACTOR": "1",  # one broker here
            "CAIRN_KAFKA_FETCH_MAX_WAIT_MS": "10",
            "CAIRN_BLOB_STORE": f"file://{workdir / 'blobs'}",
            "CAIRN_HOST": HOST,
        }
        cluster = Cluster(workdir, bindir, overrides)
        deployments = {d["metadata"]["name"]: d for d in m.deployments()}
        api_pod = deployments["cairn-api"]["spec"]["template"]["spec"]

        # 1. an init container before any setup: must wait
        waiter = cluster.start("cairn-api-init-wait-for-setup", api_pod["initContainers"][0], m)
        time.sleep(4)
        if waiter.popen.poll() is not None:
            fail("wait-for-setup returned before the setup Job ran", waiter)
        ok("wait-for-setup keeps waiting while nothing is migrated")

        # 2. the setup Job
        job = m.workload("Job", "cairn-setup")["spec"]["template"]["spec"]
        for c in job.get("initContainers", []) + job["containers"]:
            p = cluster.run(f"cairn-setup-{c['name']}", c, m, timeout=120)
            ok(f"Job cairn-setup/{c['name']}: {p.log.read_text().strip().splitlines()[-1]}")

        # 3. the waiting init container is released
        try:
            waiter.popen.wait(30)
        except subprocess.TimeoutExpired:
            fail("wait-for-setup still waiting 30 s after the Job", waiter)
        if waiter.popen.returncode != 0:
            fail(f"wait-for-setup exited {waiter.popen.returncode}", waiter)
        ok("wait-for-setup finished once the Job had run")

        # 4. every replica of every kind, init containers first
        api_urls: list[str] = []
        metrics_urls: dict[str, str] = {}
        for name, d in deployments.items():
            pod = d["spec"]["template"]["spec"]
            replicas = d["spec"].get("replicas", 1)
            for c in pod.get("initContainers", []):
                cluster.run(f"{name}-init-{c['name']}", c, m, timeout=30)
            for i in range(replicas):
                extra: dict[str, str] = {"CAIRN_METRICS_HOST": HOST}
                if name == "cairn-api":
                    port = free_port()
                    extra["CAIRN_PORT"] = str(port)
                    api_urls.append(f"http://{HOST}:{port}")
                else:  # one port per process here; in a cluster each pod has its own IP
                    metrics_port = free_port()
                    extra["CAIRN_METRICS_PORT"] = str(metrics_port)
                    metrics_urls[f"{name}-{i}"] = f"http://{HOST}:{metrics_port}/metrics"
                cluster.start(f"{name}-{i}", pod["containers"][0], m, service=True, **extra)
            ok(
                f"{name}: {replicas} process(es) of `{' '.join(argv(pod['containers'][0], bindir)[1:])}`"
            )

        # 5. health and readiness
        for url in api_urls:
            wait_http(f"{url}/health", START_TIMEOUT, cluster)
            r = wait_http(f"{url}/ready", START_TIMEOUT, cluster)
            ok(f"{url}: /health 200, /ready 200 {r.json()['checks']}")
        for proc_name, url in metrics_urls.items():
            r = wait_http(url, START_TIMEOUT, cluster)
            if "cairn_kafka_consumer_lag_messages" not in r.text:
                fail(f"{proc_name}: {url} has no Cairn metrics", None)
        ok(f"every non-api process serves /metrics on its own port ({len(metrics_urls)})")

        # 6. smoke
        if not args.no_smoke:
            api_container = api_pod["containers"][0]
            env = {**cluster.base_env, **m.env(api_container), **overrides}
            token = subprocess.run(
                [str(bindir / "cairn"), "token", "deploy-check"],
                env={**env, "CAIRN_DATA_DIR": str(workdir / "pods" / "token")},
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            smoke(api_urls, token, cluster)
            relays = [p for p in cluster.procs if p.service and p.name.startswith("cairn-relay-")]
            if len(relays) > 1:
                relay_failover(relays, api_urls, token, cluster)
        time.sleep(1)
        cluster.assert_alive()
        ok(f"all {sum(p.popen.poll() is None for p in cluster.procs)} processes still running")

        # 8. graceful stop
        problems = cluster.stop_all(check=True)
        cluster = None
        if problems:
            fail("; ".join(problems))
        ok("every process exited 0 on SIGTERM")
    finally:
        if cluster is not None:
            cluster.stop_all(check=False)
        kafka.stop()
        pg.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--bindir",
        type=Path,
        default=Path(sys.executable).parent,
        help="where `cairn` and `python` live (default: next to this Python)",
    )
    ap.add_argument("--no-smoke", action="store_true", help="only /health and /ready")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cairn-deploy-check-"))
    started = time.monotonic()
    try:
        run(args, workdir)
    except CheckFailed as e:
        print(f"  FAIL  {e}", flush=True)
        print(
            f"multi-process check FAILED after {time.monotonic() - started:.0f}s; logs in {workdir}"
        )
        return 1
    print(f"multi-process check passed in {time.monotonic() - started:.0f}s")
    if args.keep:
        print(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
