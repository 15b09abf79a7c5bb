"""Download counts per file, aggregated in memory and added to the read model in batches.

Serving a file must not cost a database write (a 4 KiB ranged read would then be
dominated by it, and 200 concurrent readers would queue on one row). So each API process
counts in a dict and, every `CAIRN_DOWNLOAD_FLUSH_INTERVAL` seconds, adds its counts to
`readmodel.file_downloads` in one statement. These are statistics, not acknowledged state:
a SIGKILL loses at most one interval of counts of that process; a graceful stop flushes.
The table is not derived from events, so no projection owns it and rebuilds keep it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from bus.config.logs import get_logger

log = get_logger(__name__)


@dataclass
class _Tally:
    downloads: int = 0
    bytes_sent: int = 0
    last_at: datetime | None = None


class DownloadCounter:
    """Counts since the last flush, per file id. Only the event loop touches it."""

    def __init__(self) -> None:
        self._pending: dict[str, _Tally] = {}

    def record(self, file_id: str, bytes_sent: int, at: datetime | None = None) -> None:
        """One download of `file_id` that sent `bytes_sent` content bytes."""
        t = self._pending.get(file_id)
        if t is None:
            t = self._pending[file_id] = _Tally()
        t.downloads += 1
        t.bytes_sent += bytes_sent
        at = at or datetime.now(UTC)
        if t.last_at is None or at > t.last_at:
            t.last_at = at

    @property
    def pending(self) -> int:
        """Files with counts not yet flushed."""
        return len(self._pending)

    async def flush(self, pool: asyncpg.Pool) -> int:
        """Add the pending counts to the read model in one statement; return files written.

        The batch is swapped out first, so downloads counted while the write runs go to the
        next batch; if the write fails the batch is merged back to be retried."""
        batch, self._pending = self._pending, {}
        if not batch:
            return 0
        ids = list(batch)
        try:
            await pool.execute(
                """
                INSERT INTO readmodel.file_downloads AS d
                    (file_id, downloads, bytes_sent, last_download_at)
                SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::timestamptz[])
                ON CONFLICT (file_id) DO UPDATE SET
                    downloads = d.downloads + excluded.downloads,
                    bytes_sent = d.bytes_sent + excluded.bytes_sent,
                    last_download_at = greatest(d.last_download_at, excluded.last_download_at)
                """,
                [uuid.UUID(i) for i in ids],
                [batch[i].downloads for i in ids],
                [batch[i].bytes_sent for i in ids],
                [batch[i].last_at for i in ids],
            )
        except BaseException:
            for file_id, t in batch.items():
                cur = self._pending.setdefault(file_id, _Tally())
                cur.downloads += t.downloads
                cur.bytes_sent += t.bytes_sent
                if t.last_at and (cur.last_at is None or t.last_at > cur.last_at):
                    cur.last_at = t.last_at
            raise
        return len(ids)

    async def run(self, pool: asyncpg.Pool, interval: float) -> None:
        """Flush every `interval` seconds until cancelled; then flush once more."""
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.flush(pool)
                except (OSError, asyncpg.PostgresError) as e:
                    # Kept in memory and retried next time: the database may be back.
                    log.warning("download counts not flushed", error=str(e), files=self.pending)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush(pool))


async def downloads_of(conn: asyncpg.Pool | asyncpg.Connection, file_id: str) -> dict[str, int]:
    """`{downloads, bytes_sent}` flushed so far for one file (zeros if none)."""
    row = await conn.fetchrow(
        "SELECT downloads, bytes_sent FROM readmodel.file_downloads WHERE file_id = $1",
        uuid.UUID(file_id),
    )
    return {
        "downloads": int(row["downloads"]) if row else 0,
        "bytes_sent": int(row["bytes_sent"]) if row else 0,
    }
