"""Offline checks of deploy/: what can be proven without a Docker engine or a cluster.

Run by deploy/check.sh as
    uv run --no-project --with pyyaml --with kubernetes-validate --with docker \
        --with dockerfile-parse python deploy/check_static.py [--build-venv DIR]

- every YAML file parses (duplicate keys are errors);
- the compose file: services for every process kind, commands, env names known to
  bus/config/settings.py, depends_on targets and their health checks / one-shot nature, volumes;
- the Kubernetes manifests: the kustomization lists every file, the rendered output
  validates against the Kubernetes schemas (strict), every ConfigMap / Secret / key / PVC /
  volume / port a Deployment or Job references exists, env names are known settings,
  probes hit real routes, Service and PDB selectors match the api pods; the NetworkPolicies,
  evaluated as a CNI would for every workload (network_policy_checks);
- the Dockerfile: base image pinned by digest (base_image_checks), non-root numeric USER,
  ENTRYPOINT/CMD, layer order, every COPY source exists and survives the root .dockerignore,
  which keeps the developer's environment, caches, tests and secrets out
  (dockerignore_checks);
- with --build-venv DIR: replays the Dockerfile's build stage (its COPYs and `uv sync`
  RUNs) into DIR/app and checks the resulting environment (console script, migrations,
  no dev dependencies). check_multiprocess.py then runs the processes from that venv.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# The Secret the manifests expect, as an example the kustomization never applies (an
# operator creates the real one; secret.yaml, its filled-in copy, is git-ignored).
SECRET_EXAMPLE = "secret.example.yaml"
NOT_APPLIED = {
    SECRET_EXAMPLE,
    "secret.yaml",
    "kustomization.yaml",
    "networkpolicy-datastores.example.yaml",
}
K8S_VERSION = "1.30.0"  # the oldest Kubernetes these manifests are meant for
SOURCE_DIRS = ("domain", "handlers", "projections", "api", "bus", "migrations")


# ------------------------------------------------------------------ reporting


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.notes: list[str] = []
        self.section = ""

    def start(self, name: str) -> None:
        self.section = name
        print(f"\n== {name}")

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed.append(f"[{self.section}] {what}")
            print(f"  FAIL  {what}")
        return ok

    def note(self, what: str) -> None:
        self.notes.append(what)
        print(f"  note  {what}")


R = Report()


# ------------------------------------------------------------------ YAML


class StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<:` merges; explicit keys may override merged ones
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.load_all(path.read_text(), Loader=StrictLoader) if d is not None]


# ------------------------------------------------------------------ facts from the code


def known_settings() -> set[str]:
    """Every CAIRN_* name bus/config/settings.py reads."""
    return set(re.findall(r'"(CAIRN_[A-Z0-9_]+)"', (ROOT / "bus/config/settings.py").read_text()))


def process_kinds() -> list[str]:
    """The keys of bus/run/processes.py KINDS, read without importing the project."""
    tree = ast.parse((ROOT / "bus/run/processes.py").read_text())
    for node in ast.walk(tree):
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(target, ast.Name) and target.id == "KINDS":
            value = node.value  # type: ignore[attr-defined]
            return [k.value for k in value.keys]
    raise SystemExit("KINDS not found in bus/run/processes.py")


def api_routes() -> set[str]:
    routes: set[str] = set()
    for f in (ROOT / "api").rglob("*.py"):  # routes live in api/routes/
        routes |= set(re.findall(r'@get\(\s*"(/[^"]*)"', f.read_text()))
    return routes


def console_scripts() -> dict[str, str]:
    import tomllib

    scripts: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get(
        "scripts", {}
    )
    return scripts


def generated_secrets() -> set[str]:
    """The settings whose fallback is a secret generated into the pod's own data dir
    (`self.x or self._generated_secret(...)` in bus/config/settings.py): unset, every
    replica makes up its own, and a restart a new one."""
    text = (ROOT / "bus/config/settings.py").read_text()
    return {
        f"CAIRN_{f.upper()}" for f in re.findall(r"self\.(\w+) or self\._generated_secret\(", text)
    }


def setting_default(name: str) -> str:
    """The default bus/config/settings.py gives `name` in from_env (num("X", 16) /
    size("X", "8M") / sec("X", 5.0)), as a string."""
    text = (ROOT / "bus/config/settings.py").read_text()
    m = re.search(rf'"{name}",\s*"?([^",)]+)"?', text)
    if m is None:
        raise SystemExit(f"no default for {name} in bus/config/settings.py")
    return m.group(1).strip()


def parse_bytes(value: str) -> int:
    """`8M`, `64K`, `1Gi`, `268435456` -> bytes (binary units, as Cairn and Kubernetes)."""
    m = re.fullmatch(r"(\d+)\s*([KMGT]?)i?[Bb]?", str(value).strip())
    if m is None:
        raise ValueError(f"not a size: {value!r}")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2) or " "))


SETTINGS = known_settings()
KINDS = process_kinds()
GENERATED_SECRETS = generated_secrets()
# Settings that are credentials: only ever from a Secret (k8s) or the untracked .env
# (compose), never in a ConfigMap, a manifest's literal `value` or the image.
SECRET_SETTINGS = GENERATED_SECRETS | {
    "CAIRN_DATABASE_URL",
    "CAIRN_SIGNING_OLD_KEYS",
    "CAIRN_API_KEYS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
}
# What a pod may use besides its in-flight request bodies: the api's memory request.
# Each in-flight tus PATCH holds up to two pieces (README, CAIRN_TUS_PIECE_BYTES).
PIECES_PER_BODY = 2
TOPICS_SNIPPET = "ensure_topics(s)"


def unknown_settings(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if n.startswith("CAIRN_") and n not in SETTINGS)


def comment_mentions(path: Path) -> set[str]:
    names: set[str] = set()
    for line in path.read_text().splitlines():
        if "#" in line:
            names |= set(re.findall(r"CAIRN_[A-Z0-9_]+", line.split("#", 1)[1]))
    return names


# ------------------------------------------------------------------ all YAML


def check_yaml_parses() -> None:
    R.start("YAML parses (duplicate keys refused)")
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        try:
            docs = load_all(path)
            R.check(bool(docs), f"{path.relative_to(ROOT)}: {len(docs)} document(s)")
        except yaml.YAMLError as e:
            R.check(False, f"{path.relative_to(ROOT)}: {e}")


# ------------------------------------------------------------------ compose


_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
_REQUIRED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}")


def interpolate(value: Any) -> Any:
    """Compose's ${VAR:-default} with an empty environment: the defaults (a required
    ${VAR:?message} becomes "")."""
    if isinstance(value, str):
        return _INTERP.sub(lambda m: m.group(3) if "-" in (m.group(2) or "") else "", value)
    return value


def check_compose() -> None:
    R.start("compose.yaml")
    path = DEPLOY / "compose.yaml"
    (doc,) = load_all(path)
    services: dict[str, dict[str, Any]] = doc["services"]
    expected = {"postgres", "kafka", "minio", "migrate", "topics", *KINDS}
    R.check(expected <= set(services), f"services present: {', '.join(sorted(expected))}")

    cairn = {n: s for n, s in services.items() if "build" in s}
    R.check(
        set(cairn) == {"migrate", "topics", *KINDS},
        f"Cairn image used by exactly migrate, topics and the kinds ({', '.join(sorted(cairn))})",
    )
    needed = required_build_args((DEPLOY / "Dockerfile").read_text())
    for name, svc in cairn.items():
        build = svc["build"]
        missing = sorted(needed - set(build.get("args") or {}))
        R.check(
            not missing,
            f"{name}: build passes the Dockerfile's required build args"
            + (f" (missing: {missing})" if missing else f" ({', '.join(sorted(needed))})"),
        )
        dockerfile = (path.parent / build["context"] / build["dockerfile"]).resolve()
        R.check(
            dockerfile == DEPLOY / "Dockerfile"
            and (path.parent / build["context"]).resolve() == ROOT,
            f"{name}: builds deploy/Dockerfile with the repository root as context",
        )
        env = {k: interpolate(v) for k, v in (svc.get("environment") or {}).items()}
        bad = unknown_settings(env)
        R.check(
            not bad,
            f"{name}: env names known to bus/config/settings.py"
            + (f" (unknown: {bad})" if bad else ""),
        )
        R.check(
            all(isinstance(v, str) for v in env.values()),
            f"{name}: env values are strings (no YAML booleans/numbers)",
        )
        db = urlsplit(env.get("CAIRN_DATABASE_URL", ""))
        R.check(
            db.scheme.startswith("postgres") and db.hostname in services,
            f"{name}: CAIRN_DATABASE_URL points at a service ({db.hostname})",
        )
        kafka_host = env.get("CAIRN_KAFKA_BOOTSTRAP", "").split(":")[0]
        R.check(
            kafka_host in services,
            f"{name}: CAIRN_KAFKA_BOOTSTRAP points at a service ({kafka_host})",
        )
        R.check(
            env.get("CAIRN_KAFKA_IDEMPOTENCE") == "true",
            f"{name}: CAIRN_KAFKA_IDEMPOTENCE=true (real Kafka)",
        )

    for kind in KINDS:
        svc = services.get(kind, {})
        R.check(svc.get("command") == ["run", kind], f"{kind}: command is `cairn run {kind}`")
        deps = svc.get("depends_on") or {}
        R.check(
            {"postgres", "kafka", "migrate", "topics"} <= set(deps),
            f"{kind}: waits for postgres, kafka, migrate and topics",
        )
    R.check(
        services["migrate"].get("command") == ["migrate"], "migrate: command is `cairn migrate`"
    )
    topics = services["topics"]
    R.check(
        topics.get("entrypoint") == ["python", "-c"]
        and TOPICS_SNIPPET in " ".join(topics.get("command", [])),
        "topics: python -c ... ensure_topics(Settings.from_env())",
    )
    for one_shot in ("migrate", "topics"):
        R.check(services[one_shot].get("restart") == "no", f'{one_shot}: restart: "no" (one-shot)')
        R.check(
            one_shot not in (services[one_shot].get("depends_on") or {}),
            f"{one_shot}: does not wait for itself",
        )

    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            condition = cond.get("condition") if isinstance(cond, dict) else "service_started"
            ok = dep in services
            if condition == "service_healthy":
                ok = ok and "healthcheck" in services[dep]
            if condition == "service_completed_successfully":
                ok = ok and services[dep].get("restart") == "no"
            R.check(ok, f"{name} -> {dep} ({condition}): target exists and fits the condition")

    def hc(name: str) -> str:
        test = services[name].get("healthcheck", {}).get("test", [])
        return " ".join(test) if isinstance(test, list) else str(test)

    R.check("pg_isready" in hc("postgres"), "postgres healthcheck: pg_isready")
    R.check("kafka-broker-api-versions" in hc("kafka"), "kafka healthcheck: broker API versions")
    R.check(
        "/ready?scope=process" in hc("api"),
        "api healthcheck: GET /ready?scope=process (this replica serves reads; not /ready,"
        " which an actor host outage fails on every replica at once)",
    )
    kafka_env = services["kafka"]["environment"]
    R.check(
        "broker" in kafka_env.get("KAFKA_PROCESS_ROLES", "")
        and "controller" in kafka_env.get("KAFKA_PROCESS_ROLES", ""),
        "kafka: KRaft single node (broker,controller)",
    )
    R.check(
        str(kafka_env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() == "false",
        "kafka: no topic auto-creation (the topics service creates them)",
    )
    R.check(
        str(services["kafka"]["image"]).startswith("apache/kafka:3.9"), "kafka: apache/kafka:3.9.x"
    )
    R.check(str(services["postgres"]["image"]) == "postgres:17", "postgres: postgres:17")
    api_ports = [interpolate(p) for p in services["api"].get("ports", [])]
    R.check(
        any(str(p).endswith(":8000") for p in api_ports), f"api: publishes port 8000 ({api_ports})"
    )
    for name in ("api", "actors"):
        R.check("replicas" in (services[name].get("deploy") or {}), f"{name}: deploy.replicas hint")

    # Credentials: from deploy/.env (interpolated), never a literal in the tracked file.
    for name, svc in services.items():
        for var, raw in (svc.get("environment") or {}).items():
            if var in SECRET_SETTINGS:
                R.check(
                    "${" in str(raw),
                    f"{name}: {var} comes from deploy/.env, not a literal in compose.yaml",
                )
    # A secret the api would otherwise generate into its own container (one per replica,
    # a new one with every re-creation) must be set, and with no default anyone can read.
    api_env = services["api"].get("environment") or {}
    for var in sorted(GENERATED_SECRETS):
        raw = str(api_env.get(var, ""))
        R.check(
            _REQUIRED.fullmatch(raw) is not None,
            f"api: {var} is required from deploy/.env (${{{var}:?...}}, no default): {raw!r}",
        )

    volumes = set(doc.get("volumes") or {})
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            source = str(v).split(":")[0]
            if not source.startswith((".", "/")):
                R.check(source in volumes, f"{name}: volume {source} is declared")
    blob_url = cairn["api"]["environment"].get("CAIRN_BLOB_STORE", "")
    if blob_url.startswith("file://"):
        blob_dir = blob_url[len("file://") :]
        for name in ("api", "actors", "handlers"):
            mounts = [str(v) for v in services[name].get("volumes", [])]
            R.check(
                any(m.split(":")[1] == blob_dir for m in mounts),
                f"{name}: the shared blob volume is mounted at {blob_dir}",
            )
    for name in sorted(comment_mentions(path)):
        if name not in SETTINGS:
            R.note(
                f"compose.yaml comments mention {name}, which bus/config/settings.py does not read (yet)"
            )


# ------------------------------------------------------------------ network policies

NETPOL_FILE = "networkpolicy.yaml"
DATASTORE_POLICIES = "networkpolicy-datastores.example.yaml"
# Addresses a URL fetch must never reach, whatever Cairn's own check says: the cloud
# metadata services and the private ranges a cluster's pods, Services, nodes and VPC live in.
METADATA = "169.254.169.254"
FORBIDDEN_FOR_FETCHES = (
    METADATA,
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "100.64.0.1",
    "100.100.100.200",
    "127.0.0.1",
    "fd00:ec2::254",
    "fe80::1",
)
PUBLIC = ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")  # example.com
OUTSIDE = "203.0.113.7"  # a client outside the cluster
DNS = ({"kubernetes.io/metadata.name": "kube-system"}, {"k8s-app": "kube-dns"})


def k8s_resources(k8s: Path) -> list[dict[str, Any]]:
    """The resources the kustomization in `k8s` lists, as kustomize places them (in its
    namespace), without kubectl; generated ConfigMaps left out."""
    (kust,) = load_all(k8s / "kustomization.yaml")
    docs = [d for f in kust.get("resources", []) for d in load_all(k8s / f)]
    for d in docs:
        if d["kind"] != "Namespace":
            d.setdefault("metadata", {})["namespace"] = kust.get("namespace")
    return docs


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels; an empty
    selector selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


class Peer:
    """One end of a connection: a pod (its namespace and labels, the ports it names) or an
    address outside any pod."""

    def __init__(
        self,
        namespace: str = "",
        labels: dict[str, str] | None = None,
        ip: str | None = None,
        ports: dict[str, int] | None = None,
    ) -> None:
        self.namespace = namespace
        self.labels = labels
        self.ip = ip
        self.ports = ports or {}

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _peer_matches(rule_peer: dict[str, Any], policy_ns: str, peer: Peer) -> bool:
    block = rule_peer.get("ipBlock")
    if block is not None:
        if peer.ip is None:
            return False  # (pods have addresses too; the checks ask about pods by label)
        import ipaddress

        address = ipaddress.ip_address(peer.ip)
        net = ipaddress.ip_network(block["cidr"], strict=False)
        if address.version != net.version or address not in net:
            return False
        return not any(
            address in ipaddress.ip_network(e, strict=False)
            for e in block.get("except") or []
            if ipaddress.ip_network(e, strict=False).version == address.version
        )
    if peer.labels is None:
        return False  # pod and namespace selectors match pods only
    if "namespaceSelector" in rule_peer:
        if not selects(rule_peer["namespaceSelector"], peer.namespace_labels):
            return False
    elif peer.namespace != policy_ns:
        return False
    return selects(rule_peer.get("podSelector"), peer.labels)


def _port_matches(
    rule_ports: list[dict[str, Any]] | None, port: int | None, proto: str, named: dict[str, int]
) -> bool:
    if port is None or not rule_ports:
        return True  # `port=None` asks whether any port at all is open
    for p in rule_ports:
        if p.get("protocol", "TCP") != proto:
            continue
        if "port" not in p:
            return True
        want = p["port"]
        number = named.get(want) if isinstance(want, str) else want
        if number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


def _types(policy: dict[str, Any]) -> set[str]:
    spec = policy["spec"]
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if "egress" in spec else set())


def isolating(policies: list[dict[str, Any]], pod: Peer, direction: str) -> list[dict[str, Any]]:
    """The policies that select `pod` for `direction` ("Ingress" or "Egress")."""
    return [
        p
        for p in policies
        if p["metadata"].get("namespace") == pod.namespace
        and direction in _types(p)
        and selects(p["spec"].get("podSelector"), pod.labels or {})
    ]


def allowed(
    policies: list[dict[str, Any]],
    source: Peer,
    target: Peer,
    port: int | None,
    proto: str = "TCP",
) -> bool:
    """Whether the policies let `source` open a connection to `target` on `port` (None:
    any port): the source's egress and the target's ingress must both allow it, each
    unrestricted when no policy selects that pod for that direction."""
    for direction, pod, other, key in (
        ("Egress", source, target, "to"),
        ("Ingress", target, source, "from"),
    ):
        if pod.labels is None:
            continue  # an address outside the cluster: no policy of ours governs it
        chosen = isolating(policies, pod, direction)
        if not chosen:
            continue
        rules_key = "egress" if direction == "Egress" else "ingress"
        if not any(
            (
                not rule.get(key)
                or any(_peer_matches(r, p["metadata"]["namespace"], other) for r in rule[key])
            )
            and _port_matches(rule.get("ports"), port, proto, target.ports)
            for p in chosen
            for rule in p["spec"].get(rules_key) or []
        ):
            return False
    return True


def _address(url_or_host: str) -> tuple[str, int]:
    """(namespace, port) of an in-cluster `name.namespace.svc[...]:port` address."""
    parts = urlsplit(url_or_host if "//" in url_or_host else f"//{url_or_host}")
    host = parts.hostname or ""
    labels = host.split(".")
    namespace = labels[1] if len(labels) > 2 and labels[2] == "svc" else ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return namespace, port


def network_policy_checks(
    k8s: Path, docs: list[dict[str, Any]] | None = None
) -> list[tuple[bool, str]]:
    """What the NetworkPolicies of `k8s` (or its rendered `docs`) let through, checked
    against what each workload needs and must not reach. Returns (ok, what) pairs."""
    if docs is None:
        docs = k8s_resources(k8s)
    out: list[tuple[bool, str]] = []

    def check(ok: bool, what: str) -> None:
        out.append((ok, what))

    (kust,) = load_all(k8s / "kustomization.yaml")
    ns = str(kust.get("namespace"))
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for direction in ("Ingress", "Egress"):
        check(
            any(
                p["metadata"].get("namespace") == ns
                and p["spec"].get("podSelector") in ({}, None)
                and direction in _types(p)
                and not p["spec"].get(direction.lower())
                for p in policies
            ),
            f"a default deny of {direction.lower()} for every pod of {ns!r} (podSelector {{}},"
            f" policyTypes {direction}, no rules)",
        )

    config = next(
        (
            d.get("data", {})
            for d in docs
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cairn-config"
        ),
        {},
    )
    secret: dict[str, str] = {}
    if (k8s / SECRET_EXAMPLE).is_file():
        secret = (load_all(k8s / SECRET_EXAMPLE)[0] or {}).get("stringData") or {}
    postgres = _address(secret.get("CAIRN_DATABASE_URL", ""))
    kafka = _address(str(config.get("CAIRN_KAFKA_BOOTSTRAP", "")).split(",")[0])
    s3 = _address(secret.get("CAIRN_S3_ENDPOINT", "")) if secret.get("CAIRN_S3_ENDPOINT") else None

    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]
    for w in workloads:
        wname = f"{w['kind']} {w['metadata']['name']}"
        template = w["spec"]["template"]
        labels = template.get("metadata", {}).get("labels") or {}
        pod_spec = template["spec"]
        named = {
            p["name"]: p["containerPort"]
            for c in pod_spec.get("containers", [])
            for p in c.get("ports", [])
            if "name" in p
        }
        pod = Peer(ns, labels, ports=named)
        if w["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            check(
                any(
                    p["metadata"].get("namespace") == ns
                    and selects(p["spec"].get("podSelector"), labels)
                    for p in policies
                ),
                f"{wname}: selected by a NetworkPolicy",
            )
        for direction in ("Ingress", "Egress"):
            check(
                bool(isolating(policies, pod, direction)),
                f"{wname}: its {direction.lower()} is restricted (some policy selects it for"
                f" {direction})",
            )
        main = pod_spec.get("containers", [{}])[0]
        args = main.get("args") or []
        kind = args[1] if args[:1] == ["run"] and len(args) > 1 else None
        env_names = {v["name"] for c in pod_spec.get("containers", []) for v in c.get("env", [])}

        # What every pod needs: DNS, PostgreSQL, Kafka; the blob kinds S3.
        dns = Peer(DNS[0]["kubernetes.io/metadata.name"], DNS[1])
        check(
            allowed(policies, pod, dns, 53, "UDP") and allowed(policies, pod, dns, 53, "TCP"),
            f"{wname}: reaches DNS (kube-dns, 53 UDP and TCP)",
        )
        for what, (dest_ns, port) in (("PostgreSQL", postgres), ("Kafka", kafka)):
            check(
                allowed(policies, pod, Peer(dest_ns, {}), port),
                f"{wname}: reaches {what} (namespace {dest_ns!r}, port {port})",
            )
            check(
                not allowed(policies, pod, Peer("elsewhere", {}), port),
                f"{wname}: reaches no other namespace's port {port} ({what}'s port elsewhere)",
            )
        if s3 is not None and "AWS_ACCESS_KEY_ID" in env_names:
            check(
                allowed(policies, pod, Peer(s3[0], {}), s3[1]),
                f"{wname}: reaches the S3 endpoint (namespace {s3[0]!r}, port {s3[1]})",
            )

        # Ingress: the api's port from anywhere; nothing else from outside the cluster.
        outside = Peer(ip=OUTSIDE)
        for port_name, number in named.items():
            if kind == "api" and port_name == "http":
                check(
                    allowed(policies, outside, pod, number)
                    and allowed(policies, Peer("ingress-nginx", {"app": "proxy"}), pod, number),
                    f"{wname}: the api port {number} from outside the cluster and its proxies",
                )
            elif port_name == "metrics":
                check(
                    allowed(policies, Peer("monitoring", {"app": "prometheus"}), pod, number),
                    f"{wname}: metrics port {number} reachable for Prometheus in the cluster",
                )
        if kind != "api":
            check(
                not allowed(policies, outside, pod, None),
                f"{wname}: no port reachable from outside the cluster",
            )

        # The internet: the fetcher on 80 and 443, never a private or metadata address;
        # every other pod not at all.
        if kind == "fetcher":
            for ip in PUBLIC:
                for port in (80, 443):
                    check(
                        allowed(policies, pod, Peer(ip=ip), port),
                        f"{wname}: reaches the internet ({ip}) on {port}",
                    )
            for ip in FORBIDDEN_FOR_FETCHES:
                check(
                    not allowed(policies, pod, Peer(ip=ip), None),
                    f"{wname}: no port of {ip} reachable"
                    + (" (the cloud metadata service)" if ip == METADATA else " (private)"),
                )
        else:
            check(
                not any(allowed(policies, pod, Peer(ip=ip), None) for ip in PUBLIC),
                f"{wname}: no egress to the internet (only the fetcher fetches URLs)",
            )
            check(
                not allowed(policies, pod, Peer(ip=METADATA), None),
                f"{wname}: the cloud metadata service {METADATA} out of reach",
            )

    # PostgreSQL's and Kafka's own namespaces (an example the operator adapts and applies).
    example = k8s / DATASTORE_POLICIES
    if example.is_file():
        datastore = load_all(example)
        cairn_pods = [
            Peer(ns, w["spec"]["template"]["metadata"].get("labels") or {}) for w in workloads
        ]
        for what, (dest_ns, port) in (("PostgreSQL", postgres), ("Kafka", kafka)):
            mine = [p for p in datastore if p["metadata"].get("namespace") == dest_ns]
            check(bool(mine), f"{DATASTORE_POLICIES}: a policy for {what} in {dest_ns!r}")
            for p in mine:
                pname = p["metadata"]["name"]
                server = Peer(
                    dest_ns, dict(p["spec"].get("podSelector", {}).get("matchLabels") or {})
                )
                check(
                    all(allowed(mine, c, server, port) for c in cairn_pods),
                    f"{pname}: every Cairn pod reaches {what} on {port}",
                )
                strangers = [
                    Peer(ns, {"app": "debug"}),
                    Peer("elsewhere", {"app.kubernetes.io/name": "cairn"}),
                    Peer("elsewhere", {}),
                ]
                check(
                    not any(allowed(mine, s, server, port) for s in strangers),
                    f"{pname}: {what}'s port {port} closed to pods that are not Cairn's (other"
                    f" labels in {ns!r}, Cairn's label in another namespace)",
                )
    else:
        check(False, f"{DATASTORE_POLICIES} shows PostgreSQL's and Kafka's policies")
    return out


# ------------------------------------------------------------------ kubernetes


def render_kustomization() -> list[dict[str, Any]] | None:
    for cmd in (["kubectl", "kustomize", str(K8S)], ["kustomize", "build", str(K8S)]):
        if shutil.which(cmd[0]):
            out = subprocess.run(cmd, capture_output=True, text=True)
            if R.check(
                out.returncode == 0,
                f"`{' '.join(cmd[:2])}` renders deploy/k8s"
                + (f": {out.stderr.strip()}" if out.returncode else ""),
            ):
                return [d for d in yaml.safe_load_all(out.stdout) if d]
            return None
    R.note(
        "neither kubectl nor kustomize is installed: checking the raw files, not the rendered output"
    )
    return None


def containers(pod_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for c in pod_spec.get("initContainers", []):
        yield "init", c
    for c in pod_spec.get("containers", []):
        yield "main", c


def check_k8s() -> None:
    R.start("Kubernetes manifests")
    (kust,) = load_all(K8S / "kustomization.yaml")
    listed = list(kust.get("resources", []))
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name not in NOT_APPLIED)
    R.check(
        sorted(listed) == files,
        f"kustomization lists every manifest ({len(files)} files) and nothing else",
    )
    R.check(len(listed) == len(set(listed)), "kustomization lists no file twice")
    gen_files = [f for g in kust.get("configMapGenerator", []) for f in g.get("files", [])]
    R.check(
        all((K8S / f).is_file() for f in gen_files),
        f"configMapGenerator files exist ({', '.join(gen_files)})",
    )
    other = sorted(p.name for p in K8S.iterdir() if p.suffix != ".yaml" and p.name not in gen_files)
    R.check(
        not other,
        "no file in deploy/k8s that the kustomization leaves out"
        + (f" ({other})" if other else ""),
    )
    for f in gen_files:
        if f.endswith(".py"):
            try:
                ast.parse((K8S / f).read_text())
                R.check(True, f"{f} is valid Python")
            except SyntaxError as e:
                R.check(False, f"{f}: {e}")

    rendered = render_kustomization()
    if rendered is not None:
        docs = rendered
    else:  # the raw files, plus what the configMapGenerator would make of its files
        docs = [d for f in listed for d in load_all(K8S / f)]
        for g in kust.get("configMapGenerator", []):
            data = {Path(f).name: (K8S / f).read_text() for f in g.get("files", [])}
            meta = {"name": g["name"], "namespace": kust.get("namespace")}
            docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    kind_names = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    print(f"  ..    resources: {', '.join(kind_names)}")
    # `kubectl apply -k` must never carry credentials: a Secret in the kustomization is
    # either placeholders (applied as is, a published JWT secret lets anyone sign an admin
    # token) or real values in the repository, and it overwrites the operator's own.
    applied_secrets = [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"]
    R.check(
        not applied_secrets,
        "the kustomization applies no Secret (the operator creates cairn-secrets)"
        + (f": {applied_secrets}" if applied_secrets else ""),
    )
    example = K8S / SECRET_EXAMPLE
    if R.check(example.is_file(), f"deploy/k8s/{SECRET_EXAMPLE} shows the Secret expected"):
        docs = docs + [
            {**d, "metadata": {**d["metadata"], "namespace": kust.get("namespace")}}
            for d in load_all(example)
        ]

    try:
        import kubernetes_validate
        from kubernetes_validate.utils import ValidationError
    except ImportError:
        R.note("kubernetes-validate is not installed: schema validation skipped")
    else:
        examples = (
            load_all(K8S / DATASTORE_POLICIES) if (K8S / DATASTORE_POLICIES).is_file() else []
        )
        for d in docs + examples:
            name = f"{d['kind']}/{d['metadata']['name']}"
            try:
                kubernetes_validate.validate(d, K8S_VERSION, strict=True)
                R.check(True, f"{name}: valid against the Kubernetes {K8S_VERSION} schema (strict)")
            except ValidationError as e:
                R.check(False, f"{name}: {e.message} at {'.'.join(map(str, e.path))}")

    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    # NetworkPolicies: default deny, every workload selected, each reaching what it needs
    # and nothing else; the fetcher the internet but no private or metadata address.
    for ok, what in network_policy_checks(K8S, docs):
        R.check(ok, f"network: {what}")
    configmaps = {
        n: set((d.get("data") or {}) | (d.get("binaryData") or {}))
        for n, d in by_kind.get("ConfigMap", {}).items()
    }
    secrets = {
        n: set((d.get("stringData") or {}) | (d.get("data") or {}))
        for n, d in by_kind.get("Secret", {}).items()
    }
    pvcs = set(by_kind.get("PersistentVolumeClaim", {}))
    namespace = kust.get("namespace")
    R.check(
        namespace in by_kind.get("Namespace", {}),
        f"the kustomization's namespace {namespace!r} is created",
    )
    if rendered is not None:
        R.check(
            all(
                d["metadata"].get("namespace") == namespace
                for d in docs
                if d["kind"] != "Namespace"
            ),
            f"every namespaced resource lands in {namespace!r}",
        )

    config = next((d for n, d in by_kind.get("ConfigMap", {}).items() if n == "cairn-config"), None)
    R.check(config is not None, "ConfigMap cairn-config exists")
    config_data: dict[str, str] = (config or {}).get("data", {})
    bad = unknown_settings(config_data)
    R.check(
        not bad,
        "cairn-config keys are settings bus/config/settings.py reads"
        + (f" (unknown: {bad})" if bad else ""),
    )
    # The topics the setup Job creates carry every command and event: on the multi-broker
    # Kafka these manifests point at, one copy of each would make any broker's loss an
    # outage, and its disk's loss a gap only a replay from PostgreSQL fills.
    rf = str(
        config_data.get(
            "CAIRN_KAFKA_REPLICATION_FACTOR", setting_default("CAIRN_KAFKA_REPLICATION_FACTOR")
        )
    )
    R.check(
        rf.isdigit() and int(rf) >= 3,
        f"cairn-config: CAIRN_KAFKA_REPLICATION_FACTOR >= 3 for the topics the Job creates ({rf})",
    )
    for cm_name, keys in configmaps.items():
        leaked = sorted(keys & SECRET_SETTINGS)
        R.check(
            not leaked,
            f"ConfigMap {cm_name}: no credentials (they belong in a Secret)"
            + (f": {leaked}" if leaked else ""),
        )
    secret_doc = by_kind.get("Secret", {}).get("cairn-secrets", {})
    bad = unknown_settings(secret_doc.get("stringData", {}))
    R.check(
        not bad,
        "cairn-secrets keys are settings bus/config/settings.py reads"
        + (f" (unknown: {bad})" if bad else ""),
    )
    if any("CHANGE-ME" in str(v) for v in secret_doc.get("stringData", {}).values()):
        R.note(f"{SECRET_EXAMPLE} holds placeholders (CHANGE-ME), as it should")

    workloads = {**by_kind.get("Deployment", {}), **by_kind.get("Job", {})}
    for wname, w in workloads.items():
        pod = w["spec"]["template"]["spec"]
        sc = pod.get("securityContext", {})
        R.check(
            sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 10001,
            f"{wname}: runs as non-root uid 10001 (the image's USER)",
        )
        R.check(
            pod.get("automountServiceAccountToken") is False,
            f"{wname}: automountServiceAccountToken: false (Cairn never calls the Kubernetes"
            " API; a compromised pod gets no token for it)",
        )
        R.check(
            pod.get("enableServiceLinks") is False,
            f"{wname}: enableServiceLinks: false (no Service env vars in the CAIRN_ namespace)",
        )
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                R.check(
                    v["configMap"]["name"] in configmaps,
                    f"{wname}: volume {v['name']} -> ConfigMap {v['configMap']['name']} exists",
                )
            if "persistentVolumeClaim" in v:
                R.check(
                    v["persistentVolumeClaim"]["claimName"] in pvcs,
                    f"{wname}: volume {v['name']} -> PVC {v['persistentVolumeClaim']['claimName']} exists",
                )
            if "secret" in v:
                R.check(
                    v["secret"]["secretName"] in secrets,
                    f"{wname}: volume {v['name']} -> Secret exists",
                )
        for role, c in containers(pod):
            cname = f"{wname}/{c['name']}"
            R.check(
                str(c.get("image", "")).split(":")[0].split("/")[-1] == "cairn",
                f"{cname}: uses the cairn image",
            )
            csc = c.get("securityContext", {})
            R.check(
                csc.get("allowPrivilegeEscalation") is False
                and csc.get("capabilities", {}).get("drop") == ["ALL"],
                f"{cname}: no privilege escalation, all capabilities dropped",
            )
            R.check(
                csc.get("readOnlyRootFilesystem") is True, f"{cname}: read-only root filesystem"
            )
            R.check(
                "resources" in c and "requests" in c["resources"], f"{cname}: resource requests set"
            )
            R.check(
                "memory" in c.get("resources", {}).get("limits", {}),
                f"{cname}: a memory limit (a leak or a burst cannot take the node)",
            )
            liveness = c.get("livenessProbe", {}).get("httpGet", {}).get("path")
            R.check(
                liveness != "/ready",
                f"{cname}: liveness is not /ready (a database or Kafka outage would restart"
                " every pod instead of taking it out of the Service)",
            )
            from_secret: set[str] = set()
            for ef in c.get("envFrom", []):
                if "secretRef" in ef:
                    from_secret |= secrets.get(ef["secretRef"]["name"], set())
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None and not ref.get("optional"):
                    from_secret.add(var["name"])
                if var["name"] in SECRET_SETTINGS:
                    R.check(
                        "value" not in var,
                        f"{cname}: env {var['name']} comes from a Secret, not a literal value",
                    )
            if c.get("args") == ["run", "api"]:
                # Unset, each replica would generate its own into its emptyDir: tokens or
                # signed URLs made by one replica refused by the others, and all of them
                # invalid after any restart.
                for var in sorted(GENERATED_SECRETS):
                    R.check(
                        var in from_secret,
                        f"{cname}: {var} from a Secret (shared by every replica, survives restarts)",
                    )
            names: set[str] = set()
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    ref = ef["configMapRef"]["name"]
                    R.check(ref in configmaps, f"{cname}: envFrom ConfigMap {ref} exists")
                    names |= configmaps.get(ref, set())
                if "secretRef" in ef:
                    ref = ef["secretRef"]["name"]
                    R.check(ref in secrets, f"{cname}: envFrom Secret {ref} exists")
                    names |= secrets.get(ref, set())
            for var in c.get("env", []):
                names.add(var["name"])
                vf = var.get("valueFrom", {})
                for ref_kind, store in (("configMapKeyRef", configmaps), ("secretKeyRef", secrets)):
                    if ref_kind in vf:
                        ref = vf[ref_kind]
                        ok = ref["name"] in store and ref["key"] in store[ref["name"]]
                        if not ok and ref.get("optional"):
                            R.note(
                                f"{cname}: optional {ref_kind} {ref['name']}/{ref['key']} is absent"
                            )
                        else:
                            R.check(
                                ok,
                                f"{cname}: env {var['name']} <- {ref_kind} {ref['name']}/{ref['key']} exists",
                            )
            bad = unknown_settings(names)
            R.check(
                not bad,
                f"{cname}: every env name is a known setting"
                + (f" (unknown: {bad})" if bad else ""),
            )
            if TOPICS_SNIPPET not in " ".join(c.get("args", [])):  # topics need only Kafka
                R.check("CAIRN_DATABASE_URL" in names, f"{cname}: gets CAIRN_DATABASE_URL")
            for m in c.get("volumeMounts", []):
                R.check(
                    m["name"] in volumes,
                    f"{cname}: mount {m['mountPath']} -> volume {m['name']} exists",
                )
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                http = c.get(probe, {}).get("httpGet")
                if http:
                    R.check(
                        http["path"].partition("?")[0] in api_routes(),
                        f"{cname}: {probe} GET {http['path']} is an API route",
                    )
                    R.check(
                        http["port"] in ports or http["port"] in ports.values(),
                        f"{cname}: {probe} port {http['port']} is declared",
                    )
            if ports:
                # The api listens on CAIRN_PORT (and serves /metrics there); every other
                # kind serves only its metrics, on CAIRN_METRICS_PORT.
                setting = "CAIRN_PORT" if "api" in c.get("args", []) else "CAIRN_METRICS_PORT"
                R.check(
                    str(next(iter(ports.values()))) == config_data.get(setting),
                    f"{cname}: containerPort matches {setting}",
                )
            if role == "init" and w["kind"] == "Deployment":
                cmd = c.get("command", [])
                script = cmd[-1] if cmd else ""
                mount = next(
                    (
                        m
                        for m in c.get("volumeMounts", [])
                        if script.startswith(m["mountPath"] + "/")
                    ),
                    None,
                )
                R.check(
                    mount is not None and Path(script).name in gen_files,
                    f"{cname}: runs {script} from the mounted deploy-scripts ConfigMap",
                )

    deployments = by_kind.get("Deployment", {})
    for kind in KINDS:
        # Prometheus scrapes every kind: annotations naming a declared port and /metrics.
        d = deployments.get(f"cairn-{kind}")
        if d is not None:
            template = d["spec"]["template"]
            notes = template.get("metadata", {}).get("annotations", {})
            declared = {
                str(p["containerPort"])
                for c in template["spec"]["containers"]
                for p in c.get("ports", [])
            }
            R.check(
                notes.get("prometheus.io/scrape") == "true"
                and notes.get("prometheus.io/path") == "/metrics"
                and notes.get("prometheus.io/port") in declared,
                f"cairn-{kind}: Prometheus scrape annotations on a declared port",
            )
    for kind in KINDS:
        d = deployments.get(f"cairn-{kind}")
        R.check(d is not None, f"Deployment cairn-{kind} exists")
        if d is None:
            continue
        pod = d["spec"]["template"]["spec"]
        main = pod["containers"][0]
        R.check(
            main.get("args") == ["run", kind] and "command" not in main,
            f"cairn-{kind}: runs `cairn run {kind}` (the image ENTRYPOINT)",
        )
        R.check(
            d["spec"]["selector"]["matchLabels"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items(),
            f"cairn-{kind}: selector matches its pod labels",
        )
        R.check(
            any(c["name"] == "wait-for-setup" for c in pod.get("initContainers", [])),
            f"cairn-{kind}: waits for the setup Job (init container)",
        )
        replicas = d["spec"].get("replicas", 1)
        if kind in ("actors", "projector", "handlers"):
            R.check(
                replicas <= int(config_data.get("CAIRN_KAFKA_PARTITIONS", "8")),
                f"cairn-{kind}: {replicas} replica(s) <= CAIRN_KAFKA_PARTITIONS",
            )
        blob = config_data.get("CAIRN_BLOB_STORE", "")
        if kind in ("api", "actors", "handlers") and blob.startswith("file://"):
            mounts = {m["mountPath"]: m["name"] for m in main.get("volumeMounts", [])}
            vol = {v["name"]: v for v in pod.get("volumes", [])}.get(
                mounts.get(blob[len("file://") :], ""), {}
            )
            R.check(
                "persistentVolumeClaim" in vol,
                f"cairn-{kind}: the blob PVC is mounted at {blob[len('file://') :]}",
            )

    api = deployments.get("cairn-api", {})
    api_labels = api.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    api_main = (api.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}])[
        0
    ]
    R.check(
        api_main.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/ready?scope=process",
        "cairn-api: readiness GET /ready?scope=process (this pod's own: Postgres, the blob"
        " store, its Kafka producer; /ready fails every pod at once when the actor host is"
        " down, leaving the Service no endpoints even for reads)",
    )
    R.check(
        api_main.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/health",
        "cairn-api: liveness GET /health",
    )
    R.check("limits" in api_main.get("resources", {}), "cairn-api: resource limits set")
    for name, svc in by_kind.get("Service", {}).items():
        if svc["spec"].get("type", "ClusterIP") == "ClusterIP":
            # Reached from outside only through an Ingress / Gateway that terminates TLS:
            # without CAIRN_TRUST_PROXY the api sees plain http, and the signed URLs it
            # hands out say http:// (broken, or the signature sent in clear).
            R.check(
                config_data.get("CAIRN_TRUST_PROXY") == "true",
                f"Service {name} is ClusterIP (a proxy in front): CAIRN_TRUST_PROXY=true",
            )
        R.check(
            svc["spec"]["selector"].items() <= api_labels.items(),
            f"Service {name}: selector matches the api pods",
        )
        port_names = {p.get("name") for p in api_main.get("ports", [])}
        R.check(
            all(p["targetPort"] in port_names for p in svc["spec"]["ports"]),
            f"Service {name}: targetPort is a named api port",
        )
    # PodDisruptionBudgets: every kind run with a standby or a peer (replicas >= 2) keeps
    # one through node drains; none blocks a drain (a budget that allows no disruption,
    # e.g. minAvailable 1 over a single replica, stalls `kubectl drain` for good).
    pdbs = by_kind.get("PodDisruptionBudget", {})
    for name, pdb in pdbs.items():
        selector = pdb["spec"]["selector"]["matchLabels"].items()
        targets = [
            d
            for d in deployments.values()
            if selector <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        R.check(len(targets) == 1, f"PDB {name}: selects the pods of exactly one Deployment")
        for d in targets:
            replicas = d["spec"].get("replicas", 1)
            spec = pdb["spec"]
            if "maxUnavailable" in spec:
                allowed = int(spec["maxUnavailable"]) >= 1
            else:
                allowed = int(spec.get("minAvailable", 0)) < replicas
            R.check(
                allowed,
                f"PDB {name}: lets a drain evict a pod of {d['metadata']['name']}"
                f" ({replicas} replica(s))",
            )
    for dname, d in deployments.items():
        if d["spec"].get("replicas", 1) >= 2:
            labels = d["spec"]["template"]["metadata"]["labels"].items()
            R.check(
                any(p["spec"]["selector"]["matchLabels"].items() <= labels for p in pdbs.values()),
                f"{dname}: {d['spec']['replicas']} replicas, guarded by a PodDisruptionBudget",
            )

    def setting(name: str) -> str:
        return str(config_data.get(name) or setting_default(name))

    # Graceful stop of the api: preStop pause (endpoints removed everywhere), then the
    # drain (CAIRN_DRAIN_TIMEOUT), then the rest of the shutdown, all before SIGKILL.
    api_pod = api.get("spec", {}).get("template", {}).get("spec", {})
    pre_stop = api_main.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] and len(pre_stop) == 2 else 0.0
    R.check(pause > 0, "cairn-api: a preStop pause so the Service stops routing before the drain")
    drain = float(setting("CAIRN_DRAIN_TIMEOUT"))
    grace = float(api_pod.get("terminationGracePeriodSeconds", 30))
    R.check(
        grace >= pause + drain + 10,
        f"cairn-api: terminationGracePeriodSeconds {grace:g} >= preStop {pause:g}"
        f" + CAIRN_DRAIN_TIMEOUT {drain:g} + 10 s to close down",
    )
    # Memory: the api's limit must hold its base (the request) plus every request body
    # CAIRN_MAX_INFLIGHT lets in at once, each up to two tus pieces, or a burst of uploads
    # gets the pod OOM-killed (every upload on it cut) instead of answered 429.
    resources = api_main.get("resources", {})
    try:
        limit = parse_bytes(resources.get("limits", {}).get("memory", "0"))
        base = parse_bytes(resources.get("requests", {}).get("memory", "0"))
        inflight = int(setting("CAIRN_MAX_INFLIGHT"))
        piece = parse_bytes(setting("CAIRN_TUS_PIECE_BYTES"))
        need = base + inflight * PIECES_PER_BODY * piece
        R.check(
            limit >= need,
            f"cairn-api: memory limit {limit >> 20} MiB holds the request {base >> 20} MiB"
            f" + CAIRN_MAX_INFLIGHT {inflight} x {PIECES_PER_BODY} x CAIRN_TUS_PIECE_BYTES"
            f" {piece >> 20} MiB = {need >> 20} MiB",
        )
    except ValueError as e:
        R.check(False, f"cairn-api: memory sizes readable ({e})")

    # compose and Kubernetes run the same Cairn: a setting both name has one value.
    (compose,) = load_all(DEPLOY / "compose.yaml")
    compose_env = {k: interpolate(v) for k, v in (compose.get("x-cairn-env") or {}).items()}
    # (where the servers are differs between the two, by nature)
    addresses = {"CAIRN_KAFKA_BOOTSTRAP", "CAIRN_DATABASE_URL", "CAIRN_S3_ENDPOINT"}
    differ = sorted(
        f"{k}: compose {compose_env[k]!r}, k8s {config_data[k]!r}"
        for k in (set(compose_env) & set(config_data)) - addresses
        if str(compose_env[k]) != str(config_data[k])
    )
    R.check(
        not differ,
        "settings in both compose.yaml (x-cairn-env) and cairn-config agree"
        + (f": {differ}" if differ else ""),
    )
    relay = deployments.get("cairn-relay", {})
    R.check(
        relay.get("spec", {}).get("replicas", 1) >= 2,
        "cairn-relay: a hot standby (leader election by advisory lock)",
    )

    job = by_kind.get("Job", {}).get("cairn-setup")
    R.check(job is not None, "Job cairn-setup exists")
    if job is not None:
        pod = job["spec"]["template"]["spec"]
        steps = [
            c.get("args", []) for c in pod.get("initContainers", []) + pod.get("containers", [])
        ]
        R.check(
            bool(steps) and steps[0] == ["migrate"], "cairn-setup: migrates first (init container)"
        )
        R.check(
            any(TOPICS_SNIPPET in " ".join(a) for a in steps[1:]),
            "cairn-setup: then creates the topics",
        )
    for name in sorted(set().union(*(comment_mentions(p) for p in K8S.glob("*.yaml")))):
        if name not in SETTINGS:
            R.note(f"k8s comments mention {name}, which bus/config/settings.py does not read (yet)")


# ------------------------------------------------------------------ base image, build context

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_VAR = re.compile(r"\$\{(\w+)(?::?[?][^}]*)?\}|\$(\w+)")


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments out."""
    line = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not line and (not stripped or stripped.startswith("#")):
            continue
        if line and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            line += stripped[:-1] + " "
            continue
        line += stripped
        instr, _, rest = line.partition(" ")
        yield instr.upper(), rest.strip()
        line = ""


