"""Pure unit tests of the task aggregate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.commands import command_from_dict, command_to_dict
from domain.errors import Conflict, InvalidInput, NotFound
from domain.kernel import Command, Event
from domain.registry import AGGREGATES
from domain.tasks import TaskState, TaskStatus, decide, evolve
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
from domain.tasks.ids import item_command_id, item_file_id, result_file_id

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TID = "7a0c2a52-52ad-4bd4-8d3c-6d8d7e0b5f01"


def cmd(cls: type[Command], n: int = 0, caller: str = "alice", **kw: Any) -> Any:
    return cls(aggregate_id=TID, caller=caller, at=T0 + timedelta(seconds=n), **kw)


def create(**kw: Any) -> CreateTask:
    base: dict[str, Any] = {
        "owner": "alice",
        "task_type": "copy",
        "params": {"files": ["a", "b", "c"], "to": {"bucket": "x", "prefix": ""}},
        "priority": 70,
        "items_total": 3,
    }
    return cmd(CreateTask, **{**base, **kw})  # type: ignore[no-any-return]


def apply(state: TaskState | None, *commands: Command) -> TaskState | None:
    for c in commands:
        for e in decide(state, c):
            state = evolve(state, e)
    return state


def events(state: TaskState | None, c: Command) -> list[Event]:
    return decide(state, c)


def test_create_start_progress_complete_with_percent_and_results() -> None:
    st = apply(None, create())
    assert st is not None and st.status == TaskStatus.PENDING and st.priority == 70
    st = apply(st, cmd(StartTask, 1, worker="w1"))
    assert st is not None and st.status == TaskStatus.RUNNING and st.attempts == 1
    st = apply(
        st, cmd(RecordProgress, 2, first=0, results=[{"index": 0}, {"index": 1}], bytes_done=0)
    )
    assert st is not None and st.items_done == 2 and st.percent == pytest.approx(66.67)
    st = apply(
        st,
        cmd(
            RecordProgress, 3, first=2, results=[{"index": 2, "error": {"code": "x"}}], bytes_done=0
        ),
    )
    assert st is not None and st.items_done == 3 and st.items_failed == 1
    st = apply(st, cmd(CompleteTask, 4, result_file_ids=["r"]))
    assert st is not None and st.status == TaskStatus.COMPLETED and st.percent == 100.0
    assert st.result_file_ids == ("r",) and [r["index"] for r in st.results] == [0, 1, 2]


def test_checkpoints_are_idempotent_and_overlapping_ones_add_only_the_new_items() -> None:
    st = apply(None, create(), cmd(StartTask, 1, worker="w1"))
    p = cmd(RecordProgress, 2, first=0, results=[{"index": 0}, {"index": 1}], bytes_done=0)
    st = apply(st, p)
    assert events(st, p) == []  # the same checkpoint again: nothing
    overlap = cmd(RecordProgress, 3, first=1, results=[{"index": 1}, {"index": 2}], bytes_done=0)
    st = apply(st, overlap)
    assert st is not None and [r["index"] for r in st.results] == [0, 1, 2]
    with pytest.raises(InvalidInput):  # a gap: never
        decide(st, cmd(RecordProgress, 4, first=5, results=[{"index": 5}], bytes_done=0))


def test_a_checkpoint_records_totals_learnt_by_the_run_once() -> None:
    """An extract is created knowing only its archive's size; the run records the members'
    count and bytes once listed, and the same totals again (a resumed run) add nothing."""
    st = apply(None, create(task_type="extract", items_total=0, bytes_total=500))
    st = apply(st, cmd(StartTask, 1, worker="w1"))
    sized = cmd(RecordProgress, 2, first=0, results=[], bytes_done=0, items_total=2, bytes_total=9)
    st = apply(st, sized)
    assert st is not None and (st.items_total, st.bytes_total, st.percent) == (2, 9, 0.0)
    assert events(st, sized) == []
    st = apply(st, cmd(RecordProgress, 3, first=0, results=[{"index": 0}], bytes_done=4))
    assert st is not None and (st.items_total, st.bytes_total, st.bytes_done) == (2, 9, 4)
    with pytest.raises(InvalidInput):
        decide(st, cmd(RecordProgress, 4, first=1, results=[], bytes_done=4, items_total=-1))


def test_a_takeover_starts_again_and_counts_the_attempt() -> None:
    st = apply(None, create(), cmd(StartTask, 1, worker="w1"))
    assert events(st, cmd(StartTask, 2, worker="w1")) == []
    st = apply(st, cmd(StartTask, 3, worker="w2"))
    assert st is not None and st.worker == "w2" and st.attempts == 2


def test_pause_resume_cancel_and_409_once_finished() -> None:
    st = apply(None, create(), cmd(StartTask, 1, worker="w1"), cmd(PauseTask, 2))
    assert st is not None and st.status == TaskStatus.PAUSED
    with pytest.raises(Conflict):  # a paused task is not started
        decide(st, cmd(StartTask, 3, worker="w2"))
    st = apply(st, cmd(ResumeTask, 3))
    assert st is not None and st.status == TaskStatus.PENDING
    st = apply(st, cmd(CancelTask, 4))
    assert st is not None and st.status == TaskStatus.CANCELLED and st.finished_at is not None
    assert events(st, cmd(CancelTask, 5)) == []
    for c in (PauseTask, ResumeTask):
        with pytest.raises(Conflict) as e:
            decide(st, cmd(c, 6))
        assert e.value.code == "task_finished"
    with pytest.raises(Conflict):
        decide(st, cmd(CompleteTask, 7))
    done = apply(None, create(), cmd(StartTask, 1, worker="w"), cmd(CompleteTask, 2))
    with pytest.raises(Conflict):
        decide(done, cmd(PauseTask, 3))
    failed = apply(None, create(), cmd(FailTask, 1, error={"code": "quota_exceeded"}))
    assert failed is not None and failed.status == TaskStatus.FAILED
    assert failed.error == {"code": "quota_exceeded"}


def test_another_users_task_is_not_found_and_bad_creates_are_refused() -> None:
    st = apply(None, create())
    with pytest.raises(NotFound):
        decide(st, cmd(PauseTask, 1, caller="bob"))
    assert decide(st, cmd(PauseTask, 1, caller="root", admin=True))
    with pytest.raises(InvalidInput):
        decide(None, create(task_type="shred"))
    with pytest.raises(InvalidInput):
        decide(None, create(priority=101))
    assert decide(st, create()) == []  # the same create again
    with pytest.raises(Conflict):
        decide(st, create(task_type="delete"))


def test_commands_round_trip_their_wire_form_and_events_their_json() -> None:
    for c in (
        create(),
        cmd(StartTask, worker="w"),
        cmd(RecordProgress, first=0, results=[{"index": 0}], bytes_done=5),
        cmd(CompleteTask, result_file_ids=["f"]),
        cmd(FailTask, error={"code": "x"}),
        cmd(PauseTask),
        cmd(ResumeTask),
        cmd(CancelTask),
    ):
        assert command_from_dict(command_to_dict(c)) == c
    spec = AGGREGATES["tasks"]
    st = None
    for c in (create(), cmd(StartTask, 1, worker="w"), cmd(CompleteTask, 2, result_file_ids=["f"])):
        for e in decide(st, c):
            again = spec.event_types[e.type].decode(e.data)
            assert again == e
            st = evolve(st, again)
    assert st is not None and st.status == TaskStatus.COMPLETED


def test_ids_are_deterministic_per_task_and_item() -> None:
    assert item_file_id(TID, 3) == item_file_id(TID, 3) != item_file_id(TID, 4)
    assert item_file_id(TID, 3, 1) != item_file_id(TID, 3, 0)
    assert result_file_id(TID) == result_file_id(TID) != result_file_id("other")
    assert item_command_id(TID, 1, "copy") != item_command_id(TID, 1, "delete")
