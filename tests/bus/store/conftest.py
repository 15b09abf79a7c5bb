"""The event store under test, in-memory and on the real embedded PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from bus.store.eventstore import InMemoryEventStore, PostgresEventStore
from domain.ports import EventStore


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> EventStore:
    # A sync fixture, so that the async `pool` fixture is only set up for the Postgres case.
    if request.param == "memory":
        return InMemoryEventStore()
    pool: asyncpg.Pool = request.getfixturevalue("pool")
    return PostgresEventStore(pool)
