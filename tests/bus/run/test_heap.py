"""bus/run/heap.py: a process's start-up objects leave the collector's sight; `cairn run`
settles the heap before its kind runs, and only such a process settles again."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from bus.config.settings import Settings
from bus.run import cli, heap, processes

_SEEN: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    """The test process's collector as it was: unfrozen, its own thresholds."""
    thresholds = gc.get_threshold()
    settled = heap._settled
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        heap._settled = settled


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settle_freezes_what_exists_and_raises_the_young_threshold() -> None:
    kept = [_Cycle() for _ in range(100)]
    heap.settle()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD
    # Frozen objects are out of every collection's sight: a full collection finds none of
    # them, while an object made afterwards is still tracked by a generation.
    assert all(not _in_generations(k) for k in kept[:5])
    later = _Cycle()
    assert _in_generations(later)


def test_settle_collects_garbage_first() -> None:
    # Unreachable cycles are collected, not frozen for the life of the process.
    gc.disable()  # so that only settle can collect them
    try:
        dropped = [weakref.ref(_Cycle()) for _ in range(50)]
        assert all(r() is not None for r in dropped)
        heap.settle()
        assert all(r() is None for r in dropped)
    finally:
        gc.enable()


async def _component(settings: Settings, stop: asyncio.Event) -> None:
    _SEEN["frozen"] = gc.get_freeze_count()
    _SEEN["young"] = gc.get_threshold()[0]
    stop.set()


def test_cairn_run_settles_the_heap_before_the_kind_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    _SEEN.clear()
    assert gc.get_freeze_count() == 0
    monkeypatch.setitem(processes.KINDS, "test", (f"{__name__}:_component", 0))
    monkeypatch.setitem(processes.RUNNERS, "test", _component)
    assert asyncio.run(cli._run_kind(Settings(metrics_port=0), "test")) == 0
    assert _SEEN["frozen"] > 0
    assert _SEEN["young"] == heap.YOUNG_THRESHOLD


def test_settling_again_is_for_a_process_that_settled_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A component run inside pytest's process: its app is not frozen.
    monkeypatch.setattr(heap, "_settled", False)
    default_young = gc.get_threshold()[0]
    heap.settle_again()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] == default_young
    # In a `cairn run` process: what was built since the start is frozen too.
    heap.settle()
    first = gc.get_freeze_count()
    built = [_Cycle() for _ in range(100)]
    heap.settle_again()
    assert gc.get_freeze_count() >= first + len(built)


def _in_generations(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())
