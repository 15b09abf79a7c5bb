"""map_bounded: every item once, results in the items' order, never more than the limit
running at once. wait_event: set, timed out, and cancelled however close to the event."""

from __future__ import annotations

import asyncio

import pytest

from bus.aio import GroupFlush, map_bounded, wait_event


async def test_map_bounded_keeps_order_and_the_limit() -> None:
    running = peak = 0
    release, three_in = asyncio.Event(), asyncio.Event()

    async def work(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            three_in.set()
        await release.wait()
        running -= 1
        return n * n

    mapping = asyncio.create_task(map_bounded(work, range(20), 3))
    await three_in.wait()  # the first three started; the rest wait for the gate
    assert peak == 3
    release.set()
    assert await mapping == [n * n for n in range(20)]
    assert peak == 3


async def test_wait_event_says_whether_the_event_was_set() -> None:
    ev = asyncio.Event()
    assert await wait_event(ev, 0.01) is False
    waiting = asyncio.create_task(wait_event(ev, 5))
    await asyncio.sleep(0)
    ev.set()
    assert await waiting is True
    assert await wait_event(ev, 0) is True  # already set: no wait at all


async def test_a_cancellation_right_after_the_event_is_set_is_not_swallowed() -> None:
    # The event is set, then the waiting task is cancelled `steps` loop steps later, before
    # it has resumed. asyncio.wait_for (Python 3.11) returned normally at 1 and 2 steps: the
    # cancellation was lost, and a loop stopped by cancel() never stopped.
    cancelled_before_resuming = []
    for steps in range(6):
        ev = asyncio.Event()
        waiting = asyncio.create_task(wait_event(ev, 5))
        await asyncio.sleep(0)  # it waits
        ev.set()
        for _ in range(steps):
            await asyncio.sleep(0)
        if waiting.done():
            assert waiting.result() is True  # it resumed first: nothing left to cancel
            continue
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        cancelled_before_resuming.append(steps)
    assert cancelled_before_resuming  # at least one cancellation came before it resumed


async def test_group_flush_batches_what_queues_behind_a_flush() -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    batches: list[list[int]] = []

    async def flush(batch: list[int]) -> int:
        batches.append(batch)
        entered.set()
        await gate.wait()
        if 5 in batch:
            raise ValueError("five")
        return len(batch)

    group: GroupFlush[int, int] = GroupFlush(flush, max_items=3)
    assert group.idle
    first = group.submit(0)
    await entered.wait()  # the first item's flush holds at the gate
    rest = [group.submit(i) for i in range(1, 7)]
    assert not group.idle
    gate.set()
    await group.drain()
    assert group.idle
    assert batches == [[0], [1, 2, 3], [4, 5, 6]]
    assert first.result() == 1
    assert [f.result() for f in rest[:3]] == [3, 3, 3]
    for f in rest[3:]:
        with pytest.raises(ValueError, match="five"):
            f.result()


async def test_group_flush_abandons_what_is_left_when_its_task_is_cancelled() -> None:
    started = asyncio.Event()

    async def flush(batch: list[int]) -> None:
        started.set()
        await asyncio.Event().wait()  # never done

    group: GroupFlush[int, None] = GroupFlush(flush, abandon=lambda f: f.set_result(None))
    held, queued = group.submit(1), group.submit(2)
    await started.wait()
    assert group._flushing is not None
    group._flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await group.drain()
    assert held.result() is None and queued.result() is None
    assert group._flushing is None
