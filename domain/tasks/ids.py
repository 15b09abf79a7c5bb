"""Deterministic ids for what a task does, so nothing is applied twice.

Every file a task creates, and every command it sends for an item, has an id derived from
(task id, item index): a worker that takes a crashed one's task over, or resumes a paused
one, sends the very same commands again, which the actors recognise as already applied.
"""

from __future__ import annotations

import uuid

_FILES = uuid.UUID("5d0c7a0e-3f7b-4d8e-9a61-7b9c1f2e4a10")


def item_file_id(task_id: str, index: int, part: int = 0) -> str:
    """The file item `index` (member `part`) of task `task_id` becomes."""
    return str(uuid.uuid5(_FILES, f"{task_id}/{index}/{part}"))


def result_file_id(task_id: str) -> str:
    """The one result file of a compress task."""
    return str(uuid.uuid5(_FILES, f"{task_id}/result"))


def item_command_id(task_id: str, index: int, step: str) -> str:
    return f"task-{task_id}-{index}-{step}"