def required_build_args(dockerfile: str) -> set[str]:
    """The ARGs declared before the first FROM without a default that a FROM uses: a build
    must pass each (--build-arg, compose's build.args)."""
    declared: dict[str, str] = {}
    used: set[str] = set()
    seen_from = False
    for instr, value in _instructions(dockerfile):
        if instr == "ARG" and not seen_from:
            for item in shlex.split(value):
                name, _, default = item.partition("=")
                declared[name] = default
        elif instr == "FROM":
            seen_from = True
            used |= {m.group(1) or m.group(2) for m in _VAR.finditer(value)}
    return {n for n in used if n in declared and not declared[n]}


def base_image_checks(dockerfile: str) -> list[tuple[bool, str]]:
    """Every FROM that names an image (not an earlier stage) pins it by digest: a literal
    `@sha256:<64 hex>`, or `@${ARG}` where the ARG is declared before the first FROM with a
    digest as its default, or with none and `${ARG:?message}` so that a build without
    `--build-arg ARG=sha256:...` stops with that message. A tag alone is a moving target:
    the same commit would build on whatever the tag names that day."""
    out: list[tuple[bool, str]] = []
    global_args: dict[str, str | None] = {}
    stages: set[str] = set()
    froms = 0
    for instr, value in _instructions(dockerfile):
        if instr == "ARG" and not froms:
            for item in shlex.split(value):
                name, eq, default = item.partition("=")
                global_args[name] = default if eq else None
            continue
        if instr != "FROM":
            continue
        froms += 1
        # (words split on blanks outside ${...}: `${D:?set it}` is one word)
        words = [w for w in re.findall(r"(?:\$\{[^}]*\}|\S)+", value) if not w.startswith("--")]
        image = words[0] if words else ""
        if len(words) >= 3 and words[1].upper() == "AS":
            alias = words[2].lower()
        else:
            alias = None
        if image.lower() in stages or image == "scratch":
            if alias:
                stages.add(alias)
            continue
        if alias:
            stages.add(alias)
        what = f"FROM {image}"
        _, at, digest = image.partition("@")
        if not at:
            out.append((False, f"{what}: pinned by digest (image@sha256:...; a tag moves)"))
            continue
        if _DIGEST.fullmatch(digest):
            out.append((True, f"{what}: pinned by digest"))
            continue
        var = _VAR.fullmatch(digest)
        if var is None:
            out.append((False, f"{what}: the digest is sha256:<64 hex digits> ({digest!r})"))
            continue
        name = var.group(1) or var.group(2)
        required = "?" in digest  # ${NAME:?message} / ${NAME?message}
        if name not in global_args:
            out.append((False, f"{what}: {name} is an ARG declared before the first FROM"))
        elif global_args[name]:
            ok = _DIGEST.fullmatch(str(global_args[name])) is not None
            out.append((ok, f"{what}: ARG {name}'s default is a digest ({global_args[name]!r})"))
        else:
            out.append(
                (
                    required,
                    f"{what}: ARG {name} has no default, so it is required"
                    f" (${{{name}:?...}}: a build without --build-arg {name}=sha256:... stops,"
                    " never takes the tag alone)",
                )
            )
    out.append((froms > 0, f"the Dockerfile has FROM lines ({froms})"))
    return out


