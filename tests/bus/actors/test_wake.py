"""An idle actor host stops fetching and is woken by a sender's nudge (bus/actors/wake.py).

Against the real broker and Postgres: the gate pauses the consumer's partitions once idle,
a `Nudger` (NOTIFY) resumes them, and a message nobody announced is still found by a peek.
The idle and peek intervals are shortened for the test.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from bus.actors import wake
from bus.aio import Stopped, unless_stopped
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, make_consumer, make_producer
from tests.rebalance import join_and_leave
from tests.system import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def short_intervals(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.setattr(wake, "IDLE_AFTER", 0.3)
    # Where the nudge is under test, no peek may wake the host instead.
    peek = 0.3 if "peek" in request.node.name else 600.0
    monkeypatch.setattr(wake, "PEEK_EVERY", peek)
    monkeypatch.setattr(wake, "NUDGE_EVERY", 0.0)


@pytest_asyncio.fixture(loop_scope="session")
async def topic(settings: Settings) -> str:
    name = f"{settings.topic_prefix}.wake-test"
    await ensure_topics(settings, [name])
    return name


class Loop:
    """The actor host's loop shape, recording what it received (and, like the host, the
    highest offset handled in each partition)."""

    def __init__(self, consumer: AIOKafkaConsumer, gate: wake.IdleGate) -> None:
        self.consumer, self.gate = consumer, gate
        self.received: list[bytes] = []
        self.handled: dict[tuple[str, int], int] = {}
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.gate.wait_for_work(self.stop)
            try:
                batch = await unless_stopped(
                    self.consumer.getmany(timeout_ms=self.gate.poll_ms), self.stop
                )
            except Stopped:
                return
            # Like the actor host, which does not count readiness probes as work.
            self.gate.after_poll(any(r.value != b"probe" for rs in batch.values() for r in rs))
            for records in batch.values():
                self.received += [r.value for r in records]
                for r in records:
                    key = (r.topic, r.partition)
                    self.handled[key] = max(self.handled.get(key, -1), r.offset)

    def paused(self) -> bool:
        assigned = self.consumer.assignment()
        return bool(assigned) and self.consumer.paused() == assigned


def gated_consumer(
    settings: Settings, topic: str, group: str, **options: Any
) -> tuple[AIOKafkaConsumer, wake.GatedListener]:
    """A consumer of `topic` in `group` (not started), subscribed with the rebalance listener
    its IdleGate is to be built with, as every gated consumer's owner does."""
    consumer = make_consumer(settings, group_id=group, **options)
    listener = wake.GatedListener()
    consumer.subscribe([topic], listener=listener)
    return consumer, listener


@contextlib.asynccontextmanager
async def running_loop(
    settings: Settings, pool: asyncpg.Pool, topic: str, group: str, **gate_options: Any
) -> AsyncIterator[Loop]:
    """A consumer of `topic` in `group` behind an IdleGate (`gate_options`), its loop
    running."""
    consumer, listener = gated_consumer(settings, topic, group, latency_critical=True)
    gate = wake.IdleGate(consumer, listener=listener, **gate_options)
    await consumer.start()
    await gate.listen(pool)
    lp = Loop(consumer, gate)
    task = asyncio.create_task(lp.run())
    try:
        yield lp
    finally:
        lp.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await gate.close(pool)
        await consumer.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def loop(settings: Settings, pool: asyncpg.Pool, topic: str) -> AsyncIterator[Loop]:
    async with running_loop(settings, pool, topic, f"{topic}-g") as lp:
        yield lp


async def send(
    settings: Settings, topic: str, value: bytes, before: Callable[[], None] | None = None
) -> None:
    """Produce one message; `before` runs once the producer is connected, just before it."""
    producer = make_producer(settings)
    await producer.start()
    try:
        if before is not None:
            before()
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def until_received(lp: Loop, value: bytes) -> None:
    async def got() -> bool:
        return value in lp.received

    await wait_until(got, timeout=20)


async def _paused(lp: Loop) -> bool:
    return lp.paused()


