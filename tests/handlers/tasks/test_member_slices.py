"""A compress records its members' results in slices small enough for one bus message,
however long their names."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from itertools import pairwise

import orjson

from bus.kafka.clients import MAX_MESSAGE_BYTES
from domain.events import NewEvent
from domain.tasks.events import TaskProgressed
from handlers.tasks.compress import MEMBER_BATCH, member_slices, unique_names


def message_bytes(names: list[str], first: int, stop: int) -> int:
    """The TaskProgressed of that slice as the relay would publish it (with room for the
    envelope, as tests/bus/config/test_settings.py allows)."""
    event = TaskProgressed(
        first=first,
        results=tuple(
            {"index": i, "source": str(uuid.uuid4()), "result": names[i]}
            for i in range(first, stop)
        ),
        bytes_done=10**15,
        at=datetime.now(UTC),
    )
    return len(orjson.dumps({"envelope": "x" * 1024, "data": NewEvent.of(event).data}))


def test_results_of_members_with_the_longest_names_fit_one_message_each() -> None:
    # 1,024 characters of 4 bytes each (a name's limit), repeated: unique_names adds
    # " (n)". 1,000 of them were one slice, a 4.2 MB message: past the margin below the
    # broker's limit that the task's other messages keep (over it with the envelope).
    names = unique_names(["\U0001f600" * 1020 + ".txt"] * 2500)
    slices = list(member_slices(names))
    assert slices[0][0] == 0 and slices[-1][1] == len(names)
    assert all(a[1] == b[0] for a, b in pairwise(slices))  # contiguous
    for first, stop in slices:
        assert message_bytes(names, first, stop) < MAX_MESSAGE_BYTES - 512 * 1024
    assert message_bytes(names, 0, MEMBER_BATCH) > MAX_MESSAGE_BYTES - 512 * 1024


def test_short_names_go_a_thousand_per_slice() -> None:
    names = [f"f{i:05d}.bin" for i in range(2500)]
    assert list(member_slices(names)) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert list(member_slices([])) == []
    assert list(member_slices(["a"])) == [(0, 1)]
