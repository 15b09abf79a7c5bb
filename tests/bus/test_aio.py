"""map_bounded: every item once, results in the items' order, never more than the limit
running at once."""

from __future__ import annotations

import asyncio

from bus.aio import map_bounded


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
