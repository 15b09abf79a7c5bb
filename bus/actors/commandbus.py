"""Sending commands over Kafka and awaiting their outcome (the API side of the actor model).

A command goes to `{prefix}.commands.{aggregate}` keyed by aggregate id, so every command
for one aggregate lands on one partition and is handled by one actor at a time. The actor
answers on `{prefix}.replies`, on the partition the command names in its `reply-partition`
header. Each sender (a CommandBus) names one partition at a time: one picked at random when
it starts, then the next one every `REPLIES_PER_PARTITION` commands. It fetches only the
partitions it awaits replies on (no consumer group), from where it positioned them, and
resolves the future waiting on each command id; replies for other senders there are
ignored. A timeout does not mean failure: the command may still be applied, which is why
every command is idempotent and the caller gets 503 + Retry-After to retry.

Why not every sender reading every reply partition, as before: the embedded broker (Tansu's
memory engine) serves a fetch of new records in time that grows with the records that
partition holds (tests/bench/broker_aging.py), and it never trims a topic. With replies
spread over the topic's partitions by command id (two on the embedded broker), every
command's reply was fetched by every waiting sender from a partition holding half of all
replies ever sent, so commands got slower with the system's age. Now a reply is fetched by its sender (and any other sender on
that partition at the time), and every sender's replies, the API's many included, are
spread over all the partitions (`CAIRN_KAFKA_REPLY_PARTITIONS`, 16) as it moves on.

Both directions go through FastStream (bus/kafka/broker.py): commands through one declared
publisher per command topic, replies through a group-less subscriber on every reply
partition, all paused but those awaited, each positioned at its end before it is named.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, UnknownError
from faststream.kafka import TopicPartition as Assigned
from faststream.middlewares import AckPolicy

from bus.actors.fastreply import CHANNEL_HEADER, ON_THE_TOPIC, ReplyChannel
from bus.config import metrics
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.ids import uuid4_str
from bus.kafka.broker import (
    BATCH_TIMEOUT_MS,
    command_publishers,
    long_poll,
    make_broker,
    raw_records,
    subscriber_options,
)
from bus.kafka.clients import MAX_MESSAGE_BYTES, partition_count
from domain.commands import Command, command_to_dict
from domain.errors import DomainError, InvalidInput

log = get_logger(__name__)

# A command's body at most: the producer's limit less room for its headers and framing.
MAX_COMMAND_BYTES = MAX_MESSAGE_BYTES - 64 * 1024

# The header that names the reply partition, and how many commands a sender names one
# partition in before it moves to the next (see the module docstring). Moving costs one
# offset lookup; staying spreads a busy sender's replies less.
REPLY_PARTITION = "reply-partition"
REPLIES_PER_PARTITION = 1000
# With replies by NOTIFY (bus/actors/fastreply.py), how long a command waits for its reply
# there before its sender reads the reply topic too, and checks that its channel still
# listens. The actor host NOTIFYs instead of publishing on the reply topic, and says so by
# NOTIFY when a reply goes there after all (too long): the topic is read after this wait
# only for a host whose NOTIFY failed (it publishes the reply instead) or a host of an
# earlier version; under load many round trips are longer than this, and each then costs
# the broker a fetch every 10 ms of the partition while it waits.
KAFKA_FALLBACK_AFTER = 0.25

# How long a sender waits before each repeat of a publish the broker answered with an
# unknown error (what the embedded broker says in the moment a topic is recycled; one
# repeat after 10 ms found it back in every case measured).
PUBLISH_RETRIES = (0.01, 0.02, 0.05, 0.1, 0.2)

# A probe is a message on a command topic that the actor host answers at once without
# touching any aggregate: a round trip through Kafka and the actors that changes nothing,
# which is what readiness (/ready) means.
PROBE_TYPE = "cairn.probe"


class BusUnavailable(Exception):
    """Kafka could not take the command, or no answer came in time: retry later (503)."""

    def __init__(self, message: str, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class CommandResult:
    command_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] | None = None
    version: int = 0
    duplicate: bool = False
    # The replies of what the actor applied right after this command, in the same step
    # (domain.policies.follow_ups), each with its command_id; a refused one has ok false.
    follow_ups: list[dict[str, Any]] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        """True if this command appended events (False: it was already applied before)."""
        return bool(self.events) and not self.duplicate

    def followed_by(self, command_id: str) -> bool:
        """True if the command `command_id` was applied (now or before) as its follow-up."""
        return any(f.get("ok") and f.get("command_id") == command_id for f in self.follow_ups)


@dataclass(frozen=True)
class _Fallback:
    """What makes a command's reply come by the reply topic instead of NOTIFY."""

    read_topic: Callable[[], None]  # resume fetching the reply partition it named
    resend: Callable[[], Coroutine[Any, Any, None]]  # send it again, naming no channel


