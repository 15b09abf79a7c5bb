"""The pool's release: connections marked as holding session state are reset, the rest
are handed on as they are (bus/store/db.py)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bus.store import db

LOCK = 727_999


@pytest.fixture
async def one(db_url: str) -> asyncpg.Pool:
    """A pool of one connection, so the next acquire gets the connection just released."""
    pool = await db.create_pool(db_url, min_size=1, max_size=1)
    yield pool
    await pool.close()


async def _lock_holders(pool: asyncpg.Pool, db_url: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1", LOCK
            )
        )
    finally:
        await conn.close()


async def test_a_marked_connection_loses_its_session_state_on_release(
    one: asyncpg.Pool, db_url: str
) -> None:
    async with one.acquire() as conn:
        db.keeps_session_state(conn)
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
        await conn.execute("SET application_name = 'marked'")
        await conn.execute("LISTEN cairn_test_channel")
        first = conn.get_server_pid()
    assert await _lock_holders(one, db_url) == 0
    async with one.acquire() as conn:
        assert conn.get_server_pid() == first  # the same connection, reset
        assert await conn.fetchval("SHOW application_name") != "marked"
        assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0


async def test_the_mark_lasts_for_one_checkout(one: asyncpg.Pool, db_url: str) -> None:
    async with one.acquire() as conn:
        db.keeps_session_state(conn)
    async with one.acquire() as conn:
        first = conn.get_server_pid()
        # Unmarked: what it leaves stays with the connection (which is why every site
        # that leaves session state must mark its connection).
        await conn.execute("SET application_name = 'unmarked'")
    async with one.acquire() as conn:
        assert conn.get_server_pid() == first
        assert await conn.fetchval("SHOW application_name") == "unmarked"


async def test_an_open_transaction_is_rolled_back_on_release(one: asyncpg.Pool) -> None:
    async with one.acquire() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS public.reset_probe (n int)")
    conn = await one.acquire()
    tx = conn.transaction()
    await tx.start()
    await conn.execute("INSERT INTO public.reset_probe VALUES (1)")
    await one.release(conn)
    async with one.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM public.reset_probe") == 0
        assert not conn.is_in_transaction()


async def test_listen_hears_its_channels_and_unlisten_gives_the_connection_back(
    one: asyncpg.Pool, db_url: str
) -> None:
    heard: list[str] = []

    def on_notify(*args: object) -> None:
        heard.append(str(args[3]))

    def on_lost(*args: object) -> None:
        pass

    conn = await db.listen(one, ("t_listen_a",), on_notify, on_lost)
    other = await asyncpg.connect(db_url)
    try:
        await other.execute("NOTIFY t_listen_a, 'hello'")
    finally:
        await other.close()
    for _ in range(100):
        if heard:
            break
        await conn.execute("SELECT 1")  # a notification is read with the next round trip
    assert heard == ["hello"]
    await db.unlisten(one, conn, ("t_listen_a",), on_notify, on_lost)
    # Back in the pool of one, and reset: it listens on nothing.
    async with one.acquire() as again:
        assert await again.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0


async def test_a_connection_given_back_by_unlisten_reports_no_loss_when_it_closes(
    db_url: str,
) -> None:
    # asyncpg keeps termination listeners across a release: without their removal every
    # consumer warned "lost its LISTEN connection" when its pool closed at a normal stop.
    pool = await db.create_pool(db_url, min_size=1, max_size=1)
    lost: list[object] = []

    def on_notify(*args: object) -> None:
        pass

    def on_lost(*args: object) -> None:
        lost.append(args)

    conn = await db.listen(pool, ("t_listen_b",), on_notify, on_lost)
    await db.unlisten(pool, conn, ("t_listen_b",), on_notify, on_lost)
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    async with pool.acquire() as again:  # the same connection: a pool of one
        again.add_termination_listener(lambda *_: closed.done() or closed.set_result(None))
    await pool.close()
    # Termination listeners are called in one pass: once this one has run, so has any
    # other that was left on the connection.
    await closed
    assert lost == []


async def test_a_failed_listen_releases_its_connection(one: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.PostgresError):
        await db.listen(one, ("",), lambda *a: None, lambda *a: None)  # LISTEN "" is refused
    async with one.acquire() as conn:  # the pool's only connection came back
        assert await conn.fetchval("SELECT 1") == 1


def test_database_url_swaps_only_the_database_name() -> None:
    assert (
        db.database_url("postgresql://u@127.0.0.1:5433/postgres", "cairn")
        == "postgresql://u@127.0.0.1:5433/cairn"
    )
    # A socket directory as the host is percent-encoded: its slashes are not the path's.
    assert (
        db.database_url("postgresql://u@%2Ftmp%2Fd%2Fpgsock:5433/postgres", "cairn")
        == "postgresql://u@%2Ftmp%2Fd%2Fpgsock:5433/cairn"
    )


async def test_database_down_tells_the_databases_faults_from_other_errors() -> None:
    """A refused connection counts only when it came up through asyncpg (a disk's OSError
    of the blob store must never read as the database being down)."""
    try:
        await asyncpg.connect("postgresql://nobody@127.0.0.1:9/none", timeout=5)
    except OSError as e:
        refused: BaseException = e
    else:
        pytest.fail("a connection to port 9 was accepted")
    assert db.database_down(refused)
    try:
        raise OSError(5, "Input/output error")
    except OSError as e:
        assert not db.database_down(e)
    assert db.database_down(asyncpg.exceptions.ConnectionDoesNotExistError("closed"))
    assert db.database_down(asyncpg.exceptions.TooManyConnectionsError("too many"))
    assert db.database_down(asyncpg.exceptions.AdminShutdownError("shutting down"))
    assert not db.database_down(asyncpg.exceptions.DiskFullError("disk full"))
    assert not db.database_down(asyncpg.exceptions.DataError("bad argument"))
    assert not db.database_down(RuntimeError("a bug"))
