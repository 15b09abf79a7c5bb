"""bus/run/heap.py: a process's start-up objects leave the collector's sight, and a runner
settles the heap before its component runs."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from bus.config.settings import Settings
from bus.run import heap
from bus.run.processes import _runner

_SEEN: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    """The test process's collector as it was: unfrozen, its own thresholds."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


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


def test_a_runner_settles_the_heap_before_its_component_runs() -> None:
    _SEEN.clear()
    assert gc.get_freeze_count() == 0
    run = _runner("test", f"{__name__}:_component", 0)
    asyncio.run(run(Settings(), asyncio.Event()))
    assert _SEEN["frozen"] > 0
    assert _SEEN["young"] == heap.YOUNG_THRESHOLD


def _in_generations(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())