async def _awake(lp: Loop) -> bool:
    return not lp.paused()


async def test_idle_host_pauses_and_a_nudge_wakes_it(
    loop: Loop, pool: asyncpg.Pool, settings: Settings, topic: str
) -> None:
    await wait_until(lambda: _paused(loop), timeout=20)
    nudge = wake.Nudger(pool)
    nudge()
    await wait_until(lambda: _awake(loop), timeout=20)
    # Nudged again just before the message, as the command bus does: the host stays awake
    # only IDLE_AFTER (0.3 s here), which a producer's start on a loaded machine can outlast.
    await send(settings, topic, b"announced", before=nudge)
    await until_received(loop, b"announced")
    # And idle again afterwards.
    await wait_until(lambda: _paused(loop), timeout=20)


async def test_a_probe_makes_the_host_peek_and_pause_again_without_staying_awake(
    loop: Loop, pool: asyncpg.Pool, settings: Settings, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A readiness probe's NOTIFY (payload PROBE) is answered at once, yet the host does not
    stay awake for IDLE_AFTER as after a command's nudge: polling /ready keeps nothing
    fetching. No timed peek can answer here (PEEK_EVERY is 600 s in this test)."""
    await wait_until(lambda: _paused(loop), timeout=20)
    monkeypatch.setattr(wake, "IDLE_AFTER", 600.0)  # a command's nudge would wake it for 600 s
    await send(settings, topic, b"probe", before=wake.Nudger(pool).probe)
    await until_received(loop, b"probe")
    await wait_until(lambda: _paused(loop), timeout=5)


async def test_unannounced_message_is_found_by_a_peek(
    loop: Loop, settings: Settings, topic: str
) -> None:
    await wait_until(lambda: _paused(loop), timeout=20)
    await send(settings, topic, b"unannounced")
    await until_received(loop, b"unannounced")


async def test_an_append_wakes_a_gate_on_the_event_channel(
    settings: Settings, pool: asyncpg.Pool, topic: str
) -> None:
    """The projector's and the handlers' gate: LISTENing on the event store's channel, an
    append (which NOTIFYs it in its transaction) resumes fetching."""
    import uuid
    from datetime import UTC, datetime

    from bus.actors.host import Actors
    from bus.store.eventstore import NOTIFY_CHANNEL, PostgresEventStore
    from domain.commands import InitiateUpload

    consumer, listener = gated_consumer(settings, topic, f"{topic}-events")
    await consumer.start()
    gate = wake.IdleGate(consumer, NOTIFY_CHANNEL, listener=listener, peek_every=600.0)
    await gate.listen(pool)
    lp = Loop(consumer, gate)
    task = asyncio.create_task(lp.run())
    try:
        await wait_until(lambda: _paused(lp), timeout=20)
        reply = await Actors(PostgresEventStore(pool)).execute(
            InitiateUpload(
                aggregate_id=str(uuid.uuid4()),
                caller="alice",
                at=datetime.now(UTC),
                file_name="a.bin",
                file_size=1,
                chunk_size=1,
            )
        )
        assert reply["ok"] and reply["events"], reply
        await wait_until(lambda: _awake(lp), timeout=20)
    finally:
        lp.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await gate.close(pool)
        await consumer.stop()


@pytest.mark.parametrize("channel", ["events", "published"])
async def test_a_background_consumer_s_gate_pauses_idle_and_a_notification_wakes_it(
    settings: Settings,
    pool: asyncpg.Pool,
    topic: str,
    monkeypatch: pytest.MonkeyPatch,
    channel: str,
) -> None:
    """`gated_while_idle`, the projector's and the handlers' gate: driven beside the
    consumer's own poll loop (a bare one here, as FastStream's), it pauses the idle consumer;
    an event appended or published (each NOTIFYs its channel) resumes it; the block's end
    stops the gate and gives its LISTEN connection back."""
    from bus.store.eventstore import NOTIFY_CHANNEL
    from bus.store.relay import PUBLISHED_CHANNEL

    monkeypatch.setattr(wake, "PEEK_EVERY_BACKGROUND", 600.0)  # no peek may wake it instead
    consumer, listener = gated_consumer(settings, topic, f"{topic}-background-{channel}")
    await consumer.start()
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            await consumer.getmany(timeout_ms=50)

    def paused() -> bool:
        assigned = consumer.assignment()
        return bool(assigned) and consumer.paused() == assigned

    async def _is_paused() -> bool:
        return paused()

    async def _is_awake() -> bool:
        return not paused()

    poller = asyncio.create_task(poll())
    try:
        async with wake.gated_while_idle(
            consumer, listener, pool, settings, stop, lambda: 0
        ) as gate:
            await wait_until(_is_paused, timeout=20)
            monkeypatch.setattr(wake, "IDLE_AFTER", 600.0)  # once woken, it stays awake
            name = NOTIFY_CHANNEL if channel == "events" else PUBLISHED_CHANNEL
            await pool.execute("SELECT pg_notify($1, '')", name)
            await wait_until(_is_awake, timeout=20)
            assert gate._conn is not None
        assert gate._conn is None and not gate._listening
    finally:
        stop.set()
        await poller
        await consumer.stop()


def test_ring_payloads_round_trip_and_stay_under_notify_limit() -> None:
    owed = {(f"cairn.commands.t{i}", i % 8): 10**12 + i for i in range(400)}
    payloads = wake.ring_payloads(owed)
    assert len(payloads) > 1, "400 items do not fit one NOTIFY"
    assert all(len(p.encode()) <= wake.RING_PAYLOAD_BYTES for p in payloads)
    back: dict[tuple[str, int], int] = {}
    for p in payloads:
        back |= wake.parse_ring(p)
    assert back == owed


def test_parse_ring_keeps_the_highest_offset_and_skips_malformed_items() -> None:
    got = wake.parse_ring("ring:a.b/1/5,a.b/1/9,a.b/1/7,bad,x//3,x/y/z,c/0/0")
    assert got == {("a.b", 1): 9, ("c", 0): 0}


class _RecordingPool:
    """Stands in for the pool in this unit test of the sender's timing only: records when
    each NOTIFY would go and what it names."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []
        self.first = asyncio.Event()
        self.second = asyncio.Event()

    async def execute(self, _query: str, _channel: str, payload: str) -> None:
        self.sent.append((asyncio.get_running_loop().time(), payload))
        (self.second if self.first.is_set() else self.first).set()