# Paths that must never reach the build context: the developer's environment and tools,
# version control, caches, test and bench output, local data, secrets.
NEVER_IN_CONTEXT = (
    ".venv/bin/python",
    ".git/HEAD",
    ".tools/bin/uv",
    ".mypy_cache/3.11/cache.db",
    ".ruff_cache/content",
    ".pytest_cache/v/cache/nodeids",
    ".hypothesis/examples/x",
    ".import_linter_cache/x.json",
    ".schemathesis/x",
    ".screenshots/x.png",
    ".cairn/pg/PG_VERSION",
    "api/__pycache__/app.cpython-311.pyc",
    "bus/blobs/s3.pyc",
    "tests/conftest.py",
    "tests/bench/results/run.json",
    "bench/results/run.json",
    "node_modules/x/index.js",
    "api/console/vendor-src/node_modules/x/index.js",
    ".env",
    "deploy/.env",
    "bus/.env",
    "deploy/k8s/secret.yaml",
    "id_rsa",
    "server.key",
    "cert.pem",
)
IGNORE_FILES = (".dockerignore", "deploy/Dockerfile.dockerignore")


def ignore_patterns(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def dockerignore_checks(root: Path) -> list[tuple[bool, str]]:
    """The repository root's .dockerignore (read by every builder: BuildKit, the legacy
    builder, kaniko, podman) keeps NEVER_IN_CONTEXT out of the build context; so does
    deploy/Dockerfile.dockerignore if there is one (BuildKit would read it instead)."""
    import tempfile

    from docker.utils.build import exclude_paths

    out: list[tuple[bool, str]] = []
    out.append(((root / ".dockerignore").is_file(), ".dockerignore exists at the repository root"))
    with tempfile.TemporaryDirectory() as tmp:
        # A context holding exactly these paths, walked as docker-py sends a context.
        for probe in NEVER_IN_CONTEXT:
            (Path(tmp) / probe).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / probe).touch()
        for name in IGNORE_FILES:
            path = root / name
            if not path.is_file():
                continue
            included = set(exclude_paths(tmp, ignore_patterns(path)))
            for probe in NEVER_IN_CONTEXT:
                out.append(
                    (probe not in included, f"{name} keeps {probe} out of the build context")
                )
    return out


