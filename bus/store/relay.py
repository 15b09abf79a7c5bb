"""The relay: moves events from the Postgres event store onto Kafka, in position order.

Postgres is the source of truth; Kafka only carries what the store already holds. The relay
reads `position > checkpoint` in order, publishes, and advances its checkpoint only after
Kafka acknowledged every message of the batch. A crash or a broker error therefore means
republishing from the checkpoint: duplicates are possible (consumers dedupe by event id or
`(stream_id, version)`), losses are not.

Skipping is impossible because the event store serialises appends (see bus/store/eventstore.py):
positions become visible in commit order, so once the relay has seen position N nothing
lower can appear later.

Only one relay per name publishes at a time: `run` elects a leader with a session-level
advisory lock held on a connection kept for the whole term; the others wait and retry.

Order per partition holds for every successful pass. When a batch fails part-way, later
messages of a partition may already be written before the failed one; the retry repeats the
whole suffix in order, so a consumer can see version n+1 once before n, n+1 arrive again.
Consumers must dedupe by (stream_id, version) and not treat a gap as final.

The relay publishes with a plain aiokafka producer, not a FastStream publisher like the
rest of the Kafka layer (bus/kafka/broker.py). No guarantee forces this: FastStream's
`publish(no_confirm=True)` returns the same delivery future, so send-all-then-await-all
ordering would hold. What keeps it here for now: every event must carry the `traceparent`
stored with it, which FastStream's OpenTelemetry middleware would overwrite with a span of
the relay's (a broker without that middleware avoids it); and the producer has a lifecycle
of its own (created when leading, kept across failures, injected by the broker-outage test
with short timeouts). The event topics are declared as FastStream publishers for the
AsyncAPI document served at /schema/asyncapi.json (bus/kafka/spec.py); moving the sending
onto them was not done or measured in this round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bus.aio import Backoff, Stopped, sleep_unless_stopped, unless_stopped, wait_event
from bus.config.metrics import RELAY_LEADER as LEADER
from bus.config.metrics import RELAY_PUBLISH_ERRORS as PUBLISH_ERRORS
from bus.config.metrics import RELAY_PUBLISHED as PUBLISHED
from bus.config.metrics import RELAY_PUBLISHED_POSITION as PUBLISHED_POSITION
from bus.config.settings import Settings
from bus.kafka.clients import headers, make_producer
from bus.store.db import keeps_session_state
from bus.store.eventstore import NOTIFY_CHANNEL, PostgresEventStore
from domain.events import RecordedEvent

log = structlog.get_logger(__name__)

# Leader election key: the two-int advisory lock (RELAY_LOCK, hashtext(name)), so relays of
# different names do not block each other. 727_00x is the project's advisory lock range.
RELAY_LOCK = 727_003

# Metrics are defined in bus/config/metrics.py; the lag itself (cairn_relay_lag_events) is
# computed by the api's /metrics from the checkpoint table, so it is visible whichever
# process runs the relay.

# Bigger batches than aiokafka's 16 KiB default: the relay sends hundreds of small messages
# per partition back to back, and with one request in flight per partition a small batch
# size turns into one round trip per ~40 events (measured: ~2x throughput on the embedded
# broker). Still well under make_producer's max_request_size.
PRODUCER_OPTIONS: dict[str, object] = {"max_batch_size": 1024 * 1024}

# Postgres gone or the leader connection lost: step down, back off, run the election again.
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


# The relay lingers between passes (Kafka's linger.ms, decided per pass): after a pass that
# published at least `relay_linger_from` events it waits `relay_linger_ms` before the next,
# and what was appended meanwhile goes together in that next pass. A pass that follows an
# idle moment is never delayed, so a lone event is published at once.
#
# Against a real Kafka (the settings' default, 20 ms after a pass of 16 events or more) it
# is for throughput: a pass costs the same whatever it carries (a checkpoint write, an
# announcement, a produce request per partition, and downstream a fetch, a transaction and
# an offset commit in each consumer). Measured (just bench bus.append_rate, 32 writers,
# 2 vCPUs): CPU per appended event over the whole system 0.45 -> 0.36 ms, appends 4,059 ->
# 5,605/s.
#
# On the embedded broker (`cairn up`: EMBEDDED_LINGER_MS after every pass) it is also for
# the broker's age: Tansu's memory engine keeps every produce batch as an object of its own
# and lists all of a partition's objects on every fetch that finds new records there
# (bus/actors/recycle.py), and the event topics are never emptied. A stream of events one
# at a time (an upload's chunks, commands in sequence) made one batch per event, and each
# consumer's fetch cost more with every one. Measured (`python -m tests.bench.command_aging`
# shape, 12,000 new-upload commands one at a time, 2026-12-05): without the linger the
# round trip's p99 went 17.6 -> 37.4 ms and the broker's CPU per command 2.39 -> 5.55 ms
# from the first 2,000 commands to the last; lingering 100 ms after every pass, 15.3 ->
# 17.1 ms and 2.12 -> 2.53 ms. What it costs: an event of a stream reaches the Kafka
# consumers up to 100 ms later, while they fetch every 200 ms there anyway
# (bus/kafka/broker.py `fetch_max_wait_ms`); live events (SSE, WebSocket) and command
# replies do not go through the relay.
EMBEDDED_LINGER_MS = 100
EMBEDDED_LINGER_FROM = 1

# NOTIFYed after each pass that published events (bus/actors/wake.py: the projector's and
# the handlers' idle gates LISTEN on it).
PUBLISHED_CHANNEL = "cairn_published"


def event_message(
    settings: Settings, ev: RecordedEvent
) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) of one event, as fixed by API.md."""
    hdrs = headers(
        **{
            "event-id": ev.id,
            "event-type": ev.type,
            "traceparent": ev.traceparent,
            "schema-version": str(ev.schema_version),
            "content-type": "application/json",
        }
    )
    return (
        settings.topic(ev.aggregate),
        ev.aggregate_id.encode(),
        orjson.dumps(ev.envelope()),
        hdrs,
    )