@dataclass(frozen=True)
class _Send:
    """One command's message with the headers that say where its reply goes (`where`);
    `again` sends it once more naming no channel (after the channel was lost)."""

    publisher: Any
    topic: str
    body: bytes
    key: bytes
    headers: dict[str, str]
    where: dict[str, str]

    async def __call__(self) -> Any:
        return await self._publish(self.where)

    async def again(self) -> None:
        await self._publish({k: v for k, v in self.where.items() if k != CHANNEL_HEADER})

    async def _publish(self, where: dict[str, str]) -> Any:
        headers = {**self.headers, **where}
        for delay in PUBLISH_RETRIES:
            try:
                return await self.publisher.publish(self.body, key=self.key, headers=headers)
            except UnknownError:
                # The embedded broker answers a produce that meets its topic being
                # recycled (bus/actors/recycle.py) with this unretriable code; the topic is
                # back a few milliseconds later. A repeat that lands twice is a duplicate
                # command id, applied once.
                metrics.COMMAND_PUBLISH_RETRIES.inc()
                await asyncio.sleep(delay)
        return await self.publisher.publish(self.body, key=self.key, headers=headers)


class Nudge(Protocol):
    """Wakes idle actor hosts (bus/actors/wake.py's Nudger)."""

    def __call__(self) -> None:
        """A command is coming."""

    def probe(self) -> None:
        """A readiness probe is coming."""

    def ring(self, topic: str, partition: int, offset: int) -> None:
        """A command is in the broker at `offset` of `partition`."""


