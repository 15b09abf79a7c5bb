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
  reply is only made from the durable outcome), and publishes it on the reply topic as
  before. Kafka keeps carrying every reply: it is what a sender without Postgres, or whose
  LISTEN connection was lost, still gets. Whichever arrives first resolves the wait; the
  other finds no one waiting (both say the same: a reply is a function of the outcome).
- NOTIFY carries at most 8,000 bytes: a longer reply goes by Kafka only.

Notifications are sent in batches, like the event store's group commit: a lone reply goes
at once, replies that come while a batch is being sent go together in the next one (one
statement for many senders' channels), so a busy host pays one round trip per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from bus.config.logs import get_logger
from bus.store import db

log = get_logger(__name__)

CHANNEL_HEADER = "reply-channel"
# Postgres refuses a NOTIFY payload of 8,000 bytes or more; room for the command id.
MAX_PAYLOAD = 7_900
# A sender whose LISTEN connection was lost tries again at most this often (meanwhile its
# replies come by Kafka).
RELISTEN_EVERY = 5.0
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

    def __init__(self, pool: asyncpg.Pool, on_reply: Callable[[str, bytes], None]) -> None:
        self.pool = pool
        self.name = f"cairn_reply_{uuid.uuid4().hex}"
        self._on_reply = on_reply
        self._conn: Any = None
        self._listening = False
        self._last_try = float("-inf")
        self._task: asyncio.Task[None] | None = None

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
            self._conn = await db.listen(self.pool, (self.name,), self._on_notify, self._on_lost)
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
        command_id, _, body = payload.partition("\n")
        self._on_reply(command_id, body.encode())

    def _on_lost(self, conn: Any) -> None:
        # Commands stop naming the channel at once; a later send tries to listen again.
        self._listening = False

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._listening = False
        if conn is not None:
            await db.unlisten(self.pool, conn, (self.name,), self._on_notify)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self._drop()


class ReplyNotifier:
    """The actor host's side: NOTIFY replies to the channels their commands name, in
    batches (see the module docstring). Best effort, like the Kafka reply: a failure is
    logged, and the sender still gets the Kafka one."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._queue: list[tuple[str, str]] = []
        self._flushing: asyncio.Task[None] | None = None
        self.statements = 0  # NOTIFY statements sent (tests read it)

    def send(self, channel: str | None, command_id: str, reply: bytes) -> bool:
        """Queue `reply` for `channel`; False if it cannot go this way (no valid channel,
        or too long)."""
        if not valid_channel(channel) or len(reply) + len(command_id) + 1 > MAX_PAYLOAD:
            return False
        assert channel is not None
        self._queue.append((channel, f"{command_id}\n{reply.decode()}"))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return True

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self.pool.execute(_NOTIFY, [c for c, _ in batch], [p for _, p in batch])
                    self.statements += 1
                except Exception as e:
                    log.warning("reply notifications not sent", error=repr(e), count=len(batch))
        finally:
            self._flushing = None

    async def close(self) -> None:
        """Send what is queued."""
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
