"""readmodel.projection_lag: 0 when caught up, counting only the streams a projection reads."""

from __future__ import annotations

import asyncpg

from domain.events import stream_id_for
from projections.rebuild import PROJECTIONS
from tests.projections.conftest import LiveProjector, Publisher, Writer


async def test_projection_streams_table_matches_the_code(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch("SELECT projection, stream_prefix FROM readmodel.projection_streams")
    in_sql = {(r["projection"], r["stream_prefix"]) for r in rows}
    in_code = {(p.name, stream_id_for(a, "")) for p in PROJECTIONS.values() for a in p.aggregates}
    assert in_sql == in_code


async def test_lag_is_zero_when_idle_and_caught_up(
    pool: asyncpg.Pool, writer: Writer, publisher: Publisher, projector: LiveProjector
) -> None:
    # A completed upload ends with the files aggregate's FileCreated, which the uploads
    # projection never sees: it must not count as "behind" for it.
    _, fid, events = await writer.upload("lag-user", "a.bin", 250)
    assert fid is not None and events[-1].type == "FileCreated"
    await projector.caught_up(await publisher.send(events))
    last = await pool.fetchval("SELECT max(position) FROM eventstore.events")
    lag = {
        r["projection"]: (r["positions_behind"], r["last_position"])
        for r in await pool.fetch("SELECT * FROM readmodel.projection_lag")
    }
    assert lag["uploads"][0] == 0 and lag["uploads"][1] < last
    assert lag["files"] == (0, last)

    # An event the uploads projection has not applied yet shows as lag.
    _, _, pending = await writer.upload("lag-user", "b.bin", 300, chunks=1, complete=False)
    behind = await pool.fetchval(
        "SELECT positions_behind FROM readmodel.projection_lag WHERE projection = 'uploads'"
    )
    assert behind == pending[-1].position - lag["uploads"][1] > 0
    await projector.caught_up(await publisher.send(pending))
    assert (
        await pool.fetchval(
            "SELECT positions_behind FROM readmodel.projection_lag WHERE projection = 'uploads'"
        )
        == 0
    )