def _retrieve(fut: asyncio.Future[object]) -> None:
    """Mark a delivery outcome as seen: we gave up on this batch and retry from the checkpoint."""
    if not fut.cancelled():
        fut.exception()


async def send_batch(
    producer: AIOKafkaProducer, settings: Settings, events: Sequence[RecordedEvent]
) -> None:
    """Send every event, then wait for every acknowledgement; raise if any failed.

    Sending all before awaiting lets aiokafka batch per partition; it keeps one request in
    flight per partition, so the order of `send` calls is the order in each partition.
    """
    futures: list[asyncio.Future[object]] = []
    try:
        for ev in events:
            topic, key, value, hdrs = event_message(settings, ev)
            futures.append(await producer.send(topic, value=value, key=key, headers=hdrs))
        # asyncio.wait, not gather: a cancelled caller must not cancel aiokafka's futures.
        await asyncio.wait(futures)
    except BaseException:
        for f in futures:
            f.add_done_callback(_retrieve)
        raise
    for f in futures:
        exc = f.exception()
        if exc is not None:
            for other in futures:
                _retrieve(other)
            raise exc


class Relay:
    """Publishes the event store to Kafka; `run` is the long-lived loop, one leader per name."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        *,
        name: str = "main",
        batch_size: int = 500,
        producer: AIOKafkaProducer | None = None,
        safety_interval: float = 2.0,
        election_interval: float = 1.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        linger: float | None = None,
        linger_from: int | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.name = name
        self.batch_size = batch_size
        self.safety_interval = safety_interval
        self.election_interval = election_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # From the settings unless given (tests pass their own).
        self.linger = settings.relay_linger_ms / 1000 if linger is None else linger
        self.linger_from = settings.relay_linger_from if linger_from is None else linger_from
        self.passes = 0  # passes that published something (observability, tests)
        self.lingered = 0  # passes followed by a linger
        self.is_leader = False
        self.kafka_failures = 0  # failed publish attempts of `run` (observability, tests)
        self._producer = producer
        self._store = PostgresEventStore(pool)
        # Serialises publish_pending within this process (the run loop and a direct call):
        # two interleaved batches would each read the same checkpoint and publish twice.
        self._publishing = asyncio.Lock()

    async def checkpoint(self) -> int:
        async with self.pool.acquire() as conn:
            pos = await conn.fetchval(
                "SELECT position FROM eventstore.relay_checkpoints WHERE name = $1", self.name
            )
        return int(pos or 0)

    async def _save_checkpoint(self, position: int) -> None:
        # GREATEST: the checkpoint only moves forward, even if another relay got further.
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO eventstore.relay_checkpoints (name, position) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET"
                " position = GREATEST(relay_checkpoints.position, EXCLUDED.position),"
                " updated_at = now()",
                self.name,
                position,
            )

    async def publish_pending(self) -> int:
        """Publish everything after the checkpoint now; return how many events were published.

        Raises on Kafka errors, leaving the checkpoint at the last fully acknowledged batch.
        Does not take part in leader election: call it only where no other relay of this name
        runs (tests, one-off CLI use), or accept duplicates.
        """
        async with self._publishing:
            own = self._producer is None
            producer = self._producer or make_producer(self.settings, **PRODUCER_OPTIONS)
            if own:
                await producer.start()
            try:
                return await self._publish_from_checkpoint(producer)
            finally:
                if own:
                    await producer.stop()

    async def _publish_from_checkpoint(self, producer: AIOKafkaProducer) -> int:
        total = 0
        checkpoint = await self.checkpoint()
        while True:
            batch = await self._store.read_all(checkpoint, self.batch_size)
            if not batch:
                break
            await send_batch(producer, self.settings, batch)
            # Only now, with every message of the batch acknowledged, may the checkpoint move.
            checkpoint = batch[-1].position
            await self._save_checkpoint(checkpoint)
            total += len(batch)
            PUBLISHED.labels(self.name).inc(len(batch))
            PUBLISHED_POSITION.labels(self.name).set(checkpoint)
        if total:
            self.passes += 1
            log.debug("relay.published", relay=self.name, events=total, checkpoint=checkpoint)
            # Idle consumers woke at the append and paused again after IDLE_AFTER; when this
            # pass came later than that (Kafka was down, a standby took over), they would
            # wait for their next peek. One NOTIFY per pass, not per event; the payload is
            # the relay's name. Only a hint: a failed one must not end this leadership term
            # (the checkpoint has moved; their peeks find the events).
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute("SELECT pg_notify($1, $2)", PUBLISHED_CHANNEL, self.name)
            except _DB_ERRORS as e:
                log.debug("relay.announce_failed", relay=self.name, error=repr(e))
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Publish continuously while leader, until `stop` is set."""
        own_producer = self._producer is None
        # One wake flag for notifications, stop and lost connections: a burst of NOTIFYs
        # coalesces into one more pass over `position > checkpoint`.
        wake = asyncio.Event()
        stop_watch = asyncio.create_task(self._wake_on_stop(stop, wake))
        backoff = Backoff(self.backoff_initial, self.backoff_max)
        try:
            while not stop.is_set():
                try:
                    leading = await self._term(stop, wake)
                except _DB_ERRORS as e:
                    log.warning("relay.db_error", relay=self.name, error=repr(e))
                    await sleep_unless_stopped(stop, backoff.next())
                    continue
                if leading:
                    backoff.reset()
                else:
                    await sleep_unless_stopped(stop, self.election_interval)
        finally:
            stop_watch.cancel()
            if own_producer and self._producer is not None:
                producer, self._producer = self._producer, None
                await producer.stop()

    @staticmethod
    async def _wake_on_stop(stop: asyncio.Event, wake: asyncio.Event) -> None:
        await stop.wait()
        wake.set()

    async def _term(self, stop: asyncio.Event, wake: asyncio.Event) -> bool:
        """One attempt at leadership; returns False at once if another relay leads."""
        async with self.pool.acquire() as conn:
            keeps_session_state(conn)
            # Session-level lock: held for as long as this connection lives, released by the
            # server if the process dies, so a crashed leader is replaced without intervention.
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", RELAY_LOCK, self.name
            )
            if not got:
                return False
            self.is_leader = True
            LEADER.labels(self.name).set(1)
            log.info("relay.leader", relay=self.name)

            def on_notify(*_: object) -> None:
                wake.set()

            def on_terminate(*_: object) -> None:
                wake.set()

            # LISTEN on the lock's own connection: if it dies we lose the lock and the
            # notifications together, and catch up from the checkpoint when leading again.
            conn.add_termination_listener(on_terminate)
            await conn.add_listener(NOTIFY_CHANNEL, on_notify)
            try:
                await self._lead(conn, stop, wake)
            finally:
                self.is_leader = False
                LEADER.labels(self.name).set(0)
                conn.remove_termination_listener(on_terminate)
                if not conn.is_closed():
                    with contextlib.suppress(*_DB_ERRORS):
                        await conn.remove_listener(NOTIFY_CHANNEL, on_notify)
                        await conn.execute(
                            "SELECT pg_advisory_unlock($1, hashtext($2))", RELAY_LOCK, self.name
                        )
            return True

    async def _lead(
        self, conn: asyncpg.Connection, stop: asyncio.Event, wake: asyncio.Event
    ) -> None:
        backoff = Backoff(self.backoff_initial, self.backoff_max)
        # Catch up at once: events may have been appended while nobody was leading.
        wake.set()
        while True:
            if not await wait_event(wake, self.safety_interval):
                # Safety tick: also proves the lock connection is alive (a silently dead TCP
                # connection would otherwise hold neither the lock nor the LISTEN).
                await conn.fetchval("SELECT 1")
            if stop.is_set():
                return
            if conn.is_closed():
                raise ConnectionError("relay leader connection lost")
            wake.clear()
            try:
                await self._ensure_producer()
                published = await self._publish_unless_stopped(stop)
            except KafkaError as e:
                self.kafka_failures += 1
                PUBLISH_ERRORS.labels(self.name).inc()
                delay = backoff.next()
                log.warning(
                    "relay.kafka_error", relay=self.name, error=repr(e), retry_in=round(delay, 2)
                )
                await sleep_unless_stopped(stop, delay)
                wake.set()  # retry from the checkpoint
            else:
                backoff.reset()
                if published >= self.linger_from and self.linger > 0:
                    # The linger (see the comment above EMBEDDED_LINGER_MS): appends that
                    # come meanwhile set `wake` and go together in the next pass.
                    self.lingered += 1
                    await sleep_unless_stopped(stop, self.linger)

    async def _ensure_producer(self) -> None:
        if self._producer is not None:
            return
        producer = make_producer(self.settings, **PRODUCER_OPTIONS)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def _publish_unless_stopped(self, stop: asyncio.Event) -> int:
        """publish_pending (how many it published), abandoned when `stop` is set (e.g. while
        Kafka is unreachable; then 0).

        Abandoning is safe: the checkpoint moves only after a fully acknowledged batch.
        """
        try:
            return await unless_stopped(self.publish_pending(), stop)
        except Stopped:
            return 0


