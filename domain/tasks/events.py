"""The task aggregate's events: one class per event type, at its current schema version."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from domain.kernel import Event, Stamped


@dataclass(frozen=True, kw_only=True)
class TaskCreated(Event):
    type: ClassVar[str] = "TaskCreated"

    task_id: str
    owner: str
    task_type: str
    params: dict[str, Any] = field(default_factory=dict)
    priority: int = 50
    items_total: int = 0
    bytes_total: int = 0
    at: datetime


@dataclass(frozen=True, kw_only=True)
class TaskStarted(Event):
    type: ClassVar[str] = "TaskStarted"

    worker: str
    attempt: int = 1
    at: datetime


@dataclass(frozen=True, kw_only=True)
class TaskProgressed(Event):
    """Items [first, first + len(results)) are done; each result is
    {"index", "source"?, "result"?, "error"?} (which file became which, or why not).
    `items_total` / `bytes_total`, when not None, replace the totals the task was created
    with (an extract's, known once its archive is listed)."""

    type: ClassVar[str] = "TaskProgressed"

    first: int
    results: tuple[dict[str, Any], ...] = ()
    bytes_done: int = 0
    items_total: int | None = None
    bytes_total: int | None = None
    at: datetime


@dataclass(frozen=True, kw_only=True)
class TaskCompleted(Event):
    type: ClassVar[str] = "TaskCompleted"

    result_file_ids: tuple[str, ...] = ()
    bytes_done: int = 0
    at: datetime


@dataclass(frozen=True, kw_only=True)
class TaskFailed(Event):
    type: ClassVar[str] = "TaskFailed"

    error: dict[str, Any] = field(default_factory=dict)
    at: datetime


@dataclass(frozen=True, kw_only=True)
class TaskPaused(Stamped):
    type: ClassVar[str] = "TaskPaused"


@dataclass(frozen=True, kw_only=True)
class TaskResumed(Stamped):
    type: ClassVar[str] = "TaskResumed"


@dataclass(frozen=True, kw_only=True)
class TaskCancelled(Stamped):
    type: ClassVar[str] = "TaskCancelled"


EVENTS = (
    TaskCreated,
    TaskStarted,
    TaskProgressed,
    TaskCompleted,
    TaskFailed,
    TaskPaused,
    TaskResumed,
    TaskCancelled,
)
