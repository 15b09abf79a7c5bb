"""Replies by Postgres NOTIFY, beside the reply topic: an answer reaches its sender as soon
as the actor has it, not at the embedded broker's next fetch deadline.

The embedded broker (Tansu) holds every fetch until its deadline (10 ms, see
bus/kafka/clients.py), so a reply waited up to that long, 5 ms on average, between the
actor producing it and the sender's fetch returning it: a quarter of a quiet command round
trip and most of its spread. Every Cairn process that sends commands already holds a
Postgres pool, and so does the actor host.

- The sender (`ReplyChannel`) LISTENs on a channel of its own and names it in each
  command's `reply-channel` header.
- The actor host (`ReplyNotifier`) NOTIFYs the reply there once the command is applied (a
  reply is only made from the durable outcome), and publishes nothing on the reply topic:
  that record cost the host a produce and the broker a fetch and memory (the embedded one
  keeps every record) for a copy that arrived after the NOTIFY nearly every time. The
  reply topic carries the replies of senders that name no channel (no Postgres, or their
  channel was lost), a reply whose NOTIFY failed (the host publishes it then), and a reply
  too long for NOTIFY (8,000 bytes), which the host points to with an empty NOTIFY so that
  its sender reads the topic at once.
- A sender whose LISTEN connection ends (its termination callback) sends every command
  that named the channel again, without it: the same command id, so the host applies it
  once and answers the repeat by Kafka from the events it appended (a duplicate). A
  connection that dies silently is found by a check when a reply is late
  (bus/actors/commandbus.py, KAFKA_FALLBACK_AFTER), which then counts as the end.

Notifications are sent in batches (bus.aio.GroupFlush), like the event store's group
commit: a lone reply goes at once, replies that come while a batch is being sent go
together in the next one (one statement for many senders' channels), so a busy host pays
one round trip per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from bus.actors.recycle import RECYCLED_CHANNEL
from bus.aio import GroupFlush
from bus.config.logs import get_logger
from bus.store import db

log = get_logger(__name__)

CHANNEL_HEADER = "reply-channel"
# Postgres refuses a NOTIFY payload of 8,000 bytes or more; room for the command id.
MAX_PAYLOAD = 7_900
# A sender whose LISTEN connection was lost tries again at most this often (meanwhile its
# replies come by Kafka).
RELISTEN_EVERY = 5.0
# A late reply makes the sender check that its channel's connection is alive, at most this
# often, each check given CHECK_TIMEOUT to answer.
CHECK_EVERY = 1.0
CHECK_TIMEOUT = 2.0
# The body of a NOTIFY that says the reply is on the reply topic.
ON_THE_TOPIC = b""
_NOTIFY = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)"


def valid_channel(name: str | None) -> bool:
    """A channel this module makes (`cairn_reply_` + 32 hex digits): a header naming
    anything else is ignored, so a command cannot make the host NOTIFY another channel."""
    return (
        name is not None
        and len(name) == 44
        and name.startswith("cairn_reply_")
        and all(c in "0123456789abcdef" for c in name[12:])
    )


class ReplyChannel:
    """The sender's side: LISTEN on a channel of its own; `on_reply(command_id, body)` for
    each reply that arrives there."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        on_reply: Callable[[str, bytes], None],
        on_lost: Callable[[], None] | None = None,
        on_recycled: Callable[[str], None] | None = None,
    ) -> None:
        self.pool = pool
        self.name = f"cairn_reply_{uuid.uuid4().hex}"
        self._on_reply = on_reply
        self._on_lost_cb = on_lost
        # Also the command topics' recycling (bus/actors/recycle.py), on the same connection.
        self._on_recycled = on_recycled
        self._channels = (self.name,) + ((RECYCLED_CHANNEL,) if on_recycled else ())
        self._conn: Any = None
        self._listening = False
        self._last_try = float("-inf")
        self._last_check = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._checking: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """True while notifications can arrive."""
        return self._listening

    def usable(self) -> bool:
        """True if commands may name the channel now (it is listening). If not, it tries to
        listen again in the background, at most every RELISTEN_EVERY seconds."""
        if not self._listening and self._task is None:
            if time.monotonic() - self._last_try >= RELISTEN_EVERY:
                self._task = asyncio.create_task(self._relisten())
        return self._listening

    async def listen(self) -> bool:
        """LISTEN on a connection of its own; False (replies by Kafka only) if it fails."""
        self._last_try = time.monotonic()
        try:
            self._conn = await db.listen(self.pool, self._channels, self._on_notify, self._on_lost)
        except Exception as e:
            log.warning("reply channel not listening", error=repr(e))
            return False
        self._listening = True
        return True

    async def _relisten(self) -> None:
        try:
            await self._drop()
            await self.listen()
        finally:
            self._task = None

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if channel == RECYCLED_CHANNEL:
            if self._on_recycled is not None:
                self._on_recycled(payload)
            return
        command_id, _, body = payload.partition("\n")
        self._on_reply(command_id, body.encode())

    def _on_lost(self, conn: Any) -> None:
        # Commands stop naming the channel at once; a later send tries to listen again.
        if conn is not self._conn or not self._listening:
            return
        self._listening = False
        if self._on_lost_cb is not None:
            self._on_lost_cb()

    def check(self) -> None:
        """Make sure the connection still answers (at most every CHECK_EVERY seconds, in the
        background); one that does not counts as lost."""
        now = time.monotonic()
        if not self._listening or self._checking is not None:
            return
        if now - self._last_check < CHECK_EVERY:
            return
        self._last_check = now
        self._checking = asyncio.create_task(self._check(self._conn))

    async def _check(self, conn: Any) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await conn.fetchval("SELECT 1")
        except Exception as e:
            log.warning("reply channel lost", error=repr(e))
            self._on_lost(conn)
        finally:
            self._checking = None

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._listening = False
        if conn is not None:
            await db.unlisten(self.pool, conn, self._channels, self._on_notify, self._on_lost)

    async def close(self) -> None:
        for task in (self._task, self._checking):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self._drop()


class ReplyNotifier:
    """The actor host's side: NOTIFY replies to the channels their commands name, in
    batches (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Cancelled mid-flush (the host stopping): what was not sent goes by Kafka.
        self._notes: GroupFlush[tuple[str, str], bool] = GroupFlush(
            self._notify, abandon=lambda done: done.set_result(False)
        )
        self.statements = 0  # NOTIFY statements sent (tests read it)

    def send(
        self, channel: str | None, command_id: str, reply: bytes
    ) -> asyncio.Future[bool] | None:
        """Queue `reply` for `channel`: a future that says whether the NOTIFY went out
        (True) or failed (False: publish the reply on the topic). None if it cannot go
        this way: no valid channel, or too long (then the sender is told by an empty
        NOTIFY to read the topic, where the caller publishes it)."""
        if not valid_channel(channel):
            return None
        assert channel is not None
        if len(reply) + len(command_id) + 1 > MAX_PAYLOAD:
            self._notes.submit((channel, f"{command_id}\n{ON_THE_TOPIC.decode()}"))
            return None
        return self._notes.submit((channel, f"{command_id}\n{reply.decode()}"))

    async def _notify(self, batch: list[tuple[str, str]]) -> bool:
        try:
            await self.pool.execute(_NOTIFY, [c for c, _ in batch], [p for _, p in batch])
        except Exception as e:
            # Then the host publishes these replies on the topic, which their senders read
            # once a reply is late.
            log.warning("reply notifications not sent", error=repr(e), count=len(batch))
            return False
        self.statements += 1
        return True

    async def close(self) -> None:
        """Send what is queued."""
        await self._notes.drain()
