"""Commands decided and folded without a store, for the aggregates' own tests: a run of
commands to the state it leaves, and a refusal checked to be exactly its kind and to leave
the state as it was."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import pytest

from domain.commands import Command
from domain.errors import DomainError
from domain.kernel import Event

S = TypeVar("S")


def run_all(
    decide: Callable[[S | None, Any], Sequence[Event]],
    evolve: Callable[[S | None, Event], S | None],
    cmds: Iterable[Command],
    state: S | None = None,
) -> S:
    """Each of `cmds` decided against the state the ones before left, its events folded."""
    for cmd in cmds:
        for e in decide(state, cmd):
            state = evolve(state, e)
    assert state is not None
    return state


def refused_by(
    decide: Callable[[S | None, Any], object],
    state: S | None,
    cmd: Command,
    kind: type[DomainError],
) -> DomainError:
    """`decide` must refuse `cmd` with exactly `kind` and leave `state` untouched."""
    before = copy.deepcopy(state)
    with pytest.raises(DomainError) as info:
        decide(state, cmd)
    assert type(info.value) is kind, info.value.to_dict()
    assert state == before
    return info.value
