"""Metric names follow Prometheus conventions, and the consumer-lag hook computes lag."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from bus.config import metrics
from bus.run.processes import KINDS


def cairn_metrics() -> list[MetricWrapperBase]:
    return [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]


def test_names_follow_prometheus_conventions() -> None:
    found = {m._name: m._type for m in cairn_metrics()}
    assert len(found) >= 20
    for name, kind in found.items():
        assert name.startswith("cairn_"), name
        # prometheus_client exposes a Counter as NAME_total; a gauge must not look like one.
        assert not name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith(("_seconds", "_bytes")), name
    exposed = {m.name for m in REGISTRY.collect()}
    assert "cairn_events_total" not in exposed  # was a gauge with a counter's name
    assert {"cairn_http_requests", "cairn_commands_handled", "cairn_events_appended"} <= exposed
    for m in REGISTRY.collect():
        if m.type == "counter" and m.name.startswith("cairn_"):
            assert all(s.name.endswith(("_total", "_created")) for s in m.samples), m.name


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Rec:
    offset: int


class FakeConsumer:
    """Only the highwater() lookup the hook uses (no broker: this is arithmetic)."""

    def __init__(self, ends: dict[TP, int]) -> None:
        self.ends = ends

    def highwater(self, tp: TP) -> int | None:
        return self.ends.get(tp)


def lag(group: str, topic: str) -> float | None:
    return REGISTRY.get_sample_value(
        "cairn_kafka_consumer_lag_messages", {"group": group, "topic": topic}
    )


def test_consumer_lag_is_the_end_minus_the_next_offset_summed_per_topic() -> None:
    a0, a1, b0 = TP("t.a", 0), TP("t.a", 1), TP("t.b", 0)
    consumer = FakeConsumer({a0: 10, a1: 7, b0: 3})
    metrics.observe_fetch("g-test", consumer, {a0: [Rec(4), Rec(5)], a1: [Rec(6)], b0: [Rec(2)]})
    assert lag("g-test", "t.a") == (10 - 6) + (7 - 7)
    assert lag("g-test", "t.b") == 0
    metrics.observe_idle("g-test", ["t.a"])
    assert lag("g-test", "t.a") == 0


def test_only_the_api_exports_the_gauges_it_reads_from_postgres() -> None:
    """The event store's position, the relay's and the projections' lag, the events held
    and their age are read from Postgres by the api (api/routes/ops.py, LagGauges). Every
    other kind exported them too, never set: `cairn_relay_lag_events 0`,
    `cairn_eventstore_last_position 0` and `cairn_lag_gauges_age_seconds 0` ("fresh") on
    the relay's, the projector's... metrics port, a wrong answer for any query that does
    not name the api's job. Each kind's code is loaded as `cairn run KIND` loads it."""
    kinds = [k for k in KINDS if k != "api"]
    script = (
        "import sys\n"
        "from prometheus_client import REGISTRY, generate_latest\n"
        "from bus.run.processes import load\n"
        f"for kind in {kinds!r}:\n"
        "    load(kind)\n"
        "sys.stdout.write(generate_latest(REGISTRY).decode())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "cairn_blob_written_bytes_total" in out  # the registry is there, with its metrics
    for name in (
        "cairn_eventstore_last_position",
        "cairn_relay_lag_events",
        "cairn_lag_gauges_age_seconds",
        "cairn_projection_lag_events",
        "cairn_projection_events_held",
    ):
        assert name not in out, name