# ------------------------------------------------------------------ Dockerfile


def dockerfile_stages() -> list[dict[str, Any]]:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(str(DEPLOY / "Dockerfile"))
    args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for ins in parser.structure:
        instr, value = ins["instruction"], ins["value"]
        if instr == "COMMENT":
            continue
        if instr == "ARG":
            name, _, default = value.partition("=")
            if stages:
                stages[-1]["args"][name.strip()] = default.strip()
            else:
                args[name.strip()] = default.strip()
            continue
        if instr == "FROM":
            words = re.findall(r"(?:\$\{[^}]*\}|\S)+", value)
            image = re.sub(
                r"\$\{(\w+)(?::?[-?][^}]*)?\}", lambda m: args.get(m.group(1), ""), words[0]
            )
            stages.append(
                {
                    "from": image,
                    "alias": words[2] if len(words) == 3 and words[1].upper() == "AS" else None,
                    "ins": [],
                    "args": {},
                }
            )
            continue
        stages[-1]["ins"].append((instr, value))
    return stages


def dockerignore_included() -> set[str]:
    from docker.utils.build import exclude_paths

    return set(exclude_paths(str(ROOT), ignore_patterns(ROOT / ".dockerignore")))


def tracked_files(directory: Path) -> list[Path]:
    """The files under `directory` that git tracks (what a clean checkout builds from;
    untracked build litter such as node_modules may be left out of the context), or every
    file but bytecode when this is no git checkout."""
    res = subprocess.run(
        ["git", "ls-files", "-z", "--", str(directory)], cwd=ROOT, capture_output=True
    )
    if res.returncode == 0 and res.stdout:
        return [ROOT / f for f in res.stdout.decode().split("\0") if f]
    return [f for f in directory.rglob("*") if f.is_file() and "__pycache__" not in f.parts]


