"""Sending commands over Kafka and awaiting their outcome (the API side of the actor model).

A command goes to `{prefix}.commands.{aggregate}` keyed by aggregate id, so every command
for one aggregate lands on one partition and is handled by one actor at a time. The actor
answers on `{prefix}.replies`; every API instance reads all reply partitions (no consumer
group) from the end and resolves the future waiting on that command id. Replies for other
instances are ignored. A timeout does not mean failure: the command may still be applied,
which is why every command is idempotent and the caller gets 503 + Retry-After to retry.

Both directions go through FastStream (bus/kafka/broker.py): commands through one declared
publisher per command topic, replies through a group-less subscriber on every reply
partition, positioned at the end before the first command can be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faststream.middlewares import AckPolicy

from bus.config import metrics
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.kafka.broker import command_publishers, make_broker, raw_records, subscriber_options
from domain.commands import Command, command_to_dict
from domain.errors import DomainError

log = get_logger(__name__)

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


class Nudge(Protocol):
    """Wakes idle actor hosts (bus/actors/wake.py's Nudger)."""

    def __call__(self) -> None:
        """A command is coming."""

    def probe(self) -> None:
        """A readiness probe is coming."""


class CommandBus:
    """Declared publishers for the command topics and a subscriber on every reply partition,
    on one FastStream broker."""

    def __init__(
        self,
        settings: Settings,
        service: str = "api",
        *,
        nudge: Nudge | None = None,
    ) -> None:
        self.settings = settings
        # Called before each command (and probe) is sent: wakes an idle actor host
        # (bus/actors/wake.py).
        self._nudge = nudge
        self._broker = make_broker(settings, service)
        self._commands = command_publishers(self._broker, settings)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reply_partitions_assigned: list[TopicPartition] = []
        self._awaiting = 0  # commands and probes waiting for a reply
        self._consumer: AIOKafkaConsumer | None = None
        # No consumer group: every instance reads every reply partition (aiokafka assigns
        # all partitions of the topic to a group-less subscription); nothing is committed.
        # The start position is set explicitly in `start` (the end). The reset policy
        # applies only when that position vanishes, i.e. the broker lost the topic (the
        # embedded one restarted): then every reply on the new topic is after our
        # commands' resumption, and reading from its beginning cannot miss the one we
        # wait for.
        self._replies = self._broker.subscriber(
            settings.reply_topic,
            group_id=None,
            ack_policy=AckPolicy.ACK_FIRST,
            decoder=raw_records,
            title="replies",
            **subscriber_options(settings, latency_critical=True),
        )
        self._replies(self._on_reply)

    async def _on_reply(self, rec: Any) -> None:
        cid = rec.key.decode() if rec.key else None
        fut = self._pending.get(cid or "")
        if fut is not None and not fut.done():
            try:
                fut.set_result(orjson.loads(rec.value))
            except orjson.JSONDecodeError:
                log.warning("bad reply", command_id=cid)

    async def start(self) -> None:
        await self._broker.start()
        self._consumer = consumer = self._replies.consumer
        assert consumer is not None
        tps = await self._reply_partitions(consumer)
        # Position at the end *before* any command is sent, so no reply can be missed.
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        # Idle until a command is sent (see _awaiting_reply): an idle API or handlers
        # process then sends no fetches at all, instead of one every fetch wait (10 ms on
        # the embedded broker, which holds each fetch that long).
        self._reply_partitions_assigned = tps
        consumer.pause(*tps)

    async def _reply_partitions(
        self, consumer: AIOKafkaConsumer, timeout: float = 30.0
    ) -> list[TopicPartition]:
        """Every partition of the reply topic, once assigned. Reading only some would miss
        most replies, so wait for the topic's metadata (it may be created a moment after we
        start) and fail loudly rather than guess."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            parts = consumer.partitions_for_topic(self.settings.reply_topic)
            assigned = consumer.assignment()
            if parts and len(assigned) == len(parts):
                return sorted(assigned)
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"topic {self.settings.reply_topic} does not exist (run `cairn migrate` / create topics)"
                )
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)

    @contextlib.contextmanager
    def _awaiting_reply(self) -> Iterator[None]:
        """Fetch replies while at least one command waits for its reply.

        Resumed before the command is sent, so its reply (produced after it) is after the
        paused position and cannot be missed; paused again when the last one is answered.
        Replies for other instances that arrived meanwhile are read past on the next resume.
        """
        assert self._consumer is not None
        if self._awaiting == 0:
            self._consumer.resume(*self._reply_partitions_assigned)
        self._awaiting += 1
        try:
            yield
        finally:
            self._awaiting -= 1
            if self._awaiting == 0:
                self._consumer.pause(*self._reply_partitions_assigned)

    async def stop(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BusUnavailable("shutting down"))
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
            with self._awaiting_reply():
                if self._nudge is not None:
                    self._nudge.probe()
                await asyncio.wait_for(
                    self._commands["uploads"].publish(
                        orjson.dumps({"probe": True, "command_id": command_id}),
                        key=command_id.encode(),
                        headers={"command-id": command_id, "command-type": PROBE_TYPE},
                    ),
                    timeout,
                )
                reply = await asyncio.wait_for(fut, timeout)
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
        """Send `cmd` and wait for the actor's answer. Raises DomainError or BusUnavailable."""
        assert self._consumer is not None, "CommandBus.start() was not called"
        command_id = cmd.command_id or str(uuid.uuid4())
        body = command_to_dict(cmd)
        body["command_id"] = command_id
        body["correlation_id"] = correlation_id or command_id
        body["traceparent"] = traceparent
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = fut
        limit = timeout or self.settings.command_timeout
        timer = metrics.CommandTimer(cmd.type)
        try:
            with self._awaiting_reply():
                if self._nudge is not None:
                    self._nudge()
                try:
                    await asyncio.wait_for(
                        self._commands[cmd.aggregate].publish(
                            orjson.dumps(body),
                            key=cmd.aggregate_id.encode(),
                            headers={
                                "command-id": command_id,
                                "command-type": cmd.type,
                                **({"traceparent": traceparent} if traceparent else {}),
                            },
                        ),
                        limit,
                    )
                except (KafkaError, TimeoutError, OSError) as e:
                    timer.done("unavailable")
                    raise BusUnavailable(f"the command bus is unavailable: {e}") from e
                try:
                    reply = await asyncio.wait_for(fut, limit)
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
