"""The claiming workers' wake-ups (bus/store/pickup.py) against the real embedded Postgres.

The poll interval is an hour where a wake-up is under test, so a `wait` that returns can
only have been woken; the outer timeouts only keep a broken test from hanging.
"""

from __future__ import annotations

import asyncio

import asyncpg

from bus.store.eventstore import NOTIFY_CHANNEL
from bus.store.pickup import FETCHES_CHANGED, TASKS_CHANGED, Pickup

HOUR = 3600.0


async def _connected(pickup: Pickup, stop: asyncio.Event) -> None:
    assert pickup.listener is not None
    await asyncio.wait_for(pickup.listener.connected.wait(), 30)
    # (Re)connecting wakes the worker (what was announced meanwhile is lost): take that.
    await asyncio.wait_for(pickup.wait(stop), 30)


async def test_a_notification_on_its_channel_wakes_a_waiting_worker_and_no_other(
    db_url: str, pool: asyncpg.Pool
) -> None:
    stop = asyncio.Event()
    pickup = Pickup(db_url, poll_every=HOUR, channel=FETCHES_CHANGED)
    pickup.start()
    try:
        await _connected(pickup, stop)
        waiting = asyncio.create_task(pickup.wait(stop))
        # Appends (the event store's channel, a few hundred a second while files stream in)
        # and the other table's changes leave it waiting. (Nothing can be awaited to show
        # that something did not happen: the sleep is how long it is given to.)
        for _ in range(20):
            await pool.execute(
                "SELECT pg_notify($1, '1'), pg_notify($2, '')", NOTIFY_CHANNEL, TASKS_CHANGED
            )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await pool.execute("SELECT pg_notify($1, '')", FETCHES_CHANGED)
        await asyncio.wait_for(waiting, 30)
        # Woken once: the next wait sleeps until the next notification.
        again = asyncio.create_task(pickup.wait(stop))
        await asyncio.sleep(0.3)
        assert not again.done()
        await pool.execute("SELECT pg_notify($1, '')", FETCHES_CHANGED)
        await asyncio.wait_for(again, 30)
    finally:
        await pickup.stop()


async def test_a_nudge_wakes_the_worker(db_url: str) -> None:
    stop = asyncio.Event()
    pickup = Pickup(db_url, poll_every=HOUR, channel=TASKS_CHANGED)
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
    pickup = Pickup("postgresql://nobody@127.0.0.1:1/none", poll_every=0.05, channel=TASKS_CHANGED)
    pickup.start()
    try:
        for _ in range(3):
            await asyncio.wait_for(pickup.wait(stop), 30)
        assert pickup.listener is not None and not pickup.listener.connected.is_set()
    finally:
        await pickup.stop()
    # No database configured at all: polling only.
    plain = Pickup("", poll_every=0.05, channel=TASKS_CHANGED)
    plain.start()
    await asyncio.wait_for(plain.wait(stop), 30)
    await plain.stop()