@pytest.mark.asyncio(loop_scope="session")
async def test_rings_under_load_go_together_at_most_once_per_ring_every() -> None:
    rec = _RecordingPool()
    nudger = wake.Nudger(rec)  # type: ignore[arg-type]
    nudger.ring("t", 0, 1)  # after a quiet spell: at once
    await rec.first.wait()
    for offset in (2, 3, 4):  # acknowledged within the window: one ring, the highest
        nudger.ring("t", 0, offset)
    nudger.ring("t", 1, 7)
    async with asyncio.timeout(5):
        await rec.second.wait()
    await asyncio.gather(*nudger._tasks)  # the ringing ends: nothing more is owed
    assert [wake.parse_ring(p) for _, p in rec.sent] == [
        {("t", 0): 1},
        {("t", 0): 4, ("t", 1): 7},
    ]
    assert rec.sent[1][0] - rec.sent[0][0] >= wake.RING_EVERY * 0.99


@pytest_asyncio.fixture(loop_scope="session")
async def rung_loop(settings: Settings, pool: asyncpg.Pool, topic: str) -> AsyncIterator[Loop]:
    """The actor host's gate: rings honoured, no linger, no peek (PEEK_EVERY is 600 s)."""
    handled: dict[tuple[str, int], int] = {}
    options = {"handled": handled, "linger": 0.0, "awake_ms": 20}
    async with running_loop(settings, pool, topic, f"{topic}-rung", **options) as lp:
        lp.handled = handled  # the loop records what it handles where the gate looks
        yield lp


