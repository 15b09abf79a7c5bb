"""Rebalancing a consumer group under a gated consumer (bus/actors/wake.py), against the real
broker: a second member joins and leaves, and what the first one fetches afterwards.

aiokafka forgets every pause of a partition it revokes and assigns again, so an idle gate's
pauses must be made again on each assignment (`IdleGate.assigned`, called by the gate's
`GatedListener`, which must be the one its consumer calls)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bus.actors.wake import IdleGate
from bus.config.settings import Settings
from bus.kafka.clients import make_consumer
from tests.system import wait_until


async def idle(gate: IdleGate) -> bool:
    """The gate is idle and every partition its consumer holds is paused."""
    assigned = gate.consumer.assignment()
    return gate.paused and bool(assigned) and gate.consumer.paused() == assigned


@asynccontextmanager
async def joined(settings: Settings, consumer: Any, group_id: str) -> AsyncIterator[Any]:
    """A second member of `group_id` (a plain consumer of `consumer`'s topics, which fetches
    but commits nothing unless told), yielded once the group is split between the two
    (`consumer` holds what it held before, less the other's share); it leaves on exit."""
    everything = consumer.assignment()
    other = make_consumer(settings, *consumer.subscription(), group_id=group_id)
    await other.start()
    try:

        async def split() -> bool:
            theirs = other.assignment()
            return bool(theirs) and consumer.assignment() == everything - theirs

        await wait_until(split, timeout=60)
        yield other
    finally:
        await other.stop()


async def join_and_leave(settings: Settings, consumer: Any, group_id: str) -> None:
    """A second member joins `group_id` (`joined`), takes its share of the partitions and
    leaves: two rebalances, after which `consumer` holds what it held before."""
    everything = consumer.assignment()
    async with joined(settings, consumer, group_id):
        pass

    async def whole() -> bool:
        return bool(consumer.assignment() == everything)

    await wait_until(whole, timeout=60)


def installed_listener(consumer: Any) -> Any:
    """The rebalance listener `consumer` calls (FastStream wraps a subscriber's own in a
    logging facade, which calls it)."""
    listener = consumer._subscription.listener
    return getattr(listener, "listener", listener)


async def assert_still_idle(gate: IdleGate, timeout: float = 10.0) -> None:
    """The gate still believes it is idle, and its consumer fetches nothing (every partition
    it holds paused), once the assignment's rebalance listener has run (it runs a moment
    after the assignment shows). Nothing wakes the gate meanwhile where this is used (no
    event, no peek), so a consumer fetching behind an idle gate stays so and fails here.
    And the gate's listener is the one its consumer calls (one built for the gate alone
    would never hear of a rebalance)."""
    assert installed_listener(gate.consumer) is gate.listener, (
        f"the consumer calls {installed_listener(gate.consumer)!r}, not its gate's listener"
    )
    assert gate.paused, "the gate woke up: nothing could show what it fetches while idle"
    try:
        await wait_until(lambda: idle(gate), timeout=timeout)
    except TimeoutError:
        assigned = gate.consumer.assignment()
        fetching = sorted(assigned - gate.consumer.paused())
        raise AssertionError(
            f"the gate is idle (paused={gate.paused}) yet its consumer fetches"
            f" {len(fetching)} of its {len(assigned)} partitions: {fetching[:3]}, ..."
        ) from None
