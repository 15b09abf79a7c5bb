"""Every registered aggregate feeds a read model, and every read model reads registered ones.

Pure: no database. Adding an aggregate to domain/registry.py without a projection in
projections/rebuild.py fails here (that aggregate would be written and never listable).
"""

from __future__ import annotations

from domain.registry import AGGREGATES
from projections.rebuild import PROJECTIONS, unprojected


def test_every_registered_aggregate_has_a_projection() -> None:
    assert unprojected() == []


def test_every_projection_reads_registered_aggregates_only() -> None:
    for name, projection in PROJECTIONS.items():
        assert projection.aggregates, f"{name} reads no aggregate"
        assert set(projection.aggregates) <= set(AGGREGATES), name


def test_a_forgotten_aggregate_is_named() -> None:
    without_tasks = {n: p for n, p in PROJECTIONS.items() if "tasks" not in p.aggregates}
    assert unprojected(without_tasks) == ["tasks"]
    assert unprojected({}) == sorted(AGGREGATES)
