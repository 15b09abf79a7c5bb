"""The event store as a live feed: wake-ups from Postgres NOTIFY, events read by position.

Why read the store rather than consume Kafka for live streams (issue 8 leaves the choice):
every append already sends `NOTIFY cairn_events` in its transaction, and positions become
visible strictly in commit order (the append lock, see eventstore.py). So one LISTEN
connection plus `position > head` reads gives the API a feed that is totally ordered, has no
gaps, never depends on what the broker still holds, and uses the very same query that
resumes a client from `Last-Event-ID`: the hand-over from history to live needs no second
source to reconcile, only a comparison of positions. (Kafka would give per-partition order
only, and a resume older than the topic's retention would need the store anyway.)

A notification is a wake-up first: notifications may coalesce or be lost while the LISTEN
connection reconnects, so the reader also polls every `poll_interval` seconds and always
reads everything after the last position it saw. Its payload (the append's last position)
is only a hint for a reader with no one to hand events to (api/events/fanout.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bus.config.logs import get_logger
from bus.store.eventstore import _COLUMNS, NOTIFY_CHANNEL, _row_to_event
from domain.events import STREAM_PREFIXES, RecordedEvent

log = get_logger(__name__)


@dataclass(frozen=True)
class Selector:
    """Which events a reader may and wants to see. Empty sets mean "any"; `owner` None means
    every owner (admins). Applied both in SQL (history) and in memory (live)."""

    owner: str | None = None
    aggregates: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    streams: frozenset[str] = frozenset()

    def matches(self, ev: RecordedEvent) -> bool:
        if self.owner is not None and ev.owner != self.owner:
            return False
        if self.streams and ev.stream_id not in self.streams:
            return False
        if self.types and ev.type not in self.types:
            return False
        return not self.aggregates or ev.aggregate in self.aggregates

    def where(self, args: list[Any]) -> str:
        """SQL conditions (ANDed), appending their parameters to `args`."""
        conds = []
        if self.owner is not None:
            args.append(self.owner)
            conds.append(f"owner = ${len(args)}")
        if self.streams:
            args.append(sorted(self.streams))
            conds.append(f"stream_id = ANY(${len(args)}::text[])")
        if self.types:
            args.append(sorted(self.types))
            conds.append(f"event_type = ANY(${len(args)}::text[])")
        if self.aggregates:
            prefixes = [p for p, name in STREAM_PREFIXES.items() if name in self.aggregates]
            args.append([f"{p}-%" for p in prefixes])
            conds.append(f"stream_id LIKE ANY(${len(args)}::text[])")
        return "".join(f" AND {c}" for c in conds)


@dataclass
class FeedEvent:
    """A stored event with the time it was appended (for the delivery-latency metric) and
    its serialised forms, computed once however many streams carry it."""

    event: RecordedEvent
    recorded_at: datetime
    _json: bytes | None = None
    _sse: bytes | None = None

    @property
    def position(self) -> int:
        return self.event.position

    def json(self) -> bytes:
        if self._json is None:
            import orjson

            self._json = orjson.dumps(self.event.envelope())
        return self._json

    def sse(self) -> bytes:
        """One Server-Sent Events message: id = global position, event = type, data = envelope."""
        if self._sse is None:
            self._sse = b"id: %d\nevent: %s\ndata: %s\n\n" % (
                self.event.position,
                self.event.type.encode(),
                self.json(),
            )
        return self._sse


async def head(pool: asyncpg.Pool) -> int:
    """The last position in the store (0 when empty)."""
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM eventstore.events"))


async def read_after(
    pool: asyncpg.Pool,
    after: int,
    upto: int | None = None,
    selector: Selector | None = None,
    limit: int = 500,
) -> list[FeedEvent]:
    """Events with `after < position <= upto` that `selector` admits, in position order."""
    args: list[Any] = [after]
    sql = f"SELECT {_COLUMNS}, recorded_at FROM eventstore.events WHERE position > $1"
    if upto is not None:
        args.append(upto)
        sql += f" AND position <= ${len(args)}"
    if selector is not None:
        sql += selector.where(args)
    args.append(limit)
    sql += f" ORDER BY position LIMIT ${len(args)}"
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
    return [FeedEvent(_row_to_event(r), r["recorded_at"]) for r in rows]


async def stream_owner(pool: asyncpg.Pool, stream_ids: Iterable[str]) -> tuple[str, str | None]:
    """(stream id, owner) of the first of `stream_ids` that exists; ("", None) if none does."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT stream_id, owner FROM eventstore.events"
            " WHERE stream_id = ANY($1::text[]) AND version = 1 LIMIT 1",
            list(stream_ids),
        )
    return (row["stream_id"], row["owner"]) if row else ("", None)


class Listener:
    """LISTEN on the event store's channel (or `channel`) on a connection of its own; `wake`
    is set on every notification and whenever the connection is (re)established
    (notifications sent while it was down are lost, so the reader must look).

    `on_payload` is called with each notification's payload; `on_listening` with True once
    the LISTEN is in place and with False when its connection is gone (called in the
    listener's task, before `wake` is set, so a reader woken by it sees the change)."""

    def __init__(
        self,
        dsn: str,
        retry_interval: float = 1.0,
        channel: str = NOTIFY_CHANNEL,
        *,
        on_payload: Callable[[str], None] | None = None,
        on_listening: Callable[[bool], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.retry_interval = retry_interval
        self.channel = channel
        self.on_payload = on_payload
        self.on_listening = on_listening
        self.wake = asyncio.Event()
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-feed-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if self.on_payload is not None:
            self.on_payload(payload)
        self.wake.set()

    def _listening(self, now: bool) -> None:
        if self.on_listening is not None:
            self.on_listening(now)

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(self.channel, self._notified)
                self._listening(True)
                self.connected.set()
                self.wake.set()
                await lost.wait()
                log.warning("LISTEN connection lost, reconnecting", channel=self.channel)
            except (OSError, asyncpg.PostgresError) as e:
                log.warning("LISTEN failed, retrying", channel=self.channel, error=str(e))
            finally:
                self._listening(False)
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            # Retry after a pause rather than hammering a database that is down.
            await asyncio.sleep(self.retry_interval)
