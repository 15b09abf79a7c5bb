"""The back-off of what a worker holds for a newer version of Cairn (handlers/held.py):
1 s doubling to 30 s per held thing, a hold logged once per event type and version, the
gauge counting only what is still being retried."""

from __future__ import annotations

import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from domain.errors import DomainError, NewerSchema
from handlers import held
from handlers.held import Holds, upgrade_in_progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gauge() -> float | None:
    return REGISTRY.get_sample_value("cairn_handler_events_held", {"worker": "unit"})


def test_the_back_off_doubles_to_30_s_and_the_log_comes_once_per_type_and_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(held, "log", structlog.get_logger(held.__name__))
    clock = Clock()
    holds = Holds("unit", clock=clock)
    with capture_logs() as logs:
        delays = [holds.hold("a", NewerSchema("FileCreated", 2, 1), "held") for _ in range(7)]
        holds.hold("b", NewerSchema("FileCreated", 2, 1), "held")  # same type and version
        holds.hold("c", NewerSchema("FileCreated", 3, 1), "held")  # another version
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert [(e["event_type"], e["stored_version"]) for e in logs] == [
        ("FileCreated", 2),
        ("FileCreated", 3),
    ]
    assert gauge() == 3
    assert not holds.due("a") and holds.due("x")
    # What the handlers pause the event's partition for (handlers/runner.py).
    clock.now = 12.5
    assert holds.remaining("a") == 17.5 and holds.remaining("x") == 0
    clock.now = 30
    assert holds.remaining("a") == 0
    assert holds.due("a") and sorted(holds.waiting()) == []
    holds.release("b")
    assert gauge() == 2
    # Not tried again within 30 s of coming due (taken over elsewhere, or no longer
    # runnable here): no longer counted.
    clock.now = 61.5
    holds.prune()
    assert gauge() == 0 and len(holds) == 0


def test_only_the_upgrade_refusal_is_held() -> None:
    assert upgrade_in_progress(NewerSchema("FileCreated", 2, 1))
    assert upgrade_in_progress(DomainError.from_dict(NewerSchema("FileCreated", 2, 1).to_dict()))
    assert not upgrade_in_progress(DomainError("file_exists", "x"))
    assert not upgrade_in_progress(OSError("x"))
