"""Migrations that fill a new read-model column from the events already stored: run on a
database an older Cairn migrated and used (bus/store/db.py `migrate`)."""

from __future__ import annotations

import secrets
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson

from bus.run.embedded import EmbeddedPostgres
from bus.store import db
from bus.store.db import MIGRATIONS_DIR

_UPLOAD = """
INSERT INTO readmodel.uploads (id, owner, file_name, file_size, chunk_size, total_chunks,
    content_type, bucket, status, created_at, updated_at, last_version, mode, partial)
VALUES ($1, 'u', 'f', 10, 10, 0, 'x/y', 'default', $2, now(), now(), 1, $3, $4)
"""
_INITIATED = """
INSERT INTO eventstore.events (stream_id, version, position, event_id, event_type,
    schema_version, data, owner, occurred_at)
VALUES ($1, 1, $2, $3, 'UploadInitiated', 2, $4::jsonb, 'u', now())
"""


async def test_0021_gives_the_finals_recorded_before_it_their_parts(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    """readmodel.uploads.parts (the quota counts a final's parts' bytes once through it):
    filled for the final uploads already there from their UploadInitiated events, empty
    for every other upload."""
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0021":
            shutil.copy2(path, older / path.name)
    url = await db.ensure_database(pg_server.url, f"parts_{secrets.token_hex(4)}")
    await db.migrate(url, older)
    a, b, final, plain = (uuid.uuid4() for _ in range(4))
    conn = await asyncpg.connect(url)
    try:
        for pos, (uid, status, mode, partial, data) in enumerate(
            [
                (a, "IN_PROGRESS", "stream", True, {"mode": "stream", "partial": True}),
                (b, "IN_PROGRESS", "stream", True, {"mode": "stream", "partial": True}),
                (final, "COMPLETED", "final", False, {"mode": "final", "parts": [str(b), str(a)]}),
                (plain, "INITIATED", "chunks", False, {}),  # no `parts`: an event before them
            ],
            start=1,
        ):
            await conn.execute(_UPLOAD, uid, status, mode, partial)
            await conn.execute(
                _INITIATED, f"upload-{uid}", pos, uuid.uuid4(), orjson.dumps(data).decode()
            )
        assert "0021_upload_parts.sql" in await db.migrate(url)
        parts = dict(await conn.fetch("SELECT id, parts FROM readmodel.uploads"))
        assert parts == {a: [], b: [], final: [b, a], plain: []}
    finally:
        await conn.close()


_FILE = """
INSERT INTO readmodel.files (id, owner, name, size, content_type, sha256, bucket,
    chunk_count, created_at, updated_at, last_version, key, deleted_at)
VALUES ($1, 'u', 'k', 1, 'x/y', 'ab', 'b', 1, now(), now(), $2, 'k', $3)
"""
_FILE_EVENT = """
INSERT INTO eventstore.events (stream_id, version, position, event_id, event_type,
    schema_version, data, owner, occurred_at)
VALUES ($1, $2, $3, $4, $5, 1, $6::jsonb, 'u', now())
"""


async def test_0028_gives_the_files_recorded_before_it_their_stored_headers(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    """readmodel.files.headers: filled for the rows already there from the latest
    FileCreated/FileReplaced each has applied (a rename, FileUpdated, or a delete keeps
    them); {} for a file whose events have none (written before the field existed)."""
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0028":
            shutil.copy2(path, older / path.name)
    url = await db.ensure_database(pg_server.url, f"headers_{secrets.token_hex(4)}")
    await db.migrate(url, older)
    gzip = {"cache-control": "max-age=60", "content-encoding": "gzip"}
    lang = {"content-language": "de"}
    replaced, renamed, deleted, before, behind = (uuid.uuid4() for _ in range(5))
    # (file id, its events as (type, data), last_version of its row, deleted)
    files = [
        (replaced, [("FileCreated", {"headers": gzip}), ("FileReplaced", {"headers": lang})], 2),
        (renamed, [("FileCreated", {"headers": gzip}), ("FileUpdated", {"name": "n"})], 2),
        (deleted, [("FileCreated", {"headers": lang}), ("FileDeleted", {})], 2),
        (before, [("FileCreated", {})], 1),  # an event from before stored headers
        # The projector has applied version 1 only: version 2 writes its own when applied.
        (behind, [("FileCreated", {"headers": gzip}), ("FileReplaced", {"headers": lang})], 1),
    ]
    conn = await asyncpg.connect(url)
    try:
        pos = 0
        for fid, events, last in files:
            await conn.execute(_FILE, fid, last, None if fid != deleted else datetime.now(UTC))
            for version, (kind, data) in enumerate(events, start=1):
                pos += 1
                await conn.execute(
                    _FILE_EVENT, f"file-{fid}", version, pos, uuid.uuid4(), kind,
                    orjson.dumps(data).decode(),
                )  # fmt: skip
        assert "0028_file_headers.sql" in await db.migrate(url)
        # A bare connection: jsonb comes back as its text.
        rows = await conn.fetch("SELECT id, headers FROM readmodel.files")
        headers = {r["id"]: orjson.loads(r["headers"]) for r in rows}
        assert headers == {replaced: lang, renamed: gzip, deleted: lang, before: {}, behind: gzip}
        rows = await conn.fetch("SELECT id, headers FROM readmodel.live_files")
        viewed = {r["id"]: orjson.loads(r["headers"]) for r in rows}
        assert viewed == {replaced: lang, renamed: gzip, before: {}, behind: gzip}
    finally:
        await conn.close()


async def test_0029_gives_the_uploads_recorded_before_it_their_stored_headers(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    """readmodel.uploads.headers: filled for the rows already there from their
    UploadInitiated events; {} for an upload whose event has none (none sent, or written
    before the field existed)."""
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0029":
            shutil.copy2(path, older / path.name)
    url = await db.ensure_database(pg_server.url, f"upheaders_{secrets.token_hex(4)}")
    await db.migrate(url, older)
    gzip = {"cache-control": "max-age=60", "content-encoding": "gzip"}
    keyed, empty, before = (uuid.uuid4() for _ in range(3))
    conn = await asyncpg.connect(url)
    try:
        for pos, (uid, data) in enumerate(
            [
                (keyed, {"key": "k", "headers": gzip}),
                (empty, {"key": "k2", "headers": {}}),
                (before, {}),  # no `headers`: an event from before them
            ],
            start=1,
        ):
            await conn.execute(_UPLOAD, uid, "INITIATED", "chunks", False)
            await conn.execute(
                _INITIATED, f"upload-{uid}", pos, uuid.uuid4(), orjson.dumps(data).decode()
            )
        assert "0029_upload_headers.sql" in await db.migrate(url)
        # A bare connection: jsonb comes back as its text.
        rows = await conn.fetch("SELECT id, headers FROM readmodel.uploads")
        headers = {r["id"]: orjson.loads(r["headers"]) for r in rows}
        assert headers == {keyed: gzip, empty: {}, before: {}}
    finally:
        await conn.close()


async def test_0030_gives_the_uploads_recorded_before_it_their_key(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    """readmodel.uploads.key: filled for the rows already there from their UploadInitiated
    events; null for an upload whose event names no key (absent, or null)."""
    older = tmp_path / "older"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0030":
            shutil.copy2(path, older / path.name)
    url = await db.ensure_database(pg_server.url, f"upkey_{secrets.token_hex(4)}")
    await db.migrate(url, older)
    keyed, odd, null, before = (uuid.uuid4() for _ in range(4))
    conn = await asyncpg.connect(url)
    try:
        for pos, (uid, data) in enumerate(
            [
                (keyed, {"bucket": "site", "key": "css/app.css"}),
                (odd, {"bucket": "site", "key": "dir/ü 名.bin"}),
                (null, {"bucket": "site", "key": None}),  # a plain upload
                (before, {}),  # no `key` at all
            ],
            start=1,
        ):
            await conn.execute(_UPLOAD, uid, "INITIATED", "chunks", False)
            await conn.execute(
                _INITIATED, f"upload-{uid}", pos, uuid.uuid4(), orjson.dumps(data).decode()
            )
        assert "0030_upload_key.sql" in await db.migrate(url)
        rows = await conn.fetch("SELECT id, key FROM readmodel.uploads")
        keys = {r["id"]: r["key"] for r in rows}
        assert keys == {keyed: "css/app.css", odd: "dir/ü 名.bin", null: None, before: None}
    finally:
        await conn.close()