async def rewind_all(conn: asyncpg.Connection) -> None:
    """Move every relay's checkpoint back to the start, for a broker that lost everything.

    The embedded broker keeps nothing across its restarts: with the checkpoints at 0 the
    relays republish the whole history (each re-reads its checkpoint on every pass) and the
    topics are complete again. Consumers dedupe by event id, so the repeats are harmless.
    """
    await conn.execute("UPDATE eventstore.relay_checkpoints SET position = 0")


async def replay(
    settings: Settings,
    pool: asyncpg.Pool,
    from_position: int,
    *,
    producer: AIOKafkaProducer | None = None,
    batch_size: int = 500,
) -> int:
    """Republish every event with position >= from_position, in order; return the count.

    For a broker that lost its data (the embedded one keeps nothing across restarts). The
    relay checkpoint is left alone: moving it forward could skip events below from_position
    that were never published, and moving it back would only duplicate work. Events appended
    during the replay are left to the relay.
    """
    store = PostgresEventStore(pool)
    async with pool.acquire() as conn:
        upto = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM eventstore.events"))
    own = producer is None
    prod = producer or make_producer(settings, **PRODUCER_OPTIONS)
    if own:
        await prod.start()
    count = 0
    after = from_position - 1
    try:
        while after < upto:
            batch = [e for e in await store.read_all(after, batch_size) if e.position <= upto]
            if not batch:
                break
            await send_batch(prod, settings, batch)
            count += len(batch)
            after = batch[-1].position
    finally:
        if own:
            await prod.stop()
    log.info("relay.replayed", from_position=from_position, upto=upto, events=count)
    return count
