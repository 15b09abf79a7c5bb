"""Events the projector is held at: a known type at a schema version newer than its code
reads (domain.errors.NewerSchema), written by a newer deployment during a rolling upgrade
or before a rollback.

The projector neither skips such an event (the read model would lose it) nor reads it as
the current version (it could misread it): it stops that partition before it and records it
here (`record`), so that /ready and /metrics, served by other processes, can say so. A hold
needs no clearing: it counts while some projection of the event's stream has not applied
its version (`unresolved`), and stops counting once a projector that knows the version has
(or a rebuild by one).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.errors import NewerSchema
from domain.events import RecordedEvent

_UNRESOLVED = """
    h.event_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM readmodel.projection_streams ps
        WHERE starts_with(h.stream_id, ps.stream_prefix)
          AND NOT EXISTS (
              SELECT 1 FROM readmodel.applied a
              WHERE a.projection = ps.projection AND a.stream_id = h.stream_id
                AND a.version >= h.version))
"""

UNRESOLVED_COUNT = f"SELECT count(*) FROM readmodel.schema_holds h WHERE {_UNRESOLVED}"
"""How many recorded holds still hold a partition (one value)."""


async def record(
    conn: asyncpg.Connection | asyncpg.Pool, ev: RecordedEvent, e: NewerSchema
) -> None:
    """Note that the projector stopped at `ev`; forget the holds that no longer count."""
    await conn.execute(f"DELETE FROM readmodel.schema_holds h WHERE NOT ({_UNRESOLVED})")
    await conn.execute(
        """
        INSERT INTO readmodel.schema_holds (event_id, stream_id, version, position, event_type,
                                            schema_version, known_version)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (event_id) DO UPDATE SET held_at = now()
        """,
        ev.id,
        ev.stream_id,
        ev.version,
        ev.position,
        ev.type,
        e.stored_version,
        e.known_version,
    )


async def unresolved(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, Any]]:
    """The holds that still hold a partition, oldest position first."""
    rows = await conn.fetch(
        "SELECT event_id, stream_id, version, position, event_type, schema_version,"
        f" known_version, held_at FROM readmodel.schema_holds h WHERE {_UNRESOLVED}"
        " ORDER BY position"
    )
    return [dict(r) for r in rows]
