"""README "Backup and restore", run as an operator runs it, against a real `cairn up`.

Online backup of an embedded install: blobs copied once, the database dumped (`cairn db
dump`), blobs copied again; the data dir's secrets beside them. Then the install is wiped
and restored (`cairn db restore` into the fresh data dir, the blobs copied back) and every
object reads back with its sha256, under a token minted before the backup. An object
stored between the first blob pass and the dump is there (the second pass caught its
blob); one stored after the dump is not (the database is the point in time).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

import httpx
import pytest

from bus.run.embedded import EmbeddedPostgres
from bus.store import db
from bus.store.db import MIGRATIONS_DIR
from tests.faults.proc import Up, bearer, cairn_env, cli, run_up, stop_cleanly

# Inline (a row of blobs.inline), one blob file, several blob files.
SIZES = {"small": 3_000, "medium": 200_000, "large": 3_000_000}
SECRETS = ("jwt-secret", "signing-key")


async def _put(client: httpx.AsyncClient, up: Up, key: str, body: bytes) -> None:
    r = await client.put(f"{up.url}/v1/buckets/keep/objects/{key}", content=body)
    assert r.status_code == 201, r.text


@pytest.mark.timeout(400)
async def test_backup_wipe_restore_reads_every_file_back(tmp_path: Path, runs: list[Up]) -> None:
    data, backup = tmp_path / "data", tmp_path / "backup"
    env = cairn_env(data)
    up = await run_up(env, tmp_path, "before", runs)
    auth = await bearer(env)
    bodies = {k: os.urandom(n) for k, n in SIZES.items()}
    async with httpx.AsyncClient(headers=auth, timeout=60) as client:
        r = await client.post(f"{up.url}/v1/buckets", json={"name": "keep"})
        assert r.status_code == 201, r.text
        for key, body in bodies.items():
            await _put(client, up, key, body)

        # 1. the blobs, 2. the database, 3. the blobs again: whatever the dump names is in
        # one of the two copies.
        store = f"file://{backup / 'blobs'}"
        code, out, err = await cli(env, "blobs", "migrate", "--to", store, timeout=120)
        assert code == 0, out + err
        bodies["between"] = os.urandom(500_000)
        await _put(client, up, "between", bodies["between"])
        code, out, err = await cli(env, "db", "dump", str(backup / "cairn.pgc"))
        assert code == 0, out + err
        code, out, err = await cli(env, "blobs", "migrate", "--to", store, timeout=120)
        assert code == 0, out + err
        for name in SECRETS:
            shutil.copy2(data / name, backup / name)
        await _put(client, up, "after-the-dump", os.urandom(100_000))
    await stop_cleanly(up)

    shutil.rmtree(data)
    data.mkdir()
    for name in SECRETS:
        shutil.copy2(backup / name, data / name)
    code, out, err = await cli(env, "db", "restore", str(backup / "cairn.pgc"), timeout=120)
    assert code == 0, out + err
    code, out, err = await cli(
        env, "blobs", "migrate", "--from", store, "--to", f"file://{data / 'blobs'}", timeout=120
    )
    assert code == 0, out + err
    # A second restore would overwrite a live database: refused, in one line.
    code, out, err = await cli(env, "db", "restore", str(backup / "cairn.pgc"), timeout=120)
    assert code == 1 and err.startswith("cairn: error: the database at "), out + err
    assert "already holds Cairn's tables" in err and len(err.strip().splitlines()) == 1

    up = await run_up(env, tmp_path, "restored", runs)
    async with httpx.AsyncClient(headers=auth, timeout=60) as client:
        for key, body in bodies.items():
            r = await client.get(f"{up.url}/v1/buckets/keep/objects/{key}")
            assert r.status_code == 200, (key, r.text)
            assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(body).hexdigest()
            assert r.headers["etag"].strip('"') == hashlib.sha256(body).hexdigest()
        r = await client.get(f"{up.url}/v1/buckets/keep/objects/after-the-dump")
        assert r.status_code == 404, r.text
        listed = await client.get(f"{up.url}/v1/buckets/keep/objects")
        assert sorted(i["key"] for i in listed.json()["items"]) == sorted(bodies)
    await stop_cleanly(up)


async def test_an_older_database_gets_the_newer_migrations_once_and_dumps_to_an_external_one(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    """Upgrading: a database migrated by an older Cairn (all migrations but the last) gets
    the rest from `cairn migrate` (which `cairn up` and the deploy Job run at every start),
    and a second run has nothing to do. Then the external-PostgreSQL path of a backup:
    `cairn db dump` / `cairn db restore` with CAIRN_DATABASE_URL, into a new database."""
    older = tmp_path / "older-migrations"
    older.mkdir()
    names = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    for name in names[:-1]:
        shutil.copy2(MIGRATIONS_DIR / name, older / name)
    tag = secrets.token_hex(4)
    url = await db.ensure_database(pg_server.url, f"upgrade_{tag}")
    assert await db.migrate(url, older) == names[:-1]

    env = cairn_env(tmp_path / "data")
    env["CAIRN_DATABASE_URL"] = url
    code, out, err = await cli(env, "migrate")
    assert (code, out.strip()) == (0, f"applied: {names[-1]}"), err
    code, out, err = await cli(env, "migrate")
    assert (code, out.strip()) == (0, "database is up to date"), err

    code, out, err = await cli(env, "db", "dump", str(tmp_path / "x.pgc"))
    assert code == 0, out + err
    env["CAIRN_DATABASE_URL"] = await db.ensure_database(pg_server.url, f"restored_{tag}")
    code, out, err = await cli(env, "db", "restore", str(tmp_path / "x.pgc"))
    assert code == 0, out + err
    code, out, err = await cli(env, "migrate")
    assert (code, out.strip()) == (0, "database is up to date"), err


async def test_a_dump_is_readable_by_its_owner_only(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    """A dump holds every user's file names, metadata and the small blobs' bytes
    (`blobs.inline`), so it is kept like `blobs/` and the secrets: mode 0600, whatever the
    umask (it was 0644 under the usual 022, readable by every local account), also when
    it replaces a file that was readable by others."""
    url = await db.ensure_database(pg_server.url, f"dumpmode_{secrets.token_hex(4)}")
    await db.migrate(url)
    env = cairn_env(tmp_path / "data")
    env["CAIRN_DATABASE_URL"] = url
    fresh, existing = tmp_path / "fresh.pgc", tmp_path / "existing.pgc"
    existing.write_bytes(b"an older dump")
    existing.chmod(0o644)
    old_umask = os.umask(0o022)  # the usual one, inherited by `cairn`
    try:
        for path in (fresh, existing):
            code, out, err = await cli(env, "db", "dump", str(path))
            assert code == 0, out + err
            assert path.stat().st_mode & 0o777 == 0o600, (path, oct(path.stat().st_mode))
            assert path.read_bytes().startswith(b"PGDMP")
    finally:
        os.umask(old_umask)
    # A file that cannot be made is one line, never a traceback.
    code, out, err = await cli(env, "db", "dump", str(tmp_path / "missing" / "x.pgc"))
    assert code == 1 and err.startswith("cairn: error: cannot write the dump to "), out + err
    assert len(err.strip().splitlines()) == 1, err
