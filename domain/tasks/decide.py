"""`decide` for tasks: one small function per command, picked from a table.

The worker's commands (start, progress, complete, fail) are idempotent by state as well as
by command id: a checkpoint for items already recorded appends nothing, so a worker that
took a crashed one's task over can send the same checkpoint again harmlessly."""

from __future__ import annotations

from domain.errors import Conflict, InvalidInput
from domain.kernel import Command, Event, Step, by_command, owned
from domain.tasks.commands import (
    CancelTask,
    CompleteTask,
    CreateTask,
    FailTask,
    PauseTask,
    RecordProgress,
    ResumeTask,
    StartTask,
)
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
from domain.tasks.state import TYPES, TaskState, TaskStatus


def _finished(state: TaskState) -> Conflict:
    return Conflict(
        "task_finished",
        f"the task is {state.status.value.lower()}",
        {"id": state.id, "status": state.status.value},
    )


def _create(state: TaskState | None, cmd: CreateTask) -> list[Event]:
    if state is not None:
        same = (state.owner, state.task_type, state.params) == (
            cmd.owner,
            cmd.task_type,
            dict(cmd.params),
        )
        if same:
            return []  # the same create again (a retried request)
        raise Conflict("task_exists", "a task with this id exists", {"id": cmd.aggregate_id})
    if cmd.task_type not in TYPES:
        raise InvalidInput("invalid_task_type", f"unknown task type {cmd.task_type!r}")
    if not 0 <= cmd.priority <= 100:
        raise InvalidInput("invalid_priority", "priority is 0-100", {"field": "priority"})
    if cmd.items_total < 0 or cmd.bytes_total < 0:
        raise InvalidInput("invalid_task", "totals cannot be negative")
    return [
        TaskCreated(
            task_id=cmd.aggregate_id,
            owner=cmd.owner,
            task_type=cmd.task_type,
            params=dict(cmd.params),
            priority=cmd.priority,
            items_total=cmd.items_total,
            bytes_total=cmd.bytes_total,
            at=cmd.at,
        )
    ]


def _start(state: TaskState | None, cmd: StartTask) -> list[Event]:
    st = owned(state, cmd)
    if st.finished:
        raise _finished(st)
    if st.status == TaskStatus.PAUSED:
        raise Conflict("task_paused", "the task is paused", {"id": st.id})
    if st.status == TaskStatus.RUNNING and st.worker == cmd.worker:
        return []
    return [TaskStarted(worker=cmd.worker, attempt=st.attempts + 1, at=cmd.at)]


def _progress(state: TaskState | None, cmd: RecordProgress) -> list[Event]:
    st = owned(state, cmd)
    # Cancelled: the items done before the worker saw it are still recorded (truthfully).
    if st.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
        raise _finished(st)
    if cmd.first < 0 or cmd.first > st.items_done:
        raise InvalidInput(
            "invalid_checkpoint",
            "a checkpoint must continue from the last one",
            {"items_done": st.items_done, "first": cmd.first},
        )
    if (cmd.items_total is not None and cmd.items_total < 0) or (
        cmd.bytes_total is not None and cmd.bytes_total < 0
    ):
        raise InvalidInput("invalid_checkpoint", "totals cannot be negative")
    new = cmd.results[st.items_done - cmd.first :]
    # Totals recorded only when they change (a resumed run learns the same ones again).
    items_total = cmd.items_total if cmd.items_total != st.items_total else None
    bytes_total = cmd.bytes_total if cmd.bytes_total != st.bytes_total else None
    if not new and cmd.bytes_done <= st.bytes_done and items_total is None and bytes_total is None:
        return []  # recorded already (a worker that took over sends it again)
    return [
        TaskProgressed(
            first=st.items_done,
            results=tuple(dict(r) for r in new),
            bytes_done=max(cmd.bytes_done, st.bytes_done),
            items_total=items_total,
            bytes_total=bytes_total,
            at=cmd.at,
        )
    ]


def _complete(state: TaskState | None, cmd: CompleteTask) -> list[Event]:
    st = owned(state, cmd)
    if st.status == TaskStatus.COMPLETED:
        return []
    if st.finished:
        raise _finished(st)
    # From PAUSED too: a pause that arrives after the last item changes nothing.
    return [
        TaskCompleted(
            result_file_ids=tuple(cmd.result_file_ids),
            bytes_done=cmd.bytes_done if cmd.bytes_done is not None else st.bytes_done,
            at=cmd.at,
        )
    ]


def _fail(state: TaskState | None, cmd: FailTask) -> list[Event]:
    st = owned(state, cmd)
    if st.status == TaskStatus.FAILED:
        return []
    if st.finished:
        raise _finished(st)
    return [TaskFailed(error=dict(cmd.error), at=cmd.at)]


def _pause(state: TaskState | None, cmd: PauseTask) -> list[Event]:
    st = owned(state, cmd)
    if st.finished:
        raise _finished(st)
    if st.status == TaskStatus.PAUSED:
        return []
    return [TaskPaused(at=cmd.at)]


def _resume(state: TaskState | None, cmd: ResumeTask) -> list[Event]:
    st = owned(state, cmd)
    if st.finished:
        raise _finished(st)
    if st.status != TaskStatus.PAUSED:
        return []
    return [TaskResumed(at=cmd.at)]


def _cancel(state: TaskState | None, cmd: CancelTask) -> list[Event]:
    st = owned(state, cmd)
    if st.status == TaskStatus.CANCELLED:
        return []
    if st.finished:
        raise _finished(st)
    return [TaskCancelled(at=cmd.at)]


_DECIDERS: dict[type[Command], Step[TaskState]] = {
    CreateTask: _create,
    StartTask: _start,
    RecordProgress: _progress,
    CompleteTask: _complete,
    FailTask: _fail,
    PauseTask: _pause,
    ResumeTask: _resume,
    CancelTask: _cancel,
}

decide = by_command("tasks", _DECIDERS)
