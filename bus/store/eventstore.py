"""Event store adapters: Postgres (the real one) and in-memory (for unit tests).

Ordering: every append takes one transaction-scoped advisory lock before drawing its
positions, and holds it until commit. So positions become visible strictly in order and
the relay, reading `position > checkpoint`, can never skip an event that commits late with
a lower position. The price is that commits of appends are serialised globally (one WAL
flush at a time). Group commit pays it once for many appends: concurrent `append` calls on
one PostgresEventStore are written in one transaction (see the class), so the lock is taken
once per batch, not once per append, and the store's rate grows with its concurrency.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bus.config import metrics
from bus.ids import uuid4
from domain.events import EventMeta, NewEvent, RecordedEvent, upcast_recorded
from domain.kernel import owners
from domain.ports import ConcurrencyError, DuplicateCommand, UnstorableEvent
from domain.values import nul_at

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


@dataclass(eq=False)
class _Pending:
    """One `append` call waiting for the group commit: its arguments and its outcome."""

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent]
    meta: EventMeta
    command_id: str | None
    done: asyncio.Future[list[RecordedEvent]]

    def settle(self, result: list[RecordedEvent] | BaseException) -> None:
        if self.done.done():  # the caller gave up (cancelled); the outcome stands regardless
            return
        if isinstance(result, asyncio.CancelledError):
            self.done.cancel()
        elif isinstance(result, BaseException):
            self.done.set_exception(result)
        else:
            self.done.set_result(result)


@dataclass
class FlushStats:
    """The flusher's own bookkeeping (tests assert on it; cheap enough to keep always)."""

    started_at_once: int = 0  # flushes started by an append that found nothing in flight
    batches: int = 0  # batches written (or attempted)
    appends: int = 0  # appends in those batches
    largest: int = 0  # most appends in one batch

    def count(self, batch: Sequence[object]) -> None:
        self.batches += 1
        self.appends += len(batch)
        self.largest = max(self.largest, len(batch))


def _event_rows(p: _Pending) -> list[tuple[object, ...]]:
    m = p.meta
    return [
        (
            p.stream_id,
            p.expected_version + i + 1,
            uuid4(),
            ev.type,
            ev.schema_version,
            ev.data,
            owner,
            m.correlation_id,
            m.causation_id,
            m.traceparent,
            m.occurred_at,
        )
        for i, (ev, owner) in enumerate(zip(p.events, owners(p.events, m.owner), strict=True))
    ]


_INSERT = f"""
    INSERT INTO eventstore.events ({_COLUMNS})
    SELECT s, v, nextval('eventstore.position_seq'), e, t, sv, d, o, c, ca, tp, oa
    FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int[],
                $6::jsonb[], $7::text[], $8::text[], $9::text[], $10::text[],
                $11::timestamptz[])
         WITH ORDINALITY AS x(s, v, e, t, sv, d, o, c, ca, tp, oa, n)
    ORDER BY n
    RETURNING {_COLUMNS}
"""