def check_dockerfile() -> list[dict[str, Any]]:
    R.start("Dockerfile")
    stages = dockerfile_stages()
    R.check(
        len(stages) >= 1
        and all(
            s["from"] == "python:3.11-slim" or s["from"].startswith("python:3.11-slim")
            for s in stages
        ),
        f"every stage is python:3.11-slim ({[s['from'] for s in stages]})",
    )
    for ok, what in base_image_checks((DEPLOY / "Dockerfile").read_text()):
        R.check(ok, what)
    for name in sorted(required_build_args((DEPLOY / "Dockerfile").read_text())):
        R.note(
            f"no {name} committed in deploy/Dockerfile: every build passes --build-arg {name}"
            " (deploy/README.md, The image, says how to look it up)"
        )
    for ok, what in dockerignore_checks(ROOT):
        R.check(ok, what)
    build, final = stages[0], stages[-1]
    ins = build["ins"]
    R.check(
        any("pip install" in v and "uv" in v for i, v in ins if i == "RUN"),
        "build stage installs uv",
    )
    steps = [(i, v) for i, v in ins if i in ("COPY", "RUN")]
    lock_copy = next(
        (
            n
            for n, (i, v) in enumerate(steps)
            if i == "COPY" and "pyproject.toml" in v and "uv.lock" in v
        ),
        None,
    )
    first_sync = next((n for n, (i, v) in enumerate(steps) if i == "RUN" and "uv sync" in v), None)
    first_src = next(
        (
            n
            for n, (i, v) in enumerate(steps)
            if i == "COPY" and v.split()[0].rstrip("/") in SOURCE_DIRS
        ),
        None,
    )
    R.check(
        None not in (lock_copy, first_sync, first_src) and lock_copy < first_sync < first_src,  # type: ignore[operator]
        "pyproject.toml + uv.lock copied, dependencies synced, then the source (layer cache)",
    )
    syncs = [v for i, v in ins if i == "RUN" and "uv sync" in v]
    R.check(
        any("--locked" in v and "--no-dev" in v and "--no-install-project" in v for v in syncs),
        "dependencies: uv sync --locked --no-dev --no-install-project",
    )
    R.check(
        any("--locked" in v and "--no-dev" in v and "--no-install-project" not in v for v in syncs),
        "project: uv sync --locked --no-dev",
    )
    copied = [
        src
        for i, v in ins
        if i == "COPY"
        for src in shlex.split(v)[:-1]
        if not src.startswith("--")
    ]
    for d in SOURCE_DIRS:
        R.check(any(c.rstrip("/") == d for c in copied), f"build stage copies {d}/")
    import tomllib

    wheel_pkgs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    R.check(
        set(wheel_pkgs) <= set(SOURCE_DIRS),
        f"every package of the wheel is copied ({', '.join(wheel_pkgs)})",
    )

    included = dockerignore_included()
    for i, v in ins:
        if i != "COPY" or v.startswith("--from"):
            continue
        for src in shlex.split(v)[:-1]:
            if src.startswith("--"):
                continue
            p = ROOT / src
            ok = p.exists()
            if p.is_dir():
                files = tracked_files(p)
                missing = sorted(str(f.relative_to(ROOT)) for f in files if f.is_file())
                missing = [f for f in missing if f not in included]
                ok = ok and bool(files) and not missing
            else:
                ok = ok and src in included
            R.check(
                ok,
                f"COPY {src}: exists and is not excluded by .dockerignore"
                + (f" ({missing[:3]} excluded)" if p.is_dir() and missing else ""),
            )
    leaked = sorted(
        p
        for p in included
        if p.split("/")[0] in {"tests", ".git", ".venv", ".cairn", "deploy"} or "__pycache__" in p
    )
    R.check(
        not leaked,
        "the build context leaves out tests/, .git, .venv, data dirs, __pycache__"
        + (f" ({leaked[:5]})" if leaked else ""),
    )

    fins = final["ins"]
    user = [v for i, v in fins if i == "USER"]
    R.check(
        bool(user) and re.fullmatch(r"[1-9]\d*(:\d+)?", user[-1]) is not None,
        f"runtime USER is a non-root numeric uid ({user[-1] if user else None})",
    )
    R.check(
        any(i == "COPY" and v.startswith("--from=build") for i, v in fins),
        "runtime stage copies the venv and source from the build stage",
    )
    entry = [v for i, v in fins if i == "ENTRYPOINT"]
    cmd = [v for i, v in fins if i == "CMD"]
    R.check(bool(entry) and json.loads(entry[-1]) == ["cairn"], 'ENTRYPOINT ["cairn"]')
    R.check(
        "cairn" in console_scripts(), "`cairn` is a console script of the project (pyproject.toml)"
    )
    R.check(bool(cmd) and json.loads(cmd[-1]) == ["run", "api"], 'CMD ["run", "api"]')
    env_text = " ".join(v for i, v in fins if i == "ENV")
    R.check("/app/.venv/bin" in env_text, "the venv's bin is on PATH (cairn, python)")
    env_names = set(re.findall(r"\b(CAIRN_[A-Z0-9_]+)=", env_text))
    bad = unknown_settings(env_names)
    R.check(not bad, f"image ENV names are known settings ({', '.join(sorted(env_names))})")
    return stages


