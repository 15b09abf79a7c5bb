"""What the fold-cost tests of uploads and fetches both check of a `fold` that gathers
runs of events (domain.sequences.fold_in_runs): the states it derives, that it equals
evolving event by event, and that a state's pieces share their full blocks."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Generic, NamedTuple, TypeVar

import pytest

from domain.events import RecordedEvent
from domain.kernel import Event
from domain.sequences import PieceSeq

S = TypeVar("S")


def counting_states(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[int]:
    """Count the states `module`'s `evolve` and `fold` derive (and, for a fetch, its
    segments): each a `replace` of the last. One entry per state derived."""
    made: list[int] = []
    real = module.replace

    def counted(*args: Any, **kw: Any) -> Any:
        made.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(module, "replace", counted)
    return made


class Folds(NamedTuple, Generic[S]):
    """One stream folded each way `assert_fold_is_evolving` does."""

    by_hand: S | None  # evolved event by event
    whole: S | None  # folded in one pass
    mid: S | None  # folded up to the cut (after the rest was folded onto it)
    before: S | None  # a deep copy of `mid`, taken before


def assert_fold_is_evolving(
    fold: Callable[..., S | None],
    evolve: Callable[[S | None, Event], S | None],
    events: Sequence[Event],
    records: Sequence[RecordedEvent],
    cut: int,
) -> Folds[S]:
    """`fold` over `records` (`events` as stored) equals `evolve` over `events` one by
    one, also resumed from the fold of any prefix `records[:cut]`, and leaves that earlier
    state as it was. Returns the states (for checks of what equality leaves out)."""
    by_hand: S | None = None
    for e in events:
        by_hand = evolve(by_hand, e)
    whole = fold(records)
    assert whole == by_hand, (whole, by_hand)
    mid = fold(records[:cut])
    before = copy.deepcopy(mid)
    assert fold(records[cut:], mid) == by_hand
    assert mid == before, (mid, before)
    return Folds(by_hand, whole, mid, before)


def shares_full_blocks(old: PieceSeq, new: PieceSeq) -> bool:
    """`new` (`old` extended) holds every full block of `old`'s as the same object."""
    return all(a is b for a, b in zip(old._blocks[:-1], new._blocks[:-1], strict=True))
