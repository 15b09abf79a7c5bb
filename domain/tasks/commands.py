"""The task aggregate's commands, as they travel on the bus (see domain.commands).

The API creates, pauses, resumes and cancels; a task worker starts it, records progress
(one checkpoint per batch of items), and finishes it (completed or failed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from domain.kernel import JSON, Command


@dataclass(frozen=True, kw_only=True)
class TaskCommand(Command):
    aggregate: ClassVar[str] = "tasks"
    stream_prefix: ClassVar[str] = "task"


@dataclass(frozen=True, kw_only=True)
class CreateTask(TaskCommand):
    type: ClassVar[str] = "CreateTask"

    owner: str
    task_type: str
    # Validated by the API (api/routes/tasks.py); the worker reads them back as given.
    params: JSON = field(default_factory=dict)
    priority: int = 50
    items_total: int = 0
    bytes_total: int = 0


@dataclass(frozen=True, kw_only=True)
class StartTask(TaskCommand):
    """A worker holds the task's lease and runs it (again, after a takeover or resume)."""

    type: ClassVar[str] = "StartTask"

    worker: str


@dataclass(frozen=True, kw_only=True)
class RecordProgress(TaskCommand):
    """A checkpoint: the results of items [first, first + len(results)) and bytes so far;
    `items_total` / `bytes_total` when the run has learnt them (an extract, once its archive
    is listed: the task was created knowing only the archive's size)."""

    type: ClassVar[str] = "RecordProgress"

    first: int
    results: list[JSON]
    bytes_done: int
    items_total: int | None = None
    bytes_total: int | None = None


@dataclass(frozen=True, kw_only=True)
class CompleteTask(TaskCommand):
    type: ClassVar[str] = "CompleteTask"

    result_file_ids: list[str] = field(default_factory=list)
    bytes_done: int | None = None


@dataclass(frozen=True, kw_only=True)
class FailTask(TaskCommand):
    type: ClassVar[str] = "FailTask"

    error: JSON


@dataclass(frozen=True, kw_only=True)
class PauseTask(TaskCommand):
    type: ClassVar[str] = "PauseTask"


@dataclass(frozen=True, kw_only=True)
class ResumeTask(TaskCommand):
    type: ClassVar[str] = "ResumeTask"


@dataclass(frozen=True, kw_only=True)
class CancelTask(TaskCommand):
    type: ClassVar[str] = "CancelTask"


COMMANDS = (
    CreateTask,
    StartTask,
    RecordProgress,
    CompleteTask,
    FailTask,
    PauseTask,
    ResumeTask,
    CancelTask,
)
