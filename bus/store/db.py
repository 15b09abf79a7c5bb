"""Postgres connections and schema migrations.

Migrations are plain SQL files in `migrations/`, applied in name order, each once, under
an advisory lock so that several processes starting together do not race.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson

# PostgreSQL down, restarting, refusing or dropping connections: a fault that passes (the
# supervisor or the operator brings the database back), so callers answer 503 with
# Retry-After or retry, never a bare 500. OSError and TimeoutError count only where the
# caller knows the database raised them (see `database_down`).
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)

# InterfaceErrors that are the calling code's (bad arguments, configuration), not the
# database's state.
_CALLERS_FAULT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
)


def database_down(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable or refusing work for now.

    asyncpg's own connection errors always do. A bare OSError or TimeoutError (connection
    refused, a connect that timed out) does when it came up through asyncpg's code (the
    pool connecting): a disk error of the blob store never passes there."""
    if isinstance(exc, (asyncpg.exceptions.DiskFullError, *_CALLERS_FAULT)):
        return False  # out of space, or the caller's mistake: neither passes by itself
    if isinstance(exc, DATABASE_DOWN):
        return True
    if not isinstance(exc, (OSError, TimeoutError)):
        return False
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module == "asyncpg" or module.startswith("asyncpg."):
            return True
        tb = tb.tb_next
    return False


MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_MIGRATION_LOCK = 727_001


async def _init_conn(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


# Returning a connection to the pool: asyncpg always rolls back a transaction left open
# and drops the listener callbacks, then by default sends its reset query (unlock every
# advisory lock, CLOSE ALL, UNLISTEN *, RESET ALL): one more round trip and statement for
# every acquire, which halved the rate of short pooled queries on the embedded PostgreSQL
# (acquire + SELECT 1 + release, 8 at once: 7,500-8,900/s with it, 11,500-14,500/s
# without) and showed as 7 % of the actor host's samples under 4 KiB uploads. Almost no
# connection leaves session state behind: appends and claims take transaction-scoped
# locks, nothing SETs outside a transaction. The few that do (a LISTEN, a session-level
# advisory lock, a SET) call `keeps_session_state` on their connection first, and only
# those get the full reset on release.
class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool's connection, which knows whether it was marked as holding session state."""

    session_state = False

    def keep_session_state(self) -> None:
        self.session_state = True


def keeps_session_state(conn: Any) -> None:
    """Mark a pooled connection as holding session state (LISTEN, a session-level advisory
    lock, a SET): it is fully reset when it goes back to the pool. Call it before the
    statement that leaves the state."""
    conn.keep_session_state()  # through the pool's proxy, on the connection itself


async def listen(
    pool: asyncpg.Pool,
    channels: tuple[str, ...],
    on_notify: Callable[..., None],
    on_lost: Callable[..., None],
) -> Any:
    """A pooled connection of its own that LISTENs on `channels` (it is reset when it goes
    back); `on_lost` is called if its session ends. Raises what acquiring or LISTEN
    raises, with the connection released."""
    conn = await pool.acquire()
    try:
        keeps_session_state(conn)
        for channel in channels:
            await conn.add_listener(channel, on_notify)
        conn.add_termination_listener(on_lost)
    except BaseException:
        with contextlib.suppress(Exception):
            await pool.release(conn)
        raise
    return conn


async def unlisten(
    pool: asyncpg.Pool,
    conn: Any,
    channels: tuple[str, ...],
    on_notify: Callable[..., None],
    on_lost: Callable[..., None],
) -> None:
    """Stop listening on a connection from `listen` and give it back; never raises.

    `on_lost` goes too: asyncpg keeps a connection's termination listeners when it goes
    back to the pool, so the pool closing it at shutdown (or it dying later, in another
    caller's hands) would report a loss to a listener that had long stopped."""
    with contextlib.suppress(Exception):
        conn.remove_termination_listener(on_lost)
    for channel in channels:
        with contextlib.suppress(Exception):
            await conn.remove_listener(channel, on_notify)
    with contextlib.suppress(Exception):
        await pool.release(conn)


async def _reset_if_marked(conn: _PooledConnection) -> None:
    if conn.session_state:
        conn.session_state = False
        query = conn.get_reset_query()
        if query:
            await conn.execute(query)


async def create_pool(url: str, min_size: int = 1, max_size: int = 10, **kw: Any) -> asyncpg.Pool:
    kw.setdefault("reset", _reset_if_marked)
    kw.setdefault("connection_class", _PooledConnection)
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_conn, **kw
    )
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await _init_conn(conn)
    return conn


class DatabaseUnreachable(RuntimeError):
    """CAIRN_DATABASE_URL names a server Cairn cannot reach or log in to: a thing for the
    operator to fix, reported in one line (bus/run/cli.py) instead of a traceback."""


def where(url: str) -> str:
    """host:port/database of `url` (a socket directory as a path), without user or password."""
    parts = urlsplit(url)
    return f"{unquote(parts.netloc.rpartition('@')[2]) or 'localhost'}{parts.path}"


async def check_reachable(url: str, timeout: float = 10.0) -> None:
    """Connect once to CAIRN_DATABASE_URL, or raise DatabaseUnreachable saying why.

    Within `timeout`: a server behind a firewall that drops packets must not hang a start."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (
        OSError,
        TimeoutError,
        ValueError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as e:
        why = str(e) or type(e).__name__
        raise DatabaseUnreachable(
            f"cannot connect to CAIRN_DATABASE_URL ({where(url)}): {why}"
        ) from None
    await conn.close()


async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    conn = await asyncpg.connect(url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS public.cairn_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM public.cairn_migrations")}
            for path in sorted(directory.glob("*.sql")):
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO public.cairn_migrations (name) VALUES ($1)", path.name
                    )
                applied_now.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied_now


def database_url(server_url: str, name: str) -> str:
    """`server_url` naming database `name` instead (its last path segment; a socket
    directory in the host is percent-encoded, so it holds no slash)."""
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


async def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server if missing; return its URL (tests, embedded)."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(server_url, name)
