"""The claiming workers' wake-ups (bus/store/pickup.py) against the real embedded Postgres.

The poll interval is an hour where a wake-up is under test, so a `wait` that returns can
only have been woken; the outer timeouts only keep a broken test from hanging.
"""

from __future__ import annotations

import asyncio

import asyncpg

from bus.store.eventstore import NOTIFY_CHANNEL
from bus.store.pickup import CHASE, Pickup

HOUR = 3600.0


async def _connected(pickup: Pickup, stop: asyncio.Event) -> None:
    assert pickup.listener is not None
    await asyncio.wait_for(pickup.listener.connected.wait(), 30)
    # (Re)connecting wakes the worker (what was announced meanwhile is lost): take that.
    await asyncio.wait_for(pickup.wait(stop), 30)
    await asyncio.wait_for(_drain_chase(pickup, stop), 30)


async def _drain_chase(pickup: Pickup, stop: asyncio.Event) -> None:
    for _ in CHASE:
        await pickup.wait(stop)


async def test_an_append_notification_wakes_a_waiting_worker(
    db_url: str, pool: asyncpg.Pool
) -> None:
    stop = asyncio.Event()
    pickup = Pickup(db_url, poll_every=HOUR)
    pickup.start()
    try:
        await _connected(pickup, stop)
        waiting = asyncio.create_task(pickup.wait(stop))
        await asyncio.sleep(0)
        assert not waiting.done()
        await pool.execute("SELECT pg_notify($1, '1')", NOTIFY_CHANNEL)
        await asyncio.wait_for(waiting, 30)
        # The read model lags the append: the worker is told to look again, several times.
        await asyncio.wait_for(_drain_chase(pickup, stop), 30)
    finally:
        await pickup.stop()


async def test_after_the_chase_the_worker_sleeps_until_the_next_notification(
    db_url: str, pool: asyncpg.Pool
) -> None:
    stop = asyncio.Event()
    pickup = Pickup(db_url, poll_every=HOUR)
    pickup.start()
    try:
        await _connected(pickup, stop)
        waiting = asyncio.create_task(pickup.wait(stop))
        # Several chase steps' worth of time: nothing announced, so still waiting.
        await asyncio.sleep(sum(CHASE[:2]))
        assert not waiting.done()
        stop.set()
        await asyncio.wait_for(waiting, 30)
    finally:
        await pickup.stop()


async def test_a_nudge_wakes_the_worker(db_url: str) -> None:
    stop = asyncio.Event()
    pickup = Pickup(db_url, poll_every=HOUR)
    pickup.start()
    try:
        await _connected(pickup, stop)
        waiting = asyncio.create_task(pickup.wait(stop))
        await asyncio.sleep(0)
        pickup.nudge()
        await asyncio.wait_for(waiting, 30)
    finally:
        await pickup.stop()


async def test_without_notifications_the_worker_still_polls() -> None:
    # An unreachable database: the listener never connects, the poll still comes round.
    stop = asyncio.Event()
    pickup = Pickup("postgresql://nobody@127.0.0.1:1/none", poll_every=0.05)
    pickup.start()
    try:
        for _ in range(3):
            await asyncio.wait_for(pickup.wait(stop), 30)
        assert pickup.listener is not None and not pickup.listener.connected.is_set()
    finally:
        await pickup.stop()
    # No database configured at all: polling only.
    plain = Pickup("", poll_every=0.05)
    plain.start()
    await asyncio.wait_for(plain.wait(stop), 30)
    await plain.stop()