async def test_a_ring_after_the_send_wakes_a_paused_host_for_exactly_that_message(
    rung_loop: Loop, pool: asyncpg.Pool, settings: Settings, topic: str
) -> None:
    """No nudge before, no peek: only the ring, sent once the message is in the broker,
    wakes the host; it pauses again once the rung offset is handled."""
    await wait_until(lambda: _paused(rung_loop), timeout=20)
    nudger = wake.Nudger(pool)
    for i in range(3):  # each after the host paused again
        producer = make_producer(settings)
        await producer.start()
        try:
            md = await producer.send_and_wait(topic, f"rung-{i}".encode())
        finally:
            await producer.stop()
        nudger.ring(md.topic, md.partition, md.offset)
        await until_received(rung_loop, f"rung-{i}".encode())
        assert rung_loop.handled[(md.topic, md.partition)] >= md.offset
        await wait_until(lambda: _paused(rung_loop), timeout=20)


async def test_a_rung_offset_keeps_the_host_fetching_until_handled(
    rung_loop: Loop, pool: asyncpg.Pool, settings: Settings, topic: str
) -> None:
    """A ring for an offset not handled yet keeps the gate from pausing (with no linger it
    would pause at its first empty window); one for a partition it does not hold, or
    handled already, does not."""
    await wait_until(lambda: _paused(rung_loop), timeout=20)
    gate = rung_loop.gate
    tp = next(iter(rung_loop.consumer.assignment()))
    key = (tp.topic, tp.partition)
    ahead = rung_loop.handled.get(key, -1) + 1000  # no message there yet
    gate._on_notify(None, 0, wake.CHANNEL, wake.RING + f"{tp.topic}/{tp.partition}/{ahead}")
    assert gate.owes()
    await wait_until(lambda: _awake(rung_loop), timeout=20)
    for _ in range(5):  # several windows: it stays awake
        await asyncio.sleep(0.05)
        assert not rung_loop.paused()
    rung_loop.handled[key] = ahead  # as if handled
    await wait_until(lambda: _paused(rung_loop), timeout=20)
    gate._on_notify(None, 0, wake.CHANNEL, wake.RING + f"not.held/{tp.partition}/{ahead}")
    gate._on_notify(None, 0, wake.CHANNEL, wake.RING + f"{tp.topic}/{tp.partition}/{ahead}")
    assert not gate.owes()


