"""The embedded PostgreSQL's two ways in: Cairn's processes over its Unix socket, people over
TCP (bus/run/embedded.py)."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg

from bus.run.embedded import SOCKET_PATH_MAX, EmbeddedKafka, EmbeddedPostgres
from tests.ports import free_port


def test_the_url_names_the_socket_directory_percent_encoded(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", 5999)
    parts = urlsplit(pg.url)
    assert pg.socket_dir == tmp_path / "pgsock"
    # One netloc, no slash in it: db.ensure_database swaps the last path segment.
    assert "/" not in parts.netloc
    assert unquote(parts.hostname or "") == str(tmp_path / "pgsock").lower()
    assert parts.port == 5999
    assert parts.path == "/postgres"
    assert pg.tcp_url == "postgresql://postgres@127.0.0.1:5999/postgres"


def test_a_data_dir_too_deep_for_a_socket_path_falls_back_to_tcp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * (SOCKET_PATH_MAX - len(str(tmp_path)))) / "pg"
    pg = EmbeddedPostgres(deep, 5999)
    assert pg.socket_dir is None
    assert pg.url == pg.tcp_url


def test_a_data_dir_with_a_quote_falls_back_to_tcp(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "o'brien" / "pg", 5999)
    assert pg.socket_dir is None
    assert pg.url == pg.tcp_url


async def test_the_server_answers_on_its_socket_and_on_tcp(pg_server: EmbeddedPostgres) -> None:
    assert pg_server.socket_dir is not None
    assert (pg_server.socket_dir / f".s.PGSQL.{pg_server.port}").is_socket()
    over_socket = await asyncpg.connect(pg_server.url)
    try:
        # inet_client_addr() is NULL for a Unix-socket connection.
        assert await over_socket.fetchval("SELECT inet_client_addr()") is None
    finally:
        await over_socket.close()
    over_tcp = await asyncpg.connect(pg_server.tcp_url)
    try:
        assert str(await over_tcp.fetchval("SELECT inet_client_addr()")) == "127.0.0.1"
    finally:
        await over_tcp.close()


def test_the_postgres_log_is_owner_only(pg_server: EmbeddedPostgres) -> None:
    """It can hold query text (a statement in an error): 0600, not the umask's 0644."""
    log = pg_server.data_dir.parent / "postgres.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_the_broker_log_is_owner_only_even_one_from_before(tmp_path: Path) -> None:
    log = tmp_path / "tansu.log"
    log.write_bytes(b"from an earlier start\n")
    log.chmod(0o644)
    kafka = EmbeddedKafka(free_port(), log_path=log)
    kafka.start()
    try:
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert log.read_bytes().startswith(b"from an earlier start\n")  # appended to
    finally:
        kafka.stop()
