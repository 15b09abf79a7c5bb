"""Replies through Postgres NOTIFY as well as Kafka: the fast way back to the sender.

A command's reply goes to the reply topic (bus/actors/commandbus.py). On a broker that
holds every fetch until its deadline (the embedded Tansu, 10 ms), the sender's reply
consumer sees it only at its next fetch deadline, so the reply hop alone costs 0-10 ms of
waiting, and a reply that just misses a deadline waits a whole cycle (measured: the native
chunk PUT's StoreChunk took 14-20 ms at p50, in two modes ~10 ms apart). The actor host
therefore also NOTIFYs the reply on `CHANNEL` once it is sent to Kafka; every sender
LISTENs there (the reconnecting `Listener` of bus/store/feed.py) and resolves its waiting
command from whichever copy comes first. Postgres delivers a notification in well under a
millisecond.

Best effort, never the only copy: the Kafka reply is still sent and still awaited, so a
lost notification (a LISTEN connection that dropped, a payload over Postgres' 8000-byte
limit, a sender without a database) only makes that reply slower. A command's outcome is
durable before either copy goes out, so neither can announce something that is then lost.

Payload: the command id, a newline, then the reply JSON (the id first, so that a listener
skips other senders' replies without parsing them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

from bus.config.logs import get_logger

log = get_logger(__name__)

CHANNEL = "cairn_replies"
# Postgres refuses a NOTIFY payload of 8000 bytes or more; such replies go by Kafka only.
MAX_PAYLOAD = 7900


def encode(command_id: bytes, reply: bytes) -> str | None:
    """The notification for one reply, or None if it is too big to notify."""
    if len(command_id) + 1 + len(reply) > MAX_PAYLOAD:
        return None
    return f"{command_id.decode()}\n{reply.decode()}"


def decode(payload: str) -> tuple[str, Callable[[], dict[str, Any]]]:
    """The command id and a parser for the reply (parse only if somebody waits for it)."""
    command_id, _, body = payload.partition("\n")
    return command_id, lambda: orjson.loads(body)


class ReplyAnnouncer:
    """The actor host's side: NOTIFY one reply."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def announce(self, payload: str) -> None:
        """NOTIFY `payload`; a failure is logged, never raised: the Kafka copy of this reply
        is on its way."""
        try:
            await self.pool.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        except Exception as e:
            log.debug("reply notification failed", error=repr(e))
