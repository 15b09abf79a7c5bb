"""The task aggregate's state, and `evolve`: how each event changes it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.kernel import Event
from domain.sequences import BlockSeq, fold_in_runs
from domain.tasks.events import (
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskPaused,
    TaskProgressed,
    TaskResumed,
    TaskStarted,
)


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINISHED = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
RUNNABLE = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})
TYPES = ("copy", "move", "delete", "compress", "extract")


@dataclass(frozen=True)
class TaskState:
    id: str
    owner: str
    task_type: str
    params: dict[str, Any]
    priority: int
    status: TaskStatus
    items_total: int
    bytes_total: int
    created_at: datetime
    updated_at: datetime
    items_done: int = 0
    bytes_done: int = 0
    # Blocks shared from one checkpoint's state to the next (domain/sequences.py): a tuple
    # copied per checkpoint made folding a task of 80,000 items quadratic.
    results: BlockSeq[dict[str, Any]] = field(default_factory=BlockSeq)
    result_file_ids: tuple[str, ...] = ()
    error: dict[str, Any] | None = None
    worker: str | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def items_failed(self) -> int:
        return sum(1 for r in self.results if r.get("error"))

    @property
    def percent(self) -> float:
        """0-100: by bytes when the task knows its bytes, else by items."""
        if self.status == TaskStatus.COMPLETED:
            return 100.0
        if self.bytes_total > 0:
            done, total = self.bytes_done, self.bytes_total
        else:
            done, total = self.items_done, self.items_total
        if total <= 0:
            return 0.0
        return round(min(100.0, 100.0 * done / total), 2)


def evolve(state: TaskState | None, event: Event) -> TaskState | None:
    """Pure and total: apply one (upcast, decoded) event."""
    if isinstance(event, TaskCreated):
        return TaskState(
            id=event.task_id,
            owner=event.owner,
            task_type=event.task_type,
            params=dict(event.params),
            priority=event.priority,
            status=TaskStatus.PENDING,
            items_total=event.items_total,
            bytes_total=event.bytes_total,
            created_at=event.at,
            updated_at=event.at,
        )
    if state is None:
        return None
    if isinstance(event, TaskStarted):
        return replace(
            state,
            status=TaskStatus.RUNNING,
            worker=event.worker,
            attempts=event.attempt,
            started_at=state.started_at or event.at,
            updated_at=event.at,
        )
    if isinstance(event, TaskProgressed):
        return _progressed(state, (event,))
    if isinstance(event, TaskCompleted):
        return replace(
            state,
            status=TaskStatus.COMPLETED,
            result_file_ids=tuple(event.result_file_ids),
            bytes_done=max(state.bytes_done, event.bytes_done),
            items_done=max(state.items_done, state.items_total),
            finished_at=event.at,
            updated_at=event.at,
        )
    if isinstance(event, TaskFailed):
        return replace(
            state,
            status=TaskStatus.FAILED,
            error=dict(event.error),
            finished_at=event.at,
            updated_at=event.at,
        )
    if isinstance(event, TaskPaused):
        return replace(state, status=TaskStatus.PAUSED, updated_at=event.at)
    if isinstance(event, TaskResumed):
        # Back in the queue; a worker claims it and continues from the checkpoint.
        return replace(state, status=TaskStatus.PENDING, worker=None, updated_at=event.at)
    if isinstance(event, TaskCancelled):
        return replace(
            state, status=TaskStatus.CANCELLED, finished_at=event.at, updated_at=event.at
        )
    return state


def fold(state: TaskState | None, events: Iterable[Event]) -> TaskState | None:
    """`evolve` over `events`, in time linear in them: a run of checkpoints is gathered and
    put into the state once, at the run's end, instead of one state per checkpoint (a task
    of 80,000 items has 1,600 of them or more; `fold_in_runs`). The state it began from is
    left as it was."""
    return fold_in_runs(state, events, evolve, _Run)


class _Run:
    """A run of checkpoints (TaskProgressed), settled by `_progressed` at its end."""

    def __init__(self) -> None:
        self.events: list[TaskProgressed] = []

    def add(self, state: TaskState, event: Event) -> bool:
        if not isinstance(event, TaskProgressed):
            return False
        self.events.append(event)
        return True

    def settle(self, state: TaskState | None) -> TaskState | None:
        if not self.events or state is None:
            return state
        return _progressed(state, self.events)


def _progressed(state: TaskState, events: Iterable[TaskProgressed]) -> TaskState:
    """Each checkpoint keeps the results before its `first` and adds its own."""
    results = state.results
    extra: list[dict[str, Any]] = []  # after `results`, owned by this call
    items_done, bytes_done = state.items_done, state.bytes_done
    items_total, bytes_total = state.items_total, state.bytes_total
    at = state.updated_at
    for e in events:
        if e.first < len(results) + len(extra):  # recorded again from an earlier item
            if e.first >= len(results):
                del extra[e.first - len(results) :]
            else:
                results, extra = results.head(e.first), []
        extra.extend(e.results)
        items_done = e.first + len(e.results)
        bytes_done = max(bytes_done, e.bytes_done)
        items_total = items_total if e.items_total is None else e.items_total
        bytes_total = bytes_total if e.bytes_total is None else e.bytes_total
        at = e.at
    return replace(
        state,
        results=results.extended(extra),
        items_done=items_done,
        bytes_done=bytes_done,
        items_total=items_total,
        bytes_total=bytes_total,
        updated_at=at,
    )