class PostgresEventStore:
    """The event store on Postgres, with group commit.

    Concurrent `append` calls on one store object are queued and written together: a
    flusher takes every waiting append (at most one per stream, up to `max_batch` events)
    and writes them with one statement, `eventstore.append_batch`
    (migrations/0014_append_batch.sql), which checks each, takes the append lock once,
    inserts every event and commits once. The append lock is held through the commit, so one
    commit (one WAL flush) at a time is the store's limit; with group commit that one commit
    carries every append that arrived meanwhile instead of one, and one round trip instead of
    seven. One flusher by default: appends that arrive while a batch is being written wait
    for it and go together in the next, the largest batch a closed loop of writers can form
    (two flushers would split the writers into two half-size batches, each waiting on the
    lock for the other's WAL flush). Appends of different store objects (processes) still
    meet at the lock, as before.

    Each caller still gets exactly its own outcome: a wrong expected version is refused
    and writes nothing, a command id already applied is answered from its earlier events
    (by `_append_one`), and when the batch fails on a uniqueness race (another process wrote
    the same stream version or command id meanwhile) every append of it is retried on its
    own, which gives each caller the precise ConcurrencyError or DuplicateCommand. Any other failure (Postgres
    down) fails every append of the batch, as it would have failed each of them alone.
    """

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 512, flushers: int = 1) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.flushers = flushers
        self._queue: deque[_Pending] = deque()
        self._active = 0  # flushers running; counted down in the step that sees no work
        self._tasks: set[asyncio.Task[None]] = set()  # strong references only
        self.stats = FlushStats()

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
        pending = _Pending(
            stream_id,
            expected_version,
            list(events),
            meta,
            command_id,
            asyncio.get_running_loop().create_future(),
        )
        self._queue.append(pending)
        if self._active < self.flushers:
            # Nothing in flight: flush at once (the task runs in the next loop step; no timer,
            # no waiting for company). Appends that come while it writes queue up and go
            # together in its next batch: the classic group commit.
            # Counted here, not by the task's done callback: that runs a loop step after the
            # flusher saw an empty queue, and an append queued in between would wait forever.
            self._active += 1
            self.stats.started_at_once += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await pending.done

    def _take_batch(self) -> list[_Pending]:
        """The next batch: queue order, one append per stream (a second append to the same
        stream depends on the first's outcome), at most `max_batch` events (always >= 1)."""
        batch: list[_Pending] = []
        streams: set[str] = set()
        skipped: list[_Pending] = []
        size = 0
        while self._queue:
            p = self._queue[0]
            if batch and size + len(p.events) > self.max_batch:
                break
            self._queue.popleft()
            if p.done.done():
                continue  # its caller was cancelled before anything was written: drop it
            if p.stream_id in streams:
                skipped.append(p)
                continue
            streams.add(p.stream_id)
            batch.append(p)
            size += len(p.events)
        self._queue.extendleft(reversed(skipped))
        return batch

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._take_batch()
                if not batch:
                    continue  # every append queued was cancelled before it was taken
                self.stats.count(batch)
                try:
                    await self._write_batch(batch)
                except BaseException as e:
                    for p in batch:
                        p.settle(e)
                    if not isinstance(e, Exception):
                        raise
        finally:
            # No await between the empty-queue check above and this: an append that comes
            # after it sees the count down and starts a flusher of its own.
            self._active -= 1

    async def _write_batch(self, batch: list[_Pending]) -> None:
        try:
            alone = await self._write_together(batch)
        except (asyncpg.UniqueViolationError, asyncpg.DataError):
            # A concurrent writer (another process) took a version or a command id between
            # the checks and the insert, or one append holds what PostgreSQL cannot store
            # (a NUL in text); nothing of the batch was written. Retry each alone that has
            # no answer yet (a refused one must stay refused), so that only the append at
            # fault fails, not the others it was grouped with.
            alone = [p for p in batch if not p.done.done()]
        for p in alone:
            try:
                p.settle(await self._append_one(p))
            except (ConcurrencyError, DuplicateCommand, UnstorableEvent) as e:
                p.settle(e)

    async def _write_together(self, batch: list[_Pending]) -> list[_Pending]:
        """Write the batch in one statement (migrations/0014_append_batch.sql); settle each
        append written or refused; return those whose command id was applied already, left
        to `_append_one` to answer with their earlier events."""
        ev_rows = [(n, r) for n, p in enumerate(batch, 1) for r in _event_rows(p)]
        cols = list(zip(*[r for _, r in ev_rows], strict=True))
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM eventstore.append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                " $10, $11, $12, $13, $14, $15, $16, $17)",
                APPEND_LOCK,
                NOTIFY_CHANNEL,
                [p.stream_id for p in batch],
                [p.expected_version for p in batch],
                [p.command_id for p in batch],
                [len(p.events) for p in batch],
                [n for n, _ in ev_rows],
                list(cols[1]),  # versions
                *[list(c) for c in cols[2:]],  # ids, types, schemas, data, meta columns
            )
        # Committed (a single statement is its own transaction).
        written: dict[int, list[RecordedEvent]] = {}
        alone = []
        for r in rows:
            p = batch[r["n"] - 1]
            if r["status"] == "ok":
                written.setdefault(r["n"], []).append(_row_to_event(r))
                metrics.EVENTS_APPENDED.labels(r["event_type"]).inc()
            elif r["status"] == "conflict":
                p.settle(ConcurrencyError(p.stream_id, p.expected_version, r["current_version"]))
            else:
                alone.append(p)
        for n, recorded in written.items():
            batch[n - 1].settle(sorted(recorded, key=lambda e: e.version))
        return alone

    async def _append_one(self, p: _Pending) -> list[RecordedEvent]:
        """One append in its own transaction: the precise path, which tells a duplicate
        command (with its earlier events) from a version conflict."""
        stream_id, expected_version, command_id = p.stream_id, p.expected_version, p.command_id
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
            rows_in = _event_rows(p)
            try:
                rows = await conn.fetch(_INSERT, *[list(col) for col in zip(*rows_in, strict=True)])
            except asyncpg.UniqueViolationError as e:
                # A concurrent writer took the version between our check and our insert.
                raise ConcurrencyError(stream_id, expected_version, -1) from e
            except asyncpg.DataError as e:
                # Deterministic: the same events would fail the same way again.
                raise UnstorableEvent(str(e)) from e
            if command_id:
                await conn.execute(
                    "INSERT INTO eventstore.applied_commands"
                    " (command_id, stream_id, first_version, last_version) VALUES ($1, $2, $3, $4)",
                    command_id,
                    stream_id,
                    expected_version + 1,
                    expected_version + len(p.events),
                )
            await conn.execute(
                "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(rows[-1]["position"])
            )
        for ev in p.events:  # committed
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

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        """Several whole streams in one query (a task's batch of files): stream id -> its
        events in version order; a stream without events is absent."""
        out: dict[str, list[RecordedEvent]] = {}
        if not stream_ids:
            return out
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM eventstore.events WHERE stream_id = ANY($1::text[])"
                " ORDER BY stream_id, version",
                list(stream_ids),
            )
        for r in rows:
            out.setdefault(r["stream_id"], []).append(_row_to_event(r))
        return out

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM eventstore.events WHERE position > $1"
                " ORDER BY position LIMIT $2",
                after_position,
                limit,
            )
        return [_row_to_event(r) for r in rows]

    async def read_latest(
        self,
        event_type: str,
        limit: int,
        conn: asyncpg.Connection | None = None,
        owner: str | None = None,
    ) -> list[RecordedEvent]:
        """The newest `limit` events of one type, newest first, upcast like every read (on
        `conn` when given: a caller inside its own transaction). With `owner`, only that
        owner's among those `limit` (filtered by PostgreSQL, so the others are never sent
        and decoded: a quota check reads its owner's, under that owner's lock)."""
        query = (
            f"SELECT {_COLUMNS} FROM (SELECT {_COLUMNS} FROM eventstore.events"
            " WHERE event_type = $1 ORDER BY position DESC LIMIT $2) AS latest"
            " WHERE $3::text IS NULL OR owner = $3 ORDER BY position DESC"
        )
        if conn is not None:
            rows = await conn.fetch(query, event_type, limit, owner)
        else:
            async with self.pool.acquire() as own:
                rows = await own.fetch(query, event_type, limit, owner)
        return [_row_to_event(r) for r in rows]

    async def stream_version(self, stream_id: str) -> int:
        async with self.pool.acquire() as conn:
            return int(
                await conn.fetchval(
                    "SELECT coalesce(max(version), 0) FROM eventstore.events WHERE stream_id = $1",
                    stream_id,
                )
            )

    async def applied_commands(self, command_ids: Sequence[str]) -> set[str]:
        if not command_ids:
            return set()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT command_id FROM eventstore.applied_commands"
                " WHERE command_id = ANY($1::text[])",
                list(command_ids),
            )
        return {r["command_id"] for r in rows}

    async def applied_event_types(self, command_ids: Sequence[str]) -> dict[str, list[str]]:
        if not command_ids:
            return {}
        async with self.pool.acquire() as conn:
            # The primary key finds each command, the stream's (stream_id, version) key its
            # events: no scan of either table, however many commands are recorded.
            rows = await conn.fetch(
                "SELECT a.command_id, array_agg(e.event_type ORDER BY e.version) AS types"
                " FROM eventstore.applied_commands a JOIN eventstore.events e"
                " ON e.stream_id = a.stream_id"
                " AND e.version BETWEEN a.first_version AND a.last_version"
                " WHERE a.command_id = ANY($1::text[]) GROUP BY a.command_id",
                list(command_ids),
            )
        return {r["command_id"]: list(r["types"]) for r in rows}


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
        texts = (meta.owner, meta.correlation_id, meta.causation_id, meta.traceparent)
        event_owners = owners(events, meta.owner)
        # What PostgreSQL cannot store, the reference refuses as well.
        if any(nul_at(ev.data) is not None for ev in events) or nul_at(texts) is not None:
            raise UnstorableEvent("text with a NUL character")
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
                    owner=event_owners[i],
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

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        return {sid: events for sid in stream_ids if (events := await self.read_stream(sid))}

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return [upcast_recorded(e) for e in self._all[after_position : after_position + limit]]

    async def stream_version(self, stream_id: str) -> int:
        return len(self._streams.get(stream_id, []))

    async def applied_commands(self, command_ids: Sequence[str]) -> set[str]:
        return {c for c in command_ids if c in self._commands}

    async def applied_event_types(self, command_ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for c in command_ids:
            if c in self._commands:
                sid, first, last = self._commands[c]
                out[c] = [e.type for e in self._streams[sid] if first <= e.version <= last]
        return out


def utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