class CommandBus:
    """Declared publishers for the command topics and a subscriber on the reply partitions,
    on one FastStream broker."""

    def __init__(
        self,
        settings: Settings,
        service: str = "api",
        *,
        nudge: Nudge | None = None,
        replies_per_partition: int = REPLIES_PER_PARTITION,
        pool: asyncpg.Pool | None = None,
    ) -> None:
        self.settings = settings
        # With a pool, replies also come by NOTIFY on a channel of this sender's
        # (bus/actors/fastreply.py), ahead of the embedded broker's fetch deadline.
        self._pool = pool
        self._channel: ReplyChannel | None = None
        # Called before each command (and probe) is sent: wakes an idle actor host
        # (bus/actors/wake.py).
        self._nudge = nudge
        # No OpenTelemetry middleware on the commands' publishes: each command carries the
        # sender's `traceparent` already (header and body, see `send`), which the actor host
        # continues, so the trace is whole without a producer span of FastStream's. That
        # span, made and ended on every command, was 7 % of the API's CPU per object PUT;
        # without it the API served 4.7 % more 4 KiB PUTs (issue 13, lean client, 4 runs each).
        self._broker = make_broker(settings, service, telemetry=False)
        self._commands = command_publishers(self._broker, settings)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # Sends by command id, while in flight (see `send`).
        self._sending: dict[str, asyncio.Future[CommandResult]] = {}
        self._partitions: list[TopicPartition] = []  # the reply topic's, known in `start`
        self._current: TopicPartition | None = None  # the one new commands name
        self._per_partition = max(1, replies_per_partition)
        self._named = 0  # commands that named the current one
        self._moving = False
        self._awaiting: dict[TopicPartition, int] = {}  # commands waiting, by partition
        self._fetching: dict[TopicPartition, int] = {}  # of them, those reading the topic
        # Commands that named the channel, by id: what makes their reply come by Kafka
        # instead (read the topic; and, when the channel was lost, send them again).
        self._by_channel: dict[str, _Fallback] = {}
        # Every command awaiting its reply, by id: sent again when its topic is recycled.
        self._in_flight: dict[str, _Send] = {}
        self._resends: set[asyncio.Task[None]] = set()
        self._consumer: AIOKafkaConsumer | None = None

    async def _on_replies(self, records: tuple[Any, ...]) -> None:
        for rec in records:
            self._resolve(rec.key.decode() if rec.key else "", rec.value, "kafka")

    def _by_notify(self, command_id: str, value: bytes) -> None:
        if value == ON_THE_TOPIC:
            # The host's pointer: this reply is on the reply topic (too long for NOTIFY).
            fallback = self._by_channel.get(command_id)
            if fallback is not None:
                fallback.read_topic()
            return
        self._resolve(command_id, value, "notify")

    def _channel_lost(self) -> None:
        """The channel's connection ended: notifications to it are lost. Every command that
        named it is sent again without it (same command id: the host applies it once and
        answers the repeat from what it appended), and its reply is read from the topic."""
        waiting = [
            fallback
            for command_id, fallback in self._by_channel.items()
            if (fut := self._pending.get(command_id)) is not None and not fut.done()
        ]
        for fallback in waiting:
            fallback.read_topic()
        self._resend("channel_lost", [fallback.resend() for fallback in waiting])

    def _recycled(self, topic: str) -> None:
        """The actor host recycled `topic` (bus/actors/recycle.py): a command sent there
        after its last fetch went with it. Every command awaited there is sent again, the
        same message: the host applies it once and answers a repeat from what it appended."""
        waiting = [
            send
            for command_id, send in self._in_flight.items()
            if send.topic == topic
            and (fut := self._pending.get(command_id)) is not None
            and not fut.done()
        ]
        self._resend("recycled", [self._send_again(send) for send in waiting])

    def _resend(self, why: str, sends: list[Coroutine[Any, Any, None]]) -> None:
        """Run `sends` (commands sent again) in the background, after a nudge so that an
        idle host wakes for them."""
        if not sends:
            return
        metrics.COMMANDS_RESENT.labels(why).inc(len(sends))
        if self._nudge is not None:
            self._nudge()
        for send in sends:
            task = asyncio.create_task(send)
            self._resends.add(task)
            task.add_done_callback(self._resent)

    async def _send_again(self, send: _Send) -> None:
        sent = await send()
        if self._nudge is not None:
            self._nudge.ring(sent.topic, sent.partition, sent.offset)

    def _resent(self, task: asyncio.Task[None]) -> None:
        self._resends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Its sender times out (503, retry): the same as a command that was never sent.
            log.warning("command not sent again", error=repr(task.exception()))

    def _resolve(self, command_id: str, value: bytes, via: str) -> None:
        """A reply, from the reply topic or by NOTIFY: the first one for a waiting command
        resolves it; the other (the same reply) finds it done."""
        fut = self._pending.get(command_id)
        if fut is not None and not fut.done():
            try:
                fut.set_result(orjson.loads(value))
            except orjson.JSONDecodeError:
                log.warning("bad reply", command_id=command_id)
                return
            metrics.COMMAND_REPLIES.labels(via).inc()

    def _reply_headers(self, tp: TopicPartition) -> dict[str, str]:
        """The headers that say where a command's reply goes: its partition of the reply
        topic, and the sender's channel while it listens."""
        headers = {REPLY_PARTITION: str(tp.partition)}
        if self._channel is not None and self._channel.usable():
            headers[CHANNEL_HEADER] = self._channel.name
        return headers

    async def start(self) -> None:
        # The topic's actual partition count, not the setting's: a topic created with
        # another count keeps it.
        topic = self.settings.reply_topic
        count = await partition_count(self.settings, topic)
        self._partitions = [TopicPartition(topic, p) for p in range(count)]
        # No consumer group (a manual assignment); nothing is committed. Positions are set
        # explicitly (the end, before a partition is named). The reset policy applies only
        # when that position vanishes, i.e. the broker lost the topic (the embedded one
        # restarted): then every reply on the new topic is after our commands' resumption,
        # and reading from its beginning cannot miss the one we wait for.
        # A batch subscriber: FastStream runs its middlewares (a consumer span, a log
        # context, metrics) once per fetched batch instead of once per reply; with many
        # commands in flight that was about a sixth of the API's event loop (issue 13).
        replies = long_poll(
            self._broker.subscriber(
                # declare=False: the topic is made by `cairn migrate` / ensure_topics, with
                # its partition count (a subscriber must not create it with the broker's
                # default).
                partitions=[Assigned(topic, p, declare=False) for p in range(count)],
                batch=True,
                group_id=None,
                ack_policy=AckPolicy.ACK_FIRST,
                max_records=500,
                batch_timeout_ms=BATCH_TIMEOUT_MS,
                decoder=raw_records,
                title="replies",
                **subscriber_options(self.settings, latency_critical=True),
            )
        )
        replies(self._on_replies)
        await self._broker.start()
        self._consumer = consumer = replies.consumer
        assert consumer is not None
        # Idle until a command is sent (see _awaiting_reply): an idle API or handlers
        # process then sends no fetches at all, instead of one every fetch wait (10 ms on
        # the embedded broker, which holds each fetch that long).
        consumer.pause(*self._partitions)
        first = random.choice(self._partitions)
        await self._position_at_end(first)
        self._current = first
        if self._pool is not None:
            self._channel = ReplyChannel(
                self._pool, self._by_notify, self._channel_lost, self._recycled
            )
            await self._channel.listen()

    async def _position_at_end(self, tp: TopicPartition) -> None:
        """Position a partition that nothing awaits at its end: *before* a command names
        it, so no reply to it can be missed, and the replies to others that arrived while
        it was not ours are skipped, not fetched."""
        assert self._consumer is not None
        await self._consumer.seek_to_end(tp)
        await self._consumer.position(tp)

    async def _reply_partition(self) -> TopicPartition:
        """The partition the next command names; every `REPLIES_PER_PARTITION` commands,
        the next one. The move happens before the switch: until the new partition is
        positioned, commands go on naming the old one."""
        assert self._current is not None, "CommandBus.start() was not called"
        if self._named >= self._per_partition and not self._moving:
            self._moving = True
            try:
                nxt = self._partitions[(self._current.partition + 1) % len(self._partitions)]
                # One that commands still await is fetched from where it is (with a single
                # partition, the current one): seeking could skip their replies.
                if not self._awaiting.get(nxt):
                    await self._position_at_end(nxt)
                self._current, self._named = nxt, 0
            except (KafkaError, OSError) as e:
                # Staying is always safe; the next command tries again.
                log.warning("reply partition not moved", error=str(e))
            finally:
                self._moving = False
        self._named += 1
        return self._current

    @contextlib.contextmanager
    def _awaiting_reply(
        self,
        tp: TopicPartition,
        fut: asyncio.Future[dict[str, Any]],
        send: _Send,
    ) -> Iterator[None]:
        """Fetch replies from `tp` while at least one command waits for its reply there.

        Resumed before the command is sent, so its reply (produced after it) is after the
        paused position and cannot be missed; paused again when the last one is answered.
        Replies for other senders that arrived meanwhile are read past on the next resume.

        A command that names the channel (`send.where`) gets its reply by NOTIFY, and none on
        the topic: the partition stays paused, and the embedded broker is spared a fetch
        every 10 ms per waiting sender. It is read when the host says by NOTIFY that the
        reply went there (too long), when the channel is lost (the command is then sent
        again, see _channel_lost), or when no reply came `KAFKA_FALLBACK_AFTER` seconds
        after the command was sent (a host whose NOTIFY failed, or of an earlier version);
        then the channel is also checked, since a connection can die without a word.
        """
        assert self._consumer is not None
        self._awaiting[tp] = self._awaiting.get(tp, 0) + 1
        fetching = False

        def fetch() -> None:
            nonlocal fetching
            if fetching or fut.done():
                return
            fetching = True
            if not self._fetching.get(tp):
                assert self._consumer is not None
                self._consumer.resume(tp)
            self._fetching[tp] = self._fetching.get(tp, 0) + 1

        later = None
        command_id = send.headers["command-id"]
        self._in_flight[command_id] = send
        named = CHANNEL_HEADER in send.where
        if named:
            self._by_channel[command_id] = _Fallback(fetch, send.again)

            def overdue() -> None:
                fetch()
                if self._channel is not None:
                    self._channel.check()

            later = asyncio.get_running_loop().call_later(KAFKA_FALLBACK_AFTER, overdue)
        else:
            fetch()
        try:
            yield
        finally:
            if later is not None:
                later.cancel()
            self._in_flight.pop(command_id, None)
            if named:
                self._by_channel.pop(command_id, None)
            self._awaiting[tp] -= 1
            if fetching:
                self._fetching[tp] -= 1
                if not self._fetching[tp]:
                    self._consumer.pause(tp)

    def _sender(
        self, aggregate: str, body: bytes, key: bytes, headers: dict[str, str], tp: TopicPartition
    ) -> _Send:
        return _Send(
            self._commands[aggregate],
            self.settings.command_topic(aggregate),
            body,
            key,
            headers,
            self._reply_headers(tp),
        )

    async def stop(self) -> None:
        for task in list(self._resends):
            task.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BusUnavailable("shutting down"))
        if self._channel is not None:
            await self._channel.close()
        await self._broker.stop()

    async def ping(self) -> None:
        if not await self._broker.ping(timeout=5):
            raise ConnectionError("Kafka is not reachable")

    async def probe(self, timeout: float = 5.0) -> None:
        """Send a probe through the actors and await its answer; BusUnavailable if none."""
        assert self._consumer is not None, "CommandBus.start() was not called"
        command_id = f"probe-{uuid.uuid4()}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = fut
        try:
            # A probe's nudge makes an idle actor host peek, not wake: readiness polling
            # must not keep it awake (see bus/actors/wake.py).
            tp = await self._reply_partition()
            headers = {"command-id": command_id, "command-type": PROBE_TYPE}
            send = self._sender(
                "uploads",
                orjson.dumps({"probe": True, "command_id": command_id}),
                command_id.encode(),
                headers,
                tp,
            )
            with self._awaiting_reply(tp, fut, send):
                if self._nudge is not None:
                    self._nudge.probe()
                async with asyncio.timeout(timeout):
                    sent = await send()
                if self._nudge is not None:
                    self._nudge.ring(sent.topic, sent.partition, sent.offset)
                async with asyncio.timeout(timeout):
                    reply = await fut
        except (KafkaError, TimeoutError, OSError) as e:
            raise BusUnavailable(f"no command round trip: {type(e).__name__}") from e
        finally:
            self._pending.pop(command_id, None)
        if not reply.get("ok"):
            raise BusUnavailable("the actors refused the probe")

    async def send(
        self,
        cmd: Command,
        *,
        correlation_id: str | None = None,
        traceparent: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Send `cmd` and wait for the actor's answer. Raises DomainError or BusUnavailable.

        A command whose id is already on its way from this process (ids derived from what
        they do, such as an upload's file: concurrent requests send the same one) is not
        sent again: the caller shares the answer of the one in flight. Replies are matched
        to their waiter by command id, so two in flight under one id would leave one
        waiter without an answer until it timed out (503)."""
        assert self._consumer is not None, "CommandBus.start() was not called"
        if not cmd.command_id:
            return await self._send_once(cmd, uuid4_str(), correlation_id, traceparent, timeout)
        running = self._sending.get(cmd.command_id)
        if running is None:
            running = asyncio.ensure_future(
                self._send_once(cmd, cmd.command_id, correlation_id, traceparent, timeout)
            )
            self._sending[cmd.command_id] = running
            running.add_done_callback(functools.partial(self._forget_sending, cmd.command_id))
        # Shielded: a caller that goes away (its request cancelled) must not cancel the
        # send the others wait for; it finishes on its own.
        return await asyncio.shield(running)

    def _forget_sending(self, command_id: str, done: asyncio.Future[CommandResult]) -> None:
        if self._sending.get(command_id) is done:
            del self._sending[command_id]
        if not done.cancelled():
            done.exception()  # retrieved: nobody may be left to await it

    async def _send_once(
        self,
        cmd: Command,
        command_id: str,
        correlation_id: str | None,
        traceparent: str | None,
        timeout: float | None,
    ) -> CommandResult:
        body = command_to_dict(cmd)
        body["command_id"] = command_id
        body["correlation_id"] = correlation_id or command_id
        body["traceparent"] = traceparent
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = fut
        limit = timeout or self.settings.command_timeout
        timer = metrics.CommandTimer(cmd.type)
        try:
            tp = await self._reply_partition()
            headers = {
                "command-id": command_id,
                "command-type": cmd.type,
                **({"traceparent": traceparent} if traceparent else {}),
            }
            payload = orjson.dumps(body)
            if len(payload) > MAX_COMMAND_BYTES:
                # The broker would refuse it (the producer's request limit): a request too
                # big for one command is the client's to shrink, not an outage (503).
                raise InvalidInput(
                    "request_too_large",
                    "the request is too large for one command",
                    {"max_bytes": MAX_COMMAND_BYTES, "bytes": len(payload)},
                )
            send = self._sender(cmd.aggregate, payload, cmd.aggregate_id.encode(), headers, tp)
            with self._awaiting_reply(tp, fut, send):
                if self._nudge is not None:
                    self._nudge()
                try:
                    async with asyncio.timeout(limit):
                        sent = await send()
                except (KafkaError, TimeoutError, OSError) as e:
                    timer.done("unavailable")
                    raise BusUnavailable(f"the command bus is unavailable: {e}") from e
                if self._nudge is not None:
                    self._nudge.ring(sent.topic, sent.partition, sent.offset)
                try:
                    async with asyncio.timeout(limit):
                        reply = await fut
                except TimeoutError as e:
                    timer.done("unavailable")
                    raise BusUnavailable("no answer from the actors in time; retry", 1) from e
        finally:
            self._pending.pop(command_id, None)
        timer.done("ok" if reply.get("ok") else "refused")
        if not reply.get("ok"):
            raise DomainError.from_dict(reply["error"])
        return CommandResult(
            command_id=command_id,
            events=list(reply.get("events") or []),
            state=reply.get("state"),
            version=int(reply.get("version") or 0),
            duplicate=bool(reply.get("duplicate")),
            follow_ups=list(reply.get("follow_ups") or []),
        )
