"""The task worker's verdict on how a run ended: a failure of the task (FAILED, for good)
or a transient one (the lease given back, the task claimed again)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bus.actors.commandbus import BusUnavailable
from bus.blobs.errors import BlobStoreUnavailable
from domain.errors import DomainError, NewerSchema
from domain.tasks.commands import CompleteTask, FailTask
from handlers.tasks.fileops import replace_files
from handlers.tasks.run import TaskFailure
from handlers.tasks.worker import TaskWorker


class StubRun:
    task_id = "t-1"
    bytes_done = 0

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def command(self, cls: type, **fields: Any) -> Any:
        return (cls, fields)

    async def send(self, command: Any) -> None:
        self.sent.append(command)

    async def flush(self) -> None:
        pass


class StubWorker:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def _dispatch(self, run: Any) -> list[str]:
        raise self.error


@pytest.mark.parametrize(
    "error", [BlobStoreUnavailable("S3 down: check CAIRN_S3_ENDPOINT"), BusUnavailable("x")]
)
async def test_the_blob_store_or_the_bus_down_is_transient_not_a_failed_task(
    error: BaseException,
) -> None:
    # Before, the blob store down mid-extract (or mid-compress) failed the task for good,
    # as internal_error "BlobStoreUnavailable"; the bus down was already transient.
    run = StubRun()
    with pytest.raises(type(error)):
        await TaskWorker._execute(StubWorker(error), run)  # type: ignore[arg-type]
    assert run.sent == []


async def test_a_task_failure_fails_the_task() -> None:
    run = StubRun()
    await TaskWorker._execute(StubWorker(TaskFailure("not_an_archive", "no")), run)  # type: ignore[arg-type]
    assert [c for c, _ in run.sent] == [FailTask]
    assert run.sent[0][1]["error"]["code"] == "not_an_archive"


def upgrade_refusal() -> DomainError:
    """`upgrade_in_progress` as the actor host's refusal arrives (handlers/held.py)."""
    return DomainError.from_dict(NewerSchema("FileCreated", 3, 1).to_dict())


@pytest.mark.parametrize("error", [NewerSchema("TaskProgressed", 3, 1), upgrade_refusal()])
async def test_an_upgrade_in_progress_stops_the_run_without_failing_the_task(
    error: DomainError,
) -> None:
    # Before: FailTask internal_error "NewerSchema" (or "DomainError"), with a traceback,
    # for a stream a newer version of Cairn wrote; the task is now retried (worker._run).
    run = StubRun()
    with pytest.raises(DomainError) as raised:
        await TaskWorker._execute(StubWorker(error), run)  # type: ignore[arg-type]
    assert raised.value.code == "upgrade_in_progress"
    assert run.sent == []


class RefusedCompletion(StubRun):
    async def send(self, command: Any) -> None:
        if command[0] is CompleteTask:
            raise upgrade_refusal()
        await super().send(command)


class FinishingWorker:
    def __init__(self) -> None:
        self.discarded: list[str] = []

    async def _dispatch(self, run: Any) -> list[str]:
        return ["f-1"]

    async def _discard(self, run: Any, result_ids: list[str]) -> None:
        self.discarded += result_ids


async def test_a_completion_refused_for_an_upgrade_keeps_the_results() -> None:
    # Before: taken for a task cancelled as it finished, its result files deleted.
    worker = FinishingWorker()
    with pytest.raises(DomainError):
        await TaskWorker._execute(worker, RefusedCompletion())  # type: ignore[arg-type]
    assert worker.discarded == []


class RefusingRun:
    """A run whose commands the actor host refuses with `error`."""

    task_id = "t-1"

    def __init__(self, error: DomainError) -> None:
        self.error = error
        self.state = SimpleNamespace(owner="ann")

    async def send(self, command: Any) -> None:
        raise self.error


async def test_a_replaced_file_refused_for_an_upgrade_is_not_taken_for_gone() -> None:
    # A file gone already is replaced all the same; one whose stream a newer version
    # wrote is not deleted yet, so the task waits (before: taken for gone, left behind).
    gone = DomainError.from_dict({"kind": "not_found", "code": "file_not_found", "message": "x"})
    assert await replace_files(RefusingRun(gone), 0, ["f-1"]) == ["f-1"]  # type: ignore[arg-type]
    with pytest.raises(DomainError) as raised:
        await replace_files(RefusingRun(upgrade_refusal()), 0, ["f-1"])  # type: ignore[arg-type]
    assert raised.value.code == "upgrade_in_progress"
