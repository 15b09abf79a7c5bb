"""Event store adapters: Postgres (the real one) and in-memory (for unit tests).

Ordering: every append takes one transaction-scoped advisory lock before drawing its
positions, and holds it until commit. So positions become visible strictly in order and
the relay, reading `position > checkpoint`, can never skip an event that commits late with
a lower position. The price is that appends are serialised globally (one commit at a time);
appends are small (offsets and digests, never bytes), so this is far from the bottleneck.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from bus.config import metrics
from domain.events import EventMeta, NewEvent, RecordedEvent, upcast_recorded
from domain.ports import ConcurrencyError, DuplicateCommand

APPEND_LOCK = 727_002
NOTIFY_CHANNEL = "cairn_events"

_COLUMNS = (
    "stream_id, version, position, event_id, event_type, schema_version, data, owner,"
    " correlation_id, causation_id, traceparent, occurred_at"
)


def _row_to_event(r: asyncpg.Record) -> RecordedEvent:
    return upcast_recorded(
        RecordedEvent(
            id=str(r["event_id"]),
            stream_id=r["stream_id"],
            version=r["version"],
            position=r["position"],
            type=r["event_type"],
            schema_version=r["schema_version"],
            data=r["data"],
            occurred_at=r["occurred_at"],
            owner=r["owner"],
            correlation_id=r["correlation_id"],
            causation_id=r["causation_id"],
            traceparent=r["traceparent"],
        )
    )


class PostgresEventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        meta: EventMeta,
        command_id: str | None = None,
    ) -> list[RecordedEvent]:
        if not events:
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            if command_id:
                prior = await conn.fetchrow(
                    "SELECT stream_id, first_version, last_version FROM eventstore.applied_commands"
                    " WHERE command_id = $1",
                    command_id,
                )
                if prior is not None:
                    rows = await conn.fetch(
                        f"SELECT {_COLUMNS} FROM eventstore.events WHERE stream_id = $1"
                        " AND version BETWEEN $2 AND $3 ORDER BY version",
                        prior["stream_id"],
                        prior["first_version"],
                        prior["last_version"],
                    )
                    raise DuplicateCommand(command_id, [_row_to_event(r) for r in rows])
            current = await conn.fetchval(
                "SELECT coalesce(max(version), 0) FROM eventstore.events WHERE stream_id = $1",
                stream_id,
            )
            if current != expected_version:
                raise ConcurrencyError(stream_id, expected_version, current)
            # Serialise position assignment with commit order (see module docstring).
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            rows_in = [
                (
                    stream_id,
                    expected_version + i + 1,
                    uuid.uuid4(),
                    ev.type,
                    ev.schema_version,
                    ev.data,
                    meta.owner,
                    meta.correlation_id,
                    meta.causation_id,
                    meta.traceparent,
                    meta.occurred_at,
                )
                for i, ev in enumerate(events)
            ]
            try:
                rows = await conn.fetch(
                    f"""
                    INSERT INTO eventstore.events ({_COLUMNS})
                    SELECT s, v, nextval('eventstore.position_seq'), e, t, sv, d, o, c, ca, tp, oa
                    FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int[],
                                $6::jsonb[], $7::text[], $8::text[], $9::text[], $10::text[],
                                $11::timestamptz[])
                         WITH ORDINALITY AS x(s, v, e, t, sv, d, o, c, ca, tp, oa, n)
                    ORDER BY n
                    RETURNING {_COLUMNS}
                    """,
                    *[list(col) for col in zip(*rows_in, strict=True)],
                )
            except asyncpg.UniqueViolationError as e:
                # A concurrent writer took the version between our check and our insert.
                raise ConcurrencyError(stream_id, expected_version, -1) from e
            if command_id:
                await conn.execute(
                    "INSERT INTO eventstore.applied_commands"
                    " (command_id, stream_id, first_version, last_version) VALUES ($1, $2, $3, $4)",
                    command_id,
                    stream_id,
                    expected_version + 1,
                    expected_version + len(events),
                )
            await conn.execute(
                "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(rows[-1]["position"])
            )
        for ev in events:  # committed
            metrics.EVENTS_APPENDED.labels(ev.type).inc()
        return sorted((_row_to_event(r) for r in rows), key=lambda e: e.version)

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM eventstore.events WHERE stream_id = $1 AND version >= $2"
                " ORDER BY version",
                stream_id,
                from_version,
            )
        return [_row_to_event(r) for r in rows]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM eventstore.events WHERE position > $1"
                " ORDER BY position LIMIT $2",
                after_position,
                limit,
            )
        return [_row_to_event(r) for r in rows]

    async def read_latest(self, event_type: str, limit: int) -> list[RecordedEvent]:
        """The newest `limit` events of one type, newest first, upcast like every read."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM eventstore.events WHERE event_type = $1"
                " ORDER BY position DESC LIMIT $2",
                event_type,
                limit,
            )
        return [_row_to_event(r) for r in rows]

    async def stream_version(self, stream_id: str) -> int:
        async with self.pool.acquire() as conn:
            return int(
                await conn.fetchval(
                    "SELECT coalesce(max(version), 0) FROM eventstore.events WHERE stream_id = $1",
                    stream_id,
                )
            )


class InMemoryEventStore:
    """Same contract as PostgresEventStore, for pure unit tests and as the reference."""

    def __init__(self) -> None:
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._all: list[RecordedEvent] = []
        self._commands: dict[str, tuple[str, int, int]] = {}
        self._lock = asyncio.Lock()

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        meta: EventMeta,
        command_id: str | None = None,
    ) -> list[RecordedEvent]:
        if not events:
            return []
        async with self._lock:
            if command_id and command_id in self._commands:
                sid, first, last = self._commands[command_id]
                raise DuplicateCommand(
                    command_id, [e for e in self._streams[sid] if first <= e.version <= last]
                )
            stream = self._streams.setdefault(stream_id, [])
            if len(stream) != expected_version:
                raise ConcurrencyError(stream_id, expected_version, len(stream))
            out = []
            for i, ev in enumerate(events):
                rec = RecordedEvent(
                    id=str(uuid.uuid4()),
                    stream_id=stream_id,
                    version=expected_version + i + 1,
                    position=len(self._all) + 1,
                    type=ev.type,
                    schema_version=ev.schema_version,
                    data=ev.data,
                    occurred_at=meta.occurred_at,
                    owner=meta.owner,
                    correlation_id=meta.correlation_id,
                    causation_id=meta.causation_id,
                    traceparent=meta.traceparent,
                )
                stream.append(rec)
                self._all.append(rec)
                out.append(rec)
            if command_id:
                self._commands[command_id] = (
                    stream_id,
                    expected_version + 1,
                    expected_version + len(events),
                )
            return [upcast_recorded(e) for e in out]

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        return [
            upcast_recorded(e)
            for e in self._streams.get(stream_id, [])
            if e.version >= from_version
        ]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return [upcast_recorded(e) for e in self._all[after_position : after_position + limit]]

    async def stream_version(self, stream_id: str) -> int:
        return len(self._streams.get(stream_id, []))


def utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
