"""Waking idle consumers, so that an idle system does not poll the broker many times a second.

The embedded broker holds every fetch until its deadline, so a consumer that must see a
message within milliseconds fetches every 10 ms, busy or idle, and even the background
consumers (projector, handlers) fetched every 200 ms: on an idle `cairn up` that was most
of its CPU, in the broker as much as in the clients (measured: one consumer fetching every
200 ms costs the embedded broker about 1 % of a core, every 10 ms about 7 %; a paused one,
heartbeats included, nothing). Instead an `IdleGate` beside each consumer:

- stops fetching (pauses its partitions) after `IDLE_AFTER` seconds without work, and
  LISTENs on a Postgres channel;
- resumes fetching at once on a notification on that channel, in parallel with the message
  on its way through Kafka, so the first message after an idle spell is not slower;
- still finds a message nobody announced (a process without a database, a lost
  notification, a relay that took longer than `IDLE_AFTER` to publish): a paused consumer
  peeks at its partitions every `peek_every` seconds;
- stays paused through a rebalance of its consumer group, which makes the consumer forget
  its pauses (`IdleGate.assigned`, called by the consumer's rebalance listener: a
  `GatedListener`, which every gate is built with, so no gated consumer can leave it out).

Channels:

- `CHANNEL` (commands): whoever sends a command calls a `Nudger` first, which NOTIFYs it
  (at most once per `NUDGE_EVERY` seconds per process), so that a paused host starts
  fetching while the command is being published. Readiness probes NOTIFY it with the
  payload `PROBE`, which makes the host peek (fetch for `PROBE_POLL_MS`) and pause again
  at once: a load balancer polling /ready does not keep the host awake, and is answered in
  milliseconds. The actor host
  also peeks every `PEEK_EVERY` seconds, for a command nobody announced (a lost
  notification, a sender without a database).
  Once a command is in the broker its sender also rings (`Nudger.ring`): a NOTIFY naming
  the command's partition and offset. The actor host's gate keeps fetching until every
  offset rung to it in a partition it holds is handled, so it need not stay awake on the
  chance that more commands come: it pauses as soon as it has nothing left
  (`RING_LINGER`). Measured on a 2-vCPU VM, one command every 70 ms: the broker 19.0 % of
  a core before, 11.3-12.5 % after; the actor host 14.2-14.4 % before, 11.4-12.2 % after
  (the rest of its cost is the commands' own). The nudge before the publish went from
  once per 0.5 s to once per 50 ms per process with this: the host no longer stays awake
  2 s after a nudge, and without it a command after a pause waited for its ring.
- the event store's `cairn_events` (bus/store/eventstore.py), NOTIFYed by every append:
  the projector and the handlers wake when an event is appended, milliseconds before the
  relay publishes it; and the relay's `cairn_published` (bus/store/relay.py), NOTIFYed
  after each pass that published events, which wakes them again when the relay was slower
  than `IDLE_AFTER` (Kafka was down, a standby took over). They peek every
  `PEEK_EVERY_BACKGROUND` seconds, for lost notifications only.

What a peek costs: the embedded broker spends about 1 % of a core on a consumer of 40
partitions peeking once a second (measured on the bare broker), heartbeats about 0.1 %,
so the peeks were most of an idle system's broker CPU: each is as rare as its role as a
fallback allows (the actors' 1 s became 3 s, the background consumers' 2 s became 10 s).

Without a working LISTEN connection a consumer simply never pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping
from typing import Any, final

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from bus.aio import sleep_unless_stopped
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.kafka.broker import fetch_max_wait_ms
from bus.store import db
from bus.store.eventstore import NOTIFY_CHANNEL
from bus.store.relay import PUBLISHED_CHANNEL

log = get_logger(__name__)

CHANNEL = "cairn_commands"
PROBE = "probe"  # the payload of a readiness probe's NOTIFY: peek, do not stay awake
# A ring's payload: "ring:" then "topic/partition/offset" items, comma-separated (topic names
# hold neither character): commands that are in the broker now (see Nudger.ring).
RING = "ring:"
RING_PAYLOAD_BYTES = 7000  # NOTIFY carries at most 8,000 bytes
# How long a rung offset keeps a host fetching at most: one it never handles (its partition
# moved to another host meanwhile, which handled it) must not keep it awake for good.
OWED_FOR = 5.0
IDLE_AFTER = 2.0
NUDGE_EVERY = 0.05
# Under the readiness check's 5 s, so that a probe whose NOTIFY was lost still passes.
PEEK_EVERY = 3.0
# Background consumers (projector, handlers) are woken by every append and by the relay
# after it publishes; a peek only covers a lost notification.
PEEK_EVERY_BACKGROUND = 10.0
# getmany timeouts: awake, the loop looks at the clock this often; peeking, one or two
# fetches of the embedded broker's 10 ms wait are enough to see a waiting command.
AWAKE_POLL_MS = 200
# The actor host, which every sender rings: it stays fetching this long after its last
# batch (commands that follow each other closely need no ring to be seen), and looks at
# whether it may pause this often.
RING_LINGER = 0.0
RING_AWAKE_MS = 20
# A sender rings at most this often; the offsets acknowledged meanwhile go in the next ring.
# Each NOTIFY wakes every LISTENing backend of the database (a dozen on `cairn up`), so
# under load the rings were a third of PostgreSQL's wake-ups (issue 13: 0.62 rings per
# object PUT). Under RING_AWAKE_MS, so a delay costs nothing while the host is busy: a
# host pauses only after a whole window without work, and the ring before the delayed one
# was for a command it handled at most a few milliseconds before that ring went, so a
# command acknowledged before the delayed ring finds it still fetching. Where it does not
# (another host holds the partition, the sender's loop lagged), the command waits at most
# this long more.
RING_EVERY = 0.015
PEEK_POLL_MS = 50
# A probe's NOTIFY goes out just before its command is published: fetch long enough for
# the command to land (a probe missed by this window is found by the next peek).
PROBE_POLL_MS = 250
# How long a look at a gained partition's backlog may wait for the broker (`IdleGate.gained`).
LOOK_TIMEOUT = 10.0


class Nudger:
    """The sender's side: NOTIFY the actor hosts that a command is coming."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._last = {"": float("-inf"), PROBE: float("-inf")}
        self._tasks: set[asyncio.Task[None]] = set()
        self._owed: dict[tuple[str, int], int] = {}  # rung next: (topic, partition) -> offset
        self._ringing = False
        self._rung_at = float("-inf")

    def __call__(self) -> None:
        """A command is coming: wake the host (until its gate finds nothing left to do)."""
        self._send("")

    def probe(self) -> None:
        """A readiness probe is coming: the host peeks for it and pauses again."""
        self._send(PROBE)

    def ring(self, topic: str, partition: int, offset: int) -> None:
        """A command is in the broker at `offset`: the hosts keep fetching (or start again)
        until the one that owns its partition has handled it.

        Sent after the produce is acknowledged, for every command, so a host that pauses the
        moment it has nothing left to do cannot miss one. Rings coalesce: one NOTIFY at a
        time per process and at most one per RING_EVERY, carrying the highest offset of each
        partition rung since the last.
        """
        key = (topic, partition)
        if offset > self._owed.get(key, -1):
            self._owed[key] = offset
        if not self._ringing:
            self._ringing = True
            self._spawn(self._ring_all())

    async def _ring_all(self) -> None:
        try:
            while self._owed:
                # At most one ring per RING_EVERY: a ring after a quiet spell goes at once,
                # rings under load wait and go together (every NOTIFY wakes every LISTENing
                # backend of the database, see RING_EVERY).
                wait = self._rung_at + RING_EVERY - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                owed, self._owed = self._owed, {}
                self._rung_at = time.monotonic()
                for payload in ring_payloads(owed):
                    await self._notify(payload)
        finally:
            self._ringing = False

    def _send(self, payload: str) -> None:
        now = time.monotonic()
        if now - self._last[payload] < NUDGE_EVERY:
            return
        self._last[payload] = now
        # Not awaited: the command goes to Kafka meanwhile, the host wakes in parallel.
        self._spawn(self._nudge(payload))

    async def _nudge(self, payload: str) -> None:
        if not await self._notify(payload):
            self._last[payload] = float("-inf")  # the next command tries again

    async def _notify(self, payload: str) -> bool:
        try:
            await self.pool.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            return True
        except Exception as e:  # the host's peek still finds the command
            log.debug("actor nudge failed", error=repr(e))
            return False

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)


