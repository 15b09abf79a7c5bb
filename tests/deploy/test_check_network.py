"""deploy/check_static.py's checks of the NetworkPolicies: they pass on deploy/k8s as it is
and each fails on a copy broken in its one way.

They read the raw manifests as the kustomization lists them (no kubectl needed); `just
deploy-check` runs the same checks on kubectl's rendered output."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"

Checks = list[tuple[bool, str]]
Change = Callable[[list[Any]], list[Any]]  # the documents of one manifest, edited


def failed(checks: Checks) -> list[str]:
    return [what for ok, what in checks if not ok]


def edit_yaml(path: Path, change: Change) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    path.write_text(yaml.safe_dump_all(change(docs), sort_keys=False))


def policy(docs: list[Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in docs if d["metadata"]["name"] == name)
    return found


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(K8S, tmp_path / "k8s"))


NETPOL = "networkpolicy.yaml"
Broken = Callable[..., list[str]]  # (change, file=NETPOL) -> the failed checks


@pytest.fixture
def broken(check: ModuleType, k8s_copy: Path) -> Broken:
    """The network checks that fail once `change` has edited `file` of the copy (and
    whatever the test edited before)."""

    def run(change: Change, file: str = NETPOL) -> list[str]:
        edit_yaml(k8s_copy / file, change)
        return failed(check.network_policy_checks(k8s_copy))

    return run


def without(name: str) -> Change:
    """The documents but the one named `name`."""
    return lambda docs: [d for d in docs if d["metadata"]["name"] != name]


def without_namespace_wide(docs: list[Any]) -> list[Any]:
    return [d for d in docs if d["spec"].get("podSelector") not in ({}, None)]


def relabel(docs: list[Any]) -> list[Any]:
    """The relay's Deployment with labels of its own, which no Cairn policy selects."""
    (d,) = docs
    d["spec"]["template"]["metadata"]["labels"] = {"app": "debug"}
    d["spec"]["selector"]["matchLabels"] = {"app": "debug"}
    return docs


# ------------------------------------------------------------------ network policies


def test_the_manifests_pass_every_network_check(check: ModuleType) -> None:
    checks = check.network_policy_checks(K8S)
    assert failed(checks) == []
    assert len(checks) > 30  # every workload, every destination: not a vacuous pass


def test_without_the_default_deny_it_fails(broken: Broken) -> None:
    bad = broken(without("default-deny"))
    assert any("default deny of ingress" in f for f in bad), bad
    assert any("default deny of egress" in f for f in bad), bad


def test_a_deployment_no_policy_selects_fails(broken: Broken, k8s_copy: Path) -> None:
    # Without the namespace-wide policies, a workload with labels of its own is selected by
    # no policy: it takes any traffic and reaches anything.
    edit_yaml(k8s_copy / NETPOL, without_namespace_wide)
    bad = broken(relabel, "deployment-relay.yaml")
    assert any("Deployment cairn-relay: selected by a NetworkPolicy" in f for f in bad), bad
    assert any("cairn-relay: its ingress is restricted" in f for f in bad), bad


def test_a_deployment_only_the_dns_policy_selects_fails(broken: Broken, k8s_copy: Path) -> None:
    # The DNS allowance selects every pod for egress; with no default deny, a pod that no
    # other policy selects still takes any traffic in.
    edit_yaml(k8s_copy / NETPOL, without("default-deny"))
    bad = broken(relabel, "deployment-relay.yaml")
    assert any("cairn-relay: its ingress is restricted" in f for f in bad), bad


def test_a_statefulset_no_policy_selects_fails(broken: Broken, k8s_copy: Path) -> None:
    (relay,) = yaml.safe_load_all((k8s_copy / "deployment-relay.yaml").read_text())
    relay["kind"] = "StatefulSet"
    relay["metadata"]["name"] = "cairn-cache"
    relay["spec"]["template"]["metadata"]["labels"] = {"app": "cache"}
    relay["spec"]["selector"]["matchLabels"] = {"app": "cache"}
    (k8s_copy / "statefulset-cache.yaml").write_text(yaml.safe_dump(relay))
    kust = yaml.safe_load((k8s_copy / "kustomization.yaml").read_text())
    kust["resources"].append("statefulset-cache.yaml")
    (k8s_copy / "kustomization.yaml").write_text(yaml.safe_dump(kust))
    bad = broken(without_namespace_wide)
    assert any("StatefulSet cairn-cache: selected by a NetworkPolicy" in f for f in bad), bad