async def test_an_owed_offset_is_given_up_after_owed_for(
    rung_loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An offset the host never handles (its partition's previous owner did) keeps it
    fetching OWED_FOR seconds at most."""
    monkeypatch.setattr(wake, "OWED_FOR", 0.3)
    await wait_until(lambda: _paused(rung_loop), timeout=20)
    tp = next(iter(rung_loop.consumer.assignment()))
    never = rung_loop.handled.get((tp.topic, tp.partition), -1) + 10**6
    rung_loop.gate._on_notify(
        None, 0, wake.CHANNEL, wake.RING + f"{tp.topic}/{tp.partition}/{never}"
    )
    await wait_until(lambda: _awake(rung_loop), timeout=20)
    await wait_until(lambda: _paused(rung_loop), timeout=20)
    assert not rung_loop.gate.owes()


async def test_a_recycled_topic_s_rings_are_forgotten(rung_loop: Loop) -> None:
    """After its topic is recycled, an offset rung in the old one would wait to be handled
    in the new one (where it may never come): `forget` drops it."""
    tp = next(iter(rung_loop.consumer.assignment()))
    ahead = rung_loop.handled.get((tp.topic, tp.partition), -1) + 1000
    rung_loop.gate._on_notify(
        None, 0, wake.CHANNEL, wake.RING + f"{tp.topic}/{tp.partition}/{ahead}"
    )
    assert rung_loop.gate.owes()
    rung_loop.gate.forget("another.topic")
    assert rung_loop.gate.owes()
    rung_loop.gate.forget(tp.topic)
    assert not rung_loop.gate.owes()


async def test_a_wake_up_leaves_the_partitions_the_owner_keeps_paused(
    settings: Settings, pool: asyncpg.Pool, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The projector holds a partition before an event of a newer schema version by pausing
    it (projections/runner.py); the gate's wake-up must not resume that one."""
    from bus.store.eventstore import NOTIFY_CHANNEL

    monkeypatch.setattr(wake, "PEEK_EVERY_BACKGROUND", 600.0)
    consumer, listener = gated_consumer(settings, topic, f"{topic}-kept")
    await consumer.start()
    stop = asyncio.Event()
    kept: set[Any] = set()

    async def poll() -> None:
        while not stop.is_set():
            await consumer.getmany(timeout_ms=50)

    async def _all_paused() -> bool:
        assigned = consumer.assignment()
        return bool(assigned) and consumer.paused() == assigned

    poller = asyncio.create_task(poll())
    try:
        async with wake.gated_while_idle(
            consumer, listener, pool, settings, stop, lambda: 0, keep_paused=lambda: kept
        ):
            await wait_until(_all_paused, timeout=20)
            held = sorted(consumer.assignment())[0]
            kept.add(held)
            monkeypatch.setattr(wake, "IDLE_AFTER", 600.0)

            async def _others_awake() -> bool:
                return consumer.paused() == {held}

            await pool.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
            await wait_until(_others_awake, timeout=20)
            assert len(consumer.assignment()) > 1  # there were others to wake
    finally:
        stop.set()
        await poller
        await consumer.stop()


async def test_an_idle_actor_host_stays_paused_through_a_rebalance_and_a_command_wakes_it(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """aiokafka forgets its pauses when a rebalance revokes and assigns the partitions: the
    idle host's gate pauses them again (else the host fetches every command partition at
    its 10 ms wait while the gate believes it idle, until its next peek: 3 s). A command
    sent after the rebalance is still answered at once (no peek can answer it here)."""
    from bus.actors.commandbus import CommandBus
    from bus.actors.host import ActorHost
    from tests.bus.actors.uploads import initiate
    from tests.rebalance import assert_still_idle, idle, join_and_leave

    await ensure_topics(settings)
    host = ActorHost(settings, pool)
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    bus = CommandBus(settings, pool=pool, nudge=wake.Nudger(pool))
    try:
        await bus.start()

        async def gate() -> wake.IdleGate | None:
            return host.gate

        g = await wait_until(gate, timeout=60)
        await wait_until(lambda: idle(g), timeout=30)
        await join_and_leave(settings, host.consumer, host.group_id)
        await assert_still_idle(g)

        began = asyncio.get_running_loop().time()
        assert (await bus.send(initiate(str(uuid.uuid4())), timeout=20)).applied
        assert asyncio.get_running_loop().time() - began < 5
        await wait_until(lambda: idle(g), timeout=30)  # and idle again
    finally:
        await bus.stop()
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_rebalance_leaves_an_awake_gate_s_consumer_fetching(
    settings: Settings, pool: asyncpg.Pool, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`IdleGate.assigned`, called by the rebalance listener as each owner's does, pauses
    the new assignment only when the gate is idle: an awake consumer goes on fetching, and
    a message nobody announces is received (no nudge, no peek here)."""
    monkeypatch.setattr(wake, "IDLE_AFTER", 600.0)  # awake throughout
    group = f"{topic}-awake"
    async with running_loop(settings, pool, topic, group) as lp:
        consumer, gate = lp.consumer, lp.gate

        async def assigned() -> bool:
            return bool(consumer.assignment())

        await wait_until(assigned, timeout=30)
        await join_and_leave(settings, consumer, group)
        await send(settings, topic, b"after the rebalance")
        await until_received(lp, b"after the rebalance")
        assert not gate.paused and not consumer.paused()


async def test_a_backlog_in_partitions_gained_from_a_member_that_left_wakes_an_idle_gate(
    settings: Settings, pool: asyncpg.Pool, topic: str
) -> None:
    """A member of the group leaves (stopped, or killed) with messages it never handled in
    its partitions; the idle member that gets them reads them at once (`IdleGate.gained`),
    though nothing announces them and no peek comes here (600 s): before, they waited for
    the gate's next peek (10 s for the handlers and the projector)."""
    from aiokafka import TopicPartition

    from tests.rebalance import joined

    group = f"{topic}-gained"
    async with running_loop(settings, pool, topic, group) as lp:
        consumer, gate = lp.consumer, lp.gate
        await wait_until(lambda: _paused(lp), timeout=30)
        async with joined(settings, consumer, group) as other:
            theirs: set[TopicPartition] = other.assignment()
            part = min(theirs).partition
            producer = make_producer(settings)
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"left behind", partition=part)
            finally:
                await producer.stop()
            # The other member leaves without committing it (it never reads).
            assert gate.paused and b"left behind" not in lp.received

        began = asyncio.get_running_loop().time()
        await until_received(lp, b"left behind")
        assert asyncio.get_running_loop().time() - began < 15  # (the peek is 600 s away)
        assert gate.backlogs_found == 1
        await wait_until(lambda: _paused(lp), timeout=30)  # and idle again


async def test_partitions_gained_without_a_backlog_leave_an_idle_gate_paused(
    settings: Settings, pool: asyncpg.Pool, topic: str
) -> None:
    """The look at gained partitions wakes the gate only for what waits in them: a member
    joining and leaving an idle group wakes nobody (what was read was committed)."""
    from tests.rebalance import assert_still_idle, join_and_leave

    group = f"{topic}-gained-empty"
    async with running_loop(settings, pool, topic, group) as lp:
        await send(settings, topic, b"read before")
        # Woken as an append's notification would (a bare produce notifies nobody: the
        # gate may have gone idle before it, and then it waited for a peek, 10 s away,
        # which a loaded machine could make miss the 20 s below).
        lp.gate.wake()
        await until_received(lp, b"read before")
        await wait_until(lambda: _paused(lp), timeout=30)
        await lp.consumer.commit()
        await join_and_leave(settings, lp.consumer, group)
        await assert_still_idle(lp.gate)
        assert lp.gate.backlogs_found == 0


# Every consumer behind an IdleGate, by the module that builds its gate, with the test that
# rebalances it while idle (tests/rebalance.py: `join_and_leave`, then `assert_still_idle`,
# which checks that the gate's GatedListener is the one its consumer calls).
GATED = {
    "bus/actors/host.py": (
        "tests/bus/actors/test_wake.py",
        "test_an_idle_actor_host_stays_paused_through_a_rebalance_and_a_command_wakes_it",
    ),
    "handlers/runner.py": (
        "tests/handlers/test_partition_wait.py",
        "test_an_idle_consumer_stays_paused_through_a_rebalance_and_an_event_wakes_it",
    ),
    "projections/runner.py": (
        "tests/projections/test_projector.py",
        "test_an_idle_projector_stays_paused_through_a_rebalance_and_an_append_wakes_it",
    ),
}


def test_every_gated_consumer_has_a_test_that_rebalances_it_idle() -> None:
    """A gate is built with a GatedListener, which pauses what a rebalance assigns (no
    gated consumer can leave that out); what only a running consumer shows is that the
    listener is the one its consumer was subscribed with. So every module that builds a
    gate has a test that rebalances its consumer while idle: a new gated consumer fails
    here until it has one."""
    root = Path(__file__).resolve().parents[3]
    builders = set()
    for package in ("api", "bus", "handlers", "projections"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("IdleGate", "gated_while_idle"):
                    builders.add(path.relative_to(root).as_posix())
    builders.discard("bus/actors/wake.py")  # (gated_while_idle itself)
    assert builders == set(GATED), (
        "a gated consumer without a test that rebalances it idle (list it in GATED)"
    )
    for test_file, name in GATED.values():
        source = (root / test_file).read_text()
        body = source[source.index(f"async def {name}(") :].split("\nasync def ", 1)[0]
        assert "join_and_leave(" in body and "assert_still_idle(" in body, name