def ring_payloads(owed: dict[tuple[str, int], int]) -> list[str]:
    """The NOTIFY payloads that carry `owed`, each under RING_PAYLOAD_BYTES."""
    payloads: list[str] = []
    items: list[str] = []
    size = len(RING)
    for (topic, partition), offset in owed.items():
        item = f"{topic}/{partition}/{offset}"
        if items and size + len(item) + 1 > RING_PAYLOAD_BYTES:
            payloads.append(RING + ",".join(items))
            items, size = [], len(RING)
        items.append(item)
        size += len(item) + 1
    if items:
        payloads.append(RING + ",".join(items))
    return payloads


def parse_ring(payload: str) -> dict[tuple[str, int], int]:
    """A ring's payload back to (topic, partition) -> offset; malformed items are skipped."""
    owed: dict[tuple[str, int], int] = {}
    for item in payload.removeprefix(RING).split(","):
        topic, _, rest = item.rpartition("/")
        topic, _, partition = topic.rpartition("/")
        if not topic or not partition.isdigit() or not rest.isdigit():
            continue
        key = (topic, int(partition))
        owed[key] = max(owed.get(key, -1), int(rest))
    return owed


class GatedListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """The rebalance listener of a consumer behind an `IdleGate`: give it to the consumer's
    subscription, and to the gate (which takes no other kind).

    A rebalance makes the consumer forget its pauses, so an idle gate must pause what is
    assigned again (`IdleGate.assigned`) before the consumer's first fetch. That was a rule
    each gated consumer's own listener had to remember; here it is done by the one
    `on_partitions_assigned` there is (final: a subclass cannot leave it out), before the
    owner's own `assigned`. Owners subclass this for their own work on a rebalance
    (`revoked`, `assigned`)."""

    def __init__(self) -> None:
        self.gate: IdleGate | None = None  # the gate built with this listener, while open
        self._held: set[TopicPartition] = set()  # what the last assignment gave

    @final
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.revoked(revoked)

    @final
    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Before any await (aiokafka calls this before it reads the group's offsets), so no
        # fetch goes out meanwhile.
        if self.gate is not None:
            self.gate.assigned(assigned)
        await self.assigned(assigned)
        # After the owner's own work, which may seek (the projector to its checkpoints).
        gained, self._held = set(assigned) - self._held, set(assigned)
        if self.gate is not None and gained:
            self.gate.gained(gained)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """The owner's work when `partitions` are revoked (nothing by default)."""

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """The owner's work when `partitions` are assigned, after the gate has paused them
        again if it is idle (nothing by default)."""


class IdleGate:
    """The consumer's side: pause fetching when idle, resume on a notification or to peek.

    `listener` is the consumer's rebalance listener (see `GatedListener`); `channel` the
    Postgres channel (or channels) to LISTEN on; `peek_every` how often a paused consumer
    looks anyway (None: `PEEK_EVERY`, read at each pause so tests can shorten it); `peek_ms`
    how long a peek keeps fetching (a few fetch waits of the consumer).
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        channel: str | tuple[str, ...] = CHANNEL,
        *,
        listener: GatedListener,
        peek_every: float | None = None,
        peek_ms: int = PEEK_POLL_MS,
        handled: Mapping[tuple[str, int], int] | None = None,
        linger: float | None = None,
        awake_ms: int = AWAKE_POLL_MS,
        keep_paused: Callable[[], Collection[TopicPartition]] | None = None,
    ) -> None:
        self.consumer = consumer
        self.listener = listener
        listener.gate = self
        # Partitions the owner paused for reasons of its own (the projector's holds): a
        # wake-up resumes the others only.
        self._keep_paused = keep_paused
        self.channels = (channel,) if isinstance(channel, str) else channel
        self._peek_every = peek_every
        self._peek_ms = peek_ms
        self._window_ms = peek_ms  # of the current peek: longer for a probe
        # With `handled` (the highest offset the consumer's owner has handled in each
        # partition), rings are honoured: the gate does not pause while a rung command of a
        # partition it holds is still unhandled, so it may pause as soon as it has nothing
        # left (`linger`, None: IDLE_AFTER) and look at its work more often (`awake_ms`).
        self._handled = handled
        self._linger = linger
        self._awake_ms = awake_ms
        self._owed: dict[tuple[str, int], tuple[int, float]] = {}  # -> (offset, given up at)
        self._nudged = asyncio.Event()
        self._probed = asyncio.Event()
        self._awake_until = time.monotonic() + self.linger
        self._paused = False
        self._peeking = False
        self._conn: Any = None
        self._listening = False
        self._hold = asyncio.Lock()
        self._looks: set[asyncio.Task[None]] = set()  # `gained`'s looks at a backlog
        self.backlogs_found = 0  # gained partitions that woke the gate (for tests, logs)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """While held, a paused gate stays paused: a nudge waits until the hold ends."""
        async with self._hold:
            yield

    @property
    def paused(self) -> bool:
        """True while the gate holds every partition paused (idle)."""
        return self._paused

    @property
    def linger(self) -> float:
        return IDLE_AFTER if self._linger is None else self._linger

    async def listen(self, pool: asyncpg.Pool) -> None:
        """LISTEN on a connection of its own; without it the host never pauses."""
        try:
            self._conn = await db.listen(pool, self.channels, self._on_notify, self._on_lost)
            self._listening = True
        except Exception as e:
            log.warning("consumer cannot LISTEN for wake-ups; it will not pause", error=repr(e))

    async def close(self, pool: asyncpg.Pool) -> None:
        if self.listener.gate is self:
            self.listener.gate = None
        self._listening = False
        for look in self._looks:
            look.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            await db.unlisten(pool, conn, self.channels, self._on_notify, self._on_lost)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(RING):
            if self._handled is None:
                return  # (a gate that does not track rings: the nudge before it woke it)
            until = time.monotonic() + OWED_FOR
            for key, offset in parse_ring(payload).items():
                if offset > self._owed.get(key, (-1, 0.0))[0]:
                    self._owed[key] = (offset, until)
        (self._probed if payload == PROBE else self._nudged).set()

    def owes(self) -> bool:
        """A rung command of a partition this consumer holds is not handled yet."""
        if not self._owed or self._handled is None:
            return False
        held = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        now = time.monotonic()
        handled = self._handled
        self._owed = {
            key: (offset, until)
            for key, (offset, until) in self._owed.items()
            if key in held and handled.get(key, -1) < offset and now < until
        }
        return bool(self._owed)

    def forget(self, topic: str) -> None:
        """Drop the rings of `topic`: it was recycled (bus/actors/recycle.py), and offsets
        rung in the old topic would count as unhandled in the new one."""
        self._owed = {key: owed for key, owed in self._owed.items() if key[0] != topic}

    def wake(self) -> None:
        """Wake the gate as a notification would: the owner has work for it (a partition
        it paused for reasons of its own may be fetched again, see `keep_paused`), so a
        paused gate resumes and an awake one stays awake a while."""
        self._nudged.set()

    def assigned(self, partitions: Collection[TopicPartition]) -> None:
        """A rebalance assigned `partitions` to the consumer: its `GatedListener` calls this
        in `on_partitions_assigned`, before its first await.

        aiokafka forgets a partition's pause when it revokes it, and a rebalance revokes
        every partition before it assigns them again (those the consumer keeps too). So an
        idle gate's pauses were gone after one: the consumer fetched (long-polled the
        broker) every partition while the gate, asleep until a wake-up or its next peek
        (`peek_every`: up to 10 s), believed it fetched nothing; on every gated consumer,
        and under the actor host's recycle, which relies on a paused gate having no fetch
        out. Paused again here, before their first fetch (aiokafka calls the listener before
        it has read the group's offsets), they wait for the next wake-up like the others,
        which resumes them as usual. An awake gate (fetching, or peeking) has nothing to
        redo: it pauses whatever is assigned when it next goes idle. Only on a rebalance,
        so the hot path costs what it did."""
        if self._paused:
            # (Only what is still assigned: pausing anything else raises.)
            self.consumer.pause(*(set(partitions) & self.consumer.assignment()))

    def gained(self, partitions: Collection[TopicPartition]) -> None:
        """A rebalance gave the consumer `partitions` it did not hold before (another member
        left: stopped, or killed with what it had not handled yet).

        An idle gate paused them (`assigned`), and nothing announces what already waits in
        them: the appends and rings that would have woken a gate went to the member that
        held them. So a backlog there waited for the gate's next peek: up to 10 s for the
        handlers and the projector, 3 s for the actor host's commands, whose senders wait
        for replies. Instead the gate compares each gained partition's position (the
        group's committed offset, or where the owner sought to) with its end, in a task of
        its own (the listener must not wait on the broker), and wakes if anything waits.
        Only a hint, like a notification: a failed look leaves it to the next peek."""
        if not self._paused:
            return  # an awake gate fetches them anyway
        task = asyncio.create_task(self._wake_for_backlog(set(partitions)))
        self._looks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._looks.discard)

    async def _wake_for_backlog(self, partitions: set[TopicPartition]) -> None:
        consumer = self.consumer
        try:
            async with asyncio.timeout(LOOK_TIMEOUT):
                ends = await consumer.end_offsets(list(partitions))
                for tp in sorted(partitions):
                    if tp not in consumer.assignment():
                        continue  # taken away again meanwhile
                    position = await consumer.position(tp)
                    if position < ends.get(tp, 0):
                        log.info(
                            "consumer.backlog_gained",
                            topic=tp.topic,
                            partition=tp.partition,
                            waiting=ends[tp] - position,
                        )
                        self.backlogs_found += 1
                        self.wake()
                        return
        except Exception as e:  # (the broker's answer is only a hint: the peek remains)
            log.debug("consumer.backlog_look_failed", error=repr(e))

    def _on_lost(self, *_: object) -> None:
        # No more nudges can arrive: stay awake from now on.
        log.warning("consumer lost its LISTEN connection; it will not pause")
        self._listening = False
        self._nudged.set()

    @property
    def poll_ms(self) -> int:
        return self._window_ms if self._peeking else self._awake_ms

    async def wait_for_work(self, stop: asyncio.Event) -> None:
        """Before a poll: if paused, sleep until a nudge, the next peek, or stop."""
        if self._paused:
            waits = {asyncio.ensure_future(e.wait()) for e in (self._nudged, self._probed, stop)}
            _, pending = await asyncio.wait(
                waits,
                timeout=PEEK_EVERY if self._peek_every is None else self._peek_every,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for w in pending:
                w.cancel()
            self._peeking = not self._nudged.is_set()
            self._window_ms = (
                max(self._peek_ms, PROBE_POLL_MS) if self._probed.is_set() else self._peek_ms
            )
            self._probed.clear()
            async with self._hold:  # (a recycle of a command topic, bus/actors/host.py)
                kept = set(self._keep_paused()) if self._keep_paused is not None else set()
                self.consumer.resume(*(self.consumer.assignment() - kept))
                self._paused = False
        if self._nudged.is_set():
            self._nudged.clear()
            self._peeking = False
            self._awake_until = time.monotonic() + self.linger

    def after_poll(self, got_commands: bool) -> None:
        now = time.monotonic()
        if got_commands:
            self._peeking = False
            self._awake_until = now + self.linger
        elif self.owes():
            self._peeking = False  # a peek that met a rung command stays until it is handled
        elif self._listening and (self._peeking or now >= self._awake_until):
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True
            self._peeking = False

    async def drive(self, stop: asyncio.Event, activity: Callable[[], int]) -> None:
        """Run the gate beside a subscriber's own poll loop (FastStream's) until `stop`.

        Its "poll" is a window of `poll_ms`; there was work when `activity()` (a counter the
        handler bumps at the start and the end of every batch with real work) changed
        within that window.
        """
        while not stop.is_set():
            await self.wait_for_work(stop)
            seen = activity()
            if await sleep_unless_stopped(stop, self.poll_ms / 1000):
                return
            self.after_poll(activity() != seen)


@contextlib.asynccontextmanager
async def gated_while_idle(
    consumer: AIOKafkaConsumer,
    listener: GatedListener,
    pool: asyncpg.Pool,
    settings: Settings,
    stop: asyncio.Event,
    activity: Callable[[], int],
    *,
    keep_paused: Callable[[], Collection[TopicPartition]] | None = None,
) -> AsyncIterator[IdleGate]:
    """A background consumer's gate (the projector's, the handlers'), driven while the block
    runs: it stops fetching when idle, until an event is appended (the event store's
    NOTIFY) or published (the relay's), and peeks every `PEEK_EVERY_BACKGROUND` seconds for
    a lost notification. `listener`: the consumer's rebalance listener; `activity`: as for
    `IdleGate.drive`; `keep_paused`: as for `IdleGate`. Stopped and closed at the block's
    end."""
    gate = IdleGate(
        consumer,
        (NOTIFY_CHANNEL, PUBLISHED_CHANNEL),
        listener=listener,
        peek_every=PEEK_EVERY_BACKGROUND,
        peek_ms=fetch_max_wait_ms(settings, latency_critical=False) + 100,
        keep_paused=keep_paused,
    )
    gating: asyncio.Task[None] | None = None
    try:
        await gate.listen(pool)
        gating = asyncio.create_task(gate.drive(stop, activity))
        yield gate
    finally:
        if gating is not None:
            gating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gating
        await gate.close(pool)
