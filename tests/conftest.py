"""Shared fixtures: the real embedded PostgreSQL and Tansu broker, started once per session.

Each test gets its own database (cloned from a migrated template, so it is cheap) and its
own topic prefix, so tests never see each other's events."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from bus.config.settings import Settings
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store import db
from bus.store.eventstore import PostgresEventStore
from tests.ports import free_port
from tests.s3server import S3Server, use_test_credentials
from tests.system import KAFKA_SESSION_TIMEOUT_MS, cloned_database, ensure_template


@pytest.fixture(scope="session")
def infra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("infra")


@pytest.fixture(scope="session")
def pg_server(infra_dir: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(infra_dir / "pg", free_port())
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def kafka_server(infra_dir: Path) -> Iterator[EmbeddedKafka]:
    k = EmbeddedKafka(free_port(), log_path=infra_dir / "tansu.log")
    k.start()
    yield k
    k.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The local S3-compatible server (moto plus checksum checks), one per session."""
    use_test_credentials()
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_url(pg_server: EmbeddedPostgres) -> str:
    return await ensure_template(pg_server.url)


@pytest_asyncio.fixture(loop_scope="session")
async def db_url(pg_server: EmbeddedPostgres, template_url: str) -> AsyncIterator[str]:
    async with cloned_database(pg_server.url) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(db_url, min_size=1, max_size=20)
    yield p
    await p.close()


@pytest_asyncio.fixture(loop_scope="session")
async def event_store(pool: asyncpg.Pool) -> PostgresEventStore:
    return PostgresEventStore(pool)


@pytest.fixture
def settings(tmp_path: Path, db_url: str, kafka_server: EmbeddedKafka) -> Settings:
    """Settings for one test: its own database, topic prefix, data dir and blob store."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        kafka_bootstrap=kafka_server.bootstrap,
        kafka_idempotence=False,
        kafka_fetch_max_wait_ms=10,
        kafka_session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS,
        kafka_partitions=4,
        topic_prefix=f"t{secrets.token_hex(5)}",
        blob_store=f"file://{tmp_path / 'blobs'}",
        jwt_secret="test-secret-" + "x" * 32,
        command_timeout=20.0,
        log_json=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("CAIRN_LOG_LEVEL", "warning")
    # What `cairn up` and `cairn run` started by a test inherit (see KAFKA_SESSION_TIMEOUT_MS).
    os.environ.setdefault("CAIRN_KAFKA_SESSION_TIMEOUT_MS", str(KAFKA_SESSION_TIMEOUT_MS))
    # A private base temp dir per session: pytest prunes old numbered dirs under the shared
    # /tmp/pytest-of-<user>, which would pull the embedded Postgres out from under a
    # concurrently running session.
    if not config.option.basetemp:
        config.option.basetemp = tempfile.mkdtemp(prefix="cairn-tests-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


_OWN_BASETEMP = pytest.StashKey[str]()


def pytest_unconfigure(config: pytest.Config) -> None:
    # The session's base temp dir holds the embedded Postgres and every test's files (about
    # 1 GB for a whole run); session fixtures have stopped by now. CAIRN_KEEP_TEST_TMP=1
    # keeps it for a post-mortem.
    own = config.stash.get(_OWN_BASETEMP, None)
    if own and not os.environ.get("CAIRN_KEEP_TEST_TMP"):
        shutil.rmtree(own, ignore_errors=True)