def build_venv(stages: list[dict[str, Any]], out: Path) -> None:
    """Replay the build stage's COPY and `uv sync` steps into out/app, then inspect it."""
    R.start("Dockerfile build stage, replayed with the local uv (no engine needed)")
    build = stages[0]
    app = out / "app"
    if out.exists():
        shutil.rmtree(out)
    app.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    included = dockerignore_included()
    workdir = app
    local_uv = subprocess.run(["uv", "--version"], capture_output=True, text=True).stdout.split()[1]
    wanted_uv = build["args"].get("UV_VERSION", "")
    if wanted_uv != local_uv:
        R.note(f"Dockerfile pins uv {wanted_uv}, this machine has {local_uv}")
    for instr, value in build["ins"]:
        if instr == "ENV":
            for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', value):
                env[k] = v.strip('"').replace("/app", str(app))
        elif instr == "WORKDIR":
            workdir = app if value == "/app" else Path(value)
        elif instr == "COPY":
            *srcs, dest = shlex.split(value)
            for src in srcs:
                target = (
                    workdir / dest
                    if not dest.startswith("/")
                    else Path(dest.replace("/app", str(app)))
                )
                p = ROOT / src
                if p.is_dir():
                    for f in p.rglob("*"):
                        rel = str(f.relative_to(ROOT))
                        if f.is_file() and rel in included:
                            (target / f.relative_to(p)).parent.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(f, target / f.relative_to(p))
                else:
                    shutil.copy2(p, target / p.name if str(dest).endswith("/") else target)
        elif instr == "RUN":
            command = re.sub(r"^(--mount=\S+\s+)+", "", value.strip())
            if command.startswith("pip install"):
                continue  # installs uv: this machine's uv stands in
            # The image has exactly one Python 3.11; make uv pick a 3.11 here too.
            run_env = {**env, "UV_PYTHON": "3.11"}
            res = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=workdir,
                env=run_env,
                capture_output=True,
                text=True,
            )
            short = command if len(command) < 70 else command[:67] + "..."
            if not R.check(res.returncode == 0, f"RUN {short}"):
                print(res.stdout[-3000:], res.stderr[-3000:], sep="\n")
                return
    venv = app / ".venv"
    cairn = venv / "bin" / "cairn"
    res = subprocess.run([str(cairn), "--help"], capture_output=True, text=True)
    R.check(res.returncode == 0 and "migrate" in res.stdout, "the venv's `cairn --help` works")
    probe = (
        "import importlib.util as u, bus.store.db as d; "
        "print(sorted(p.name for p in d.MIGRATIONS_DIR.glob('*.sql'))); "
        "print([m for m in ('pytest', 'mypy', 'ruff', 'hypothesis') if u.find_spec(m)])"
    )
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, cwd="/"
    )
    lines = res.stdout.splitlines()
    R.check(
        res.returncode == 0 and len(lines) == 2 and lines[0] not in ("", "[]"),
        f"migrations found from the installed package: {lines[0] if lines else res.stderr[-300:]}",
    )
    R.check(len(lines) == 2 and lines[1] == "[]", "no dev dependencies in the image's venv")
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    R.check(version.startswith("3.11."), f"the venv runs Python {version} like python:3.11-slim")


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--build-venv", type=Path, help="replay the Dockerfile build stage into this dir"
    )
    args = ap.parse_args()
    print(
        f"settings known to bus/config/settings.py: {len(SETTINGS)}; process kinds: {', '.join(KINDS)}"
    )
    check_yaml_parses()
    check_compose()
    check_k8s()
    stages = check_dockerfile()
    if args.build_venv:
        build_venv(stages, args.build_venv.resolve())
    print(f"\n{R.passed} passed, {len(R.failed)} failed")
    for f in R.failed:
        print(f"  FAILED {f}")
    for n in R.notes:
        print(f"  NOTE   {n}")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
