"""Folding a task's stream costs work linear in its items.

A copy or delete of 80,000 files records its results in a checkpoint every 50 items or
half second: 1,600 or more TaskProgressed events. The actor host folds each into the state
it keeps, the worker into its run's state at every safe point, and the API folds the whole
stream on a GET (a task of more than 50,000 results is too heavy for its state cache).
Each checkpoint copied the whole results tuple, so a fold did n^2/2 copies (n the
checkpoints) of up to 80,000 entries.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import RecordedEvent
from domain.kernel import Event
from domain.registry import AGGREGATES
from domain.tasks import TaskState, evolve
from domain.tasks import state as task_state
from domain.tasks.events import (
    TaskCancelled,
    TaskCreated,
    TaskPaused,
    TaskProgressed,
    TaskResumed,
    TaskStarted,
)
from tests.domain.recorded import recorded as stream_records

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FOLD = AGGREGATES["tasks"].fold
ITEMS = 80_000
BATCH = 50  # handlers/tasks/run.py: a checkpoint every 50 items (or half second)


def recorded(events: list[Event]) -> list[RecordedEvent]:
    return stream_records(events, "task-t1", T0)


def result(i: int) -> dict[str, Any]:
    return {"index": i, "source": f"f{i}", "result": "deleted"}


def head(items: int) -> list[Event]:
    return [
        TaskCreated(task_id="t1", owner="alice", task_type="delete", items_total=items, at=T0),
        TaskStarted(worker="w", attempt=1, at=T0),
    ]


def checkpoints(items: int, batch: int = BATCH) -> list[Event]:
    return [
        TaskProgressed(
            first=first,
            results=tuple(result(i) for i in range(first, min(first + batch, items))),
            bytes_done=first,
            at=T0 + timedelta(seconds=first),
        )
        for first in range(0, items, batch)
    ]


def counting_states(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []
    real = task_state.replace

    def counted(*args: Any, **kw: Any) -> Any:
        made.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(task_state, "replace", counted)
    return made


def test_folding_1600_checkpoints_of_80000_items_derives_a_few_states_not_one_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = recorded(head(ITEMS) + checkpoints(ITEMS))
    assert len(events) == 2 + ITEMS // BATCH
    made = counting_states(monkeypatch)
    state = FOLD(events)
    assert state is not None and state.items_done == ITEMS and len(state.results) == ITEMS
    assert state.results[ITEMS - 1] == result(ITEMS - 1) and state.results[0] == result(0)
    # TaskStarted derives one state; the run of 1,600 checkpoints one more (was 1,600).
    assert len(made) == 2


def test_one_more_checkpoint_at_80000_results_copies_only_the_last_block() -> None:
    # The actor host and the worker fold each checkpoint into the state they hold: that
    # step copied the whole tuple of results.
    events = recorded(head(ITEMS + 10) + checkpoints(ITEMS + 10))
    state = FOLD(events[:-1])
    assert state is not None and len(state.results) == ITEMS
    after = FOLD(events[-1:], state)
    assert after is not None and len(after.results) == ITEMS + 10
    assert len(state.results) == ITEMS and state.items_done == ITEMS  # left as it was
    old, new = state.results.blocks, after.results.blocks
    assert len(new) == 313  # 80,010 results in blocks of 256
    assert all(a is b for a, b in zip(old[:-1], new[:-1], strict=True))  # full blocks shared
    # The same through `evolve` (one event at a time, as the actor host's decide-append).
    stepped = evolve(state, AGGREGATES["tasks"].decode(events[-1]))  # type: ignore[arg-type]
    assert isinstance(stepped, TaskState) and stepped.results == after.results
    assert all(a is b for a, b in zip(old[:-1], stepped.results.blocks[:-1], strict=True))


def _progress(first: int, n: int, done: int) -> Event:
    return TaskProgressed(
        first=first,
        results=tuple(result(first + i) for i in range(n)),
        bytes_done=done,
        items_total=None if n % 3 else first + n + 5,
        at=T0 + timedelta(seconds=first),
    )


_tail = st.one_of(
    # first past, at or behind the end (a checkpoint again after a takeover; evolve keeps
    # results[:first] either way).
    st.builds(_progress, st.integers(0, 700), st.integers(0, 300), st.integers(0, 9)),
    st.just(TaskPaused(at=T0)),
    st.just(TaskResumed(at=T0)),
    st.just(TaskStarted(worker="w2", attempt=2, at=T0)),
    st.just(TaskCancelled(at=T0)),
)


@settings(max_examples=200, deadline=None)
@given(tail=st.lists(_tail, max_size=14), cut=st.integers(0, 16))
def test_folding_in_one_pass_equals_evolving_event_by_event(tail: list[Event], cut: int) -> None:
    events = head(10) + tail
    by_hand: TaskState | None = None
    for e in events:
        by_hand = evolve(by_hand, e)
    rec = recorded(events)
    folded = FOLD(rec)
    assert folded == by_hand
    assert folded is not None and by_hand is not None
    assert list(folded.results) == list(by_hand.results)
    assert folded.items_done == by_hand.items_done
    # Resumable from any prefix, and the earlier state is left as it was.
    mid = FOLD(rec[:cut])
    before = copy.deepcopy(mid)
    assert FOLD(rec[cut:], mid) == by_hand
    assert mid == before
