"""Object streams grow again after a release (an object replaced, or deleted and written
again under the same key): the references keep every chunk the current version uses, in
any page split, and release only what the old version alone used."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bus.blobs import references as chunk_refs
from bus.blobs.references import effects
from bus.store.eventstore import PostgresEventStore
from domain import policies
from domain.commands import Command, DeleteFile
from domain.events import RecordedEvent
from domain.files.events import FileCreated, FileDeleted, FileReplaced
from domain.files.keys import object_file_id
from tests.commands import decide_and_append

T0 = datetime(2026, 1, 1, tzinfo=UTC)
A, B, C = "a" * 64, "b" * 64, "c" * 64
STREAM = "file-x"


def ev(version: int, type_: str, data: dict) -> RecordedEvent:
    at = T0 + timedelta(minutes=version)
    return RecordedEvent(
        id=str(version), stream_id=STREAM, version=version, position=version,
        type=type_, schema_version=1, data={**data, "at": at.isoformat()}, occurred_at=at,
    )  # fmt: skip


def created(version: int, *shas: str) -> RecordedEvent:
    return ev(
        version,
        FileCreated.type,
        {
            "file_id": "x", "owner": "o", "name": "k", "size": len(shas), "content_type": "t",
            "sha256": "0" * 64, "manifest": [{"sha256": s, "size": 1} for s in shas],
            "bucket": "bkt", "key": "k",
        },
    )  # fmt: skip


def replaced(version: int, *shas: str) -> RecordedEvent:
    return ev(
        version,
        FileReplaced.type,
        {
            "owner": "o", "name": "k", "size": len(shas), "content_type": "t",
            "sha256": "1" * 64, "manifest": [{"sha256": s, "size": 1} for s in shas],
        },
    )  # fmt: skip


def at(version: int) -> datetime:
    return T0 + timedelta(minutes=version)


def test_a_replace_releases_the_old_version_and_keeps_shared_chunks_live() -> None:
    fx = effects([created(1, A, B), replaced(2, B, C)])
    assert fx.refs == {(A, STREAM): (1, at(2)), (B, STREAM): (1, None), (C, STREAM): (1, None)}
    # Rows recorded before this run are released at the replace (then B, C re-added live).
    assert fx.releases == {STREAM: at(2)}


def test_a_key_written_again_after_its_delete_is_live() -> None:
    fx = effects([created(1, A), ev(2, FileDeleted.type, {}), created(3, A)])
    assert fx.refs == {(A, STREAM): (1, None)}
    fx = effects([created(1, A), ev(2, FileDeleted.type, {}), created(3, B), replaced(4, C)])
    assert fx.refs == {(A, STREAM): (1, at(2)), (B, STREAM): (1, at(4)), (C, STREAM): (1, None)}


# ---- through the real table, every page split ---------------------------------------------

pytestmark_db = pytest.mark.asyncio(loop_scope="session")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def live_refs(pool: asyncpg.Pool, stream: str) -> dict[str, bool]:
    rows = await pool.fetch(
        "SELECT sha256, released_at FROM readmodel.chunk_refs WHERE stream_id = $1", stream
    )
    return {r["sha256"]: r["released_at"] is None for r in rows}


@pytestmark_db
@pytest.mark.parametrize("page", [1, 2, 3, 1000])
async def test_object_references_in_the_table(
    pool: asyncpg.Pool, event_store: PostgresEventStore, page: int
) -> None:
    bucket, key = "refs-bucket", f"k/{page}/../x"
    fid = object_file_id(bucket, key)
    a, b, c = sha(b"a"), sha(b"b"), sha(b"c")

    def put(*shas: str) -> Command:
        return policies.put_object(
            bucket=bucket, key=key, owner="alice", size=len(shas), sha256="0" * 64,
            manifest=[(s, 1) for s in shas], content_type="text/plain", caller="alice",
            at=datetime.now(UTC),
        )  # fmt: skip

    async with pool.acquire() as conn:
        await chunk_refs.reset(conn)
    await decide_and_append(event_store, put(a, b))
    await decide_and_append(event_store, put(b, c))  # replaced: a released, b and c live
    await decide_and_append(
        event_store, DeleteFile(aggregate_id=fid, caller="alice", at=datetime.now(UTC))
    )
    await decide_and_append(event_store, put(a))  # written again after its delete: a live again
    await chunk_refs.catch_up(pool, event_store, page=page)
    assert await live_refs(pool, f"file-{fid}") == {a: True, b: False, c: False}