def test_the_fetcher_reaching_the_metadata_address_fails(
    broken: Broken,
) -> None:
    def open_link_local(docs: list[Any]) -> list[Any]:
        rule = policy(docs, "cairn-fetcher-egress-internet")["spec"]["egress"][0]
        v4 = rule["to"][0]["ipBlock"]
        v4["except"] = [c for c in v4["except"] if not c.startswith("169.254.")]
        return docs

    bad = broken(open_link_local)
    assert any("169.254.169.254" in f and "cairn-fetcher" in f for f in bad), bad


def test_the_fetcher_reaching_private_ranges_fails(broken: Broken) -> None:
    def open_everything(docs: list[Any]) -> list[Any]:
        rule = policy(docs, "cairn-fetcher-egress-internet")["spec"]["egress"][0]
        rule["to"] = [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
        return docs

    bad = broken(open_everything)
    for address in ("10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254"):
        assert any(address in f and "cairn-fetcher" in f for f in bad), (address, bad)


def test_an_egress_rule_without_destination_fails(broken: Broken) -> None:
    # `ports` alone, no `to`: every address on those ports, the metadata service included.
    def drop_to(docs: list[Any]) -> list[Any]:
        del policy(docs, "cairn-fetcher-egress-internet")["spec"]["egress"][0]["to"]
        return docs

    bad = broken(drop_to)
    assert any("169.254.169.254" in f for f in bad), bad


def test_internet_egress_for_every_pod_fails(broken: Broken) -> None:
    # The fetcher's rule widened to every Cairn pod: the relay does not fetch URLs.
    def widen(docs: list[Any]) -> list[Any]:
        spec = policy(docs, "cairn-fetcher-egress-internet")["spec"]
        spec["podSelector"] = {"matchLabels": {"app.kubernetes.io/name": "cairn"}}
        return docs

    bad = broken(widen)
    assert any("cairn-relay" in f and "internet" in f for f in bad), bad


def test_an_api_closed_to_its_clients_fails(broken: Broken) -> None:
    bad = broken(without("cairn-api-ingress"))
    assert any("cairn-api" in f and "port 8000 from outside" in f for f in bad), bad


def test_a_kind_cut_off_from_kafka_or_dns_fails(broken: Broken) -> None:
    def no_kafka_no_dns(docs: list[Any]) -> list[Any]:
        spec = policy(docs, "cairn-egress-datastores")["spec"]
        spec["egress"] = spec["egress"][:1]  # PostgreSQL only
        return without("cairn-egress-dns")(docs)

    bad = broken(no_kafka_no_dns)
    assert any("cairn-projector" in f and "Kafka" in f for f in bad), bad
    assert any("Job cairn-setup" in f and "DNS" in f for f in bad), bad


def test_a_blob_kind_cut_off_from_s3_fails(broken: Broken) -> None:
    def without_tasks(docs: list[Any]) -> list[Any]:
        sel = policy(docs, "cairn-egress-s3")["spec"]["podSelector"]["matchExpressions"][0]
        sel["values"] = [v for v in sel["values"] if v != "tasks"]
        return docs

    bad = broken(without_tasks)
    assert any("cairn-tasks" in f and "S3" in f for f in bad), bad


def test_datastores_open_beyond_cairn_fail(broken: Broken) -> None:
    # The client port's peer by label alone: any namespace's pod wearing the label gets in.
    def by_label_only(docs: list[Any]) -> list[Any]:
        peer = policy(docs, "postgres-from-cairn")["spec"]["ingress"][0]["from"][0]
        del peer["namespaceSelector"]
        peer["namespaceSelector"] = {}
        return docs

    bad = broken(by_label_only, "networkpolicy-datastores.example.yaml")
    assert any("postgres-from-cairn" in f and "not Cairn's" in f for f in bad), bad
