"""The task aggregate: a background operation on files (copy, move, delete, compress,
extract) with its status, progress checkpoints, per-item results and result files.

The API creates, pauses, resumes and cancels tasks; task workers (handlers/tasks/) claim
them, run them item by item and record checkpoints here, so a task taken over after a
crash continues where the last checkpoint left it. commands.py, events.py, state.py and
decide.py hold its parts; `AGGREGATE` ties them together for domain.registry.
"""

from __future__ import annotations

from domain.kernel import AggregateSpec
from domain.tasks.commands import COMMANDS, TaskCommand
from domain.tasks.decide import decide
from domain.tasks.events import EVENTS
from domain.tasks.state import FINISHED, RUNNABLE, TYPES, TaskState, TaskStatus, evolve, fold

AGGREGATE: AggregateSpec[TaskState] = AggregateSpec(
    name=TaskCommand.aggregate,
    stream_prefix=TaskCommand.stream_prefix,
    commands=COMMANDS,
    events=EVENTS,
    state=TaskState,
    decide_typed=decide,
    evolve=evolve,
    evolve_many=fold,
)

__all__ = [
    "AGGREGATE",
    "FINISHED",
    "RUNNABLE",
    "TYPES",
    "TaskState",
    "TaskStatus",
    "decide",
    "evolve",
]
