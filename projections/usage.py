"""What counts against an owner's storage quota, read from the read models.

Shared by the API (api/limits.py, before an upload), the task workers (before a task
creates a file) and the fetch worker (before and while a body comes in): one definition of
"used", and one rule for going over (`over_quota`).

"Used" also holds the bytes reserved by uploads in flight (api.quota_reservations,
migrations/0019): without them, N concurrent uploads of one owner each passed the check
before any of them was recorded, and together went N times over. `reserve` checks and
reserves in one transaction under a per-owner advisory lock, so two reservations of one
owner are decided one after the other, each seeing the other's bytes; across API processes
too, the lock being PostgreSQL's."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from bus.store.eventstore import PostgresEventStore
from domain.uploads import LIVE
from domain.uploads.events import UploadInitiated

QUOTA_EXCEEDED = "the storage quota would be exceeded"


def over_quota(quota: int, used: int, requested: int) -> dict[str, int] | None:
    """The details of a refusal ({quota, used, requested}) when `requested` more bytes take
    an owner who used `used` past `quota` (0: no quota), else None: one rule for uploads
    (api/limits.py), tasks (handlers/tasks/fileops.py) and fetches (handlers/fetch_run.py)."""
    if quota > 0 and used + requested > quota:
        return {"quota": quota, "used": used, "requested": requested}
    return None


# A put's reservation (`r`, with a target) that still counts: its write not applied yet
# (nor a file named for it listed: a reply without a version, see api/routes/objects.py),
# or applied and the files read model not yet at the version it left.
PENDING = """(CASE WHEN r.version IS NULL
       THEN r.file_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM readmodel.files x WHERE x.id = r.target)
       ELSE NOT EXISTS (SELECT 1 FROM readmodel.files x
                         WHERE x.id = r.target AND x.last_version >= r.version) END)"""


# An upload (`u`, a row of readmodel.uploads) whose bucket was deleted after the upload
# began: the bucket it was made for is gone for good (made again, it is another one), so
# it cannot complete as it is. While active it holds what it received (bytes on disk), not
# its declared size: the rest is free again (a tus upload held it until terminated or
# expired). Judged from the event store (the authority, ahead of the buckets read model),
# by position: a BucketDeleted recorded after the upload's initiation. Nothing lost: its
# bytes count as long as it keeps them, and more bytes into it are reserved against the
# quota first (its whole size beside everything else, a hold with `completing` while
# they come and then what it received until its row has it: api.limits.more_bytes_held,
# for a native chunk and a tus PATCH alike); completing it, once its owner
# made the bucket again, asks for what of it does not count yet (reserve `completing`,
# api/completion.py: the read model may lag behind its last bytes). Nothing doubled: the
# freed room is handed out once, since every way back to the declared size is checked.
# A final (concatenation) is left out of this: its parts' bytes are held by it
# (storage_used's `held`), and stay so.
def _deleted_since(bucket: str, upload_id: str) -> str:
    """SQL: whether a BucketDeleted of `bucket` was recorded after `upload_id`'s first
    event (both SQL text expressions); one definition for WENT and `bucket_went`."""
    return f"""EXISTS (
    SELECT 1 FROM eventstore.events d
     WHERE d.stream_id = 'bucket-' || {bucket} AND d.event_type = 'BucketDeleted'
       AND d.position > (SELECT i.position FROM eventstore.events i
                          WHERE i.stream_id = 'upload-' || {upload_id} AND i.version = 1))"""


WENT = (
    "(u.mode <> 'final' AND u.status = ANY($3::text[]) AND "
    + _deleted_since("u.bucket", "u.id::text")
    + ")"
)


# What an upload's row (`u`) counts: its bytes received once its bucket went, else its
# declared size, or its bytes received without one ($3: the active statuses).
COUNTED = (
    f"(CASE WHEN {WENT} THEN u.bytes_received ELSE coalesce(u.file_size, u.bytes_received) END)"
)
# The same in a statement whose active statuses are $2.
COUNTED_2 = COUNTED.replace("$3::text[]", "$2::text[]")


async def bucket_went(db: asyncpg.Pool, upload_id: str, bucket: str) -> bool:
    """Whether the upload's bucket was deleted after the upload began (see WENT)."""
    sql = f"SELECT {_deleted_since('$2::text', '$1::text')}"
    return bool(await db.fetchval(sql, upload_id, bucket))


# How far back in the event store to look for uploads the projection has not seen yet.
UNPROJECTED_TAIL = 1000


async def storage_used(
    store: PostgresEventStore,
    owner: str,
    exclude_upload: str | None = None,
    conn: asyncpg.Connection | None = None,
    held_parts: Sequence[str] = (),
    exclude_reservation: str | None = None,
) -> int:
    """Bytes counted against `owner`'s quota, leaving out one upload (and its file); on
    `conn` when given (`reserve`, inside its transaction). `held_parts`: partial uploads
    left out as if a final held them (the parts of a concatenation about to be created).
    `exclude_reservation`: a reservation left out (one being resized).

    An object PUT replaces what its key holds, so the key counts the largest of its live
    size and the bytes of the puts on their way to it (reservations naming it as their
    `target`): the key ends with one of those, whichever write is applied last, so that
    bounds it whatever order two puts of the key, or a put and a delete, are applied in.
    A delete applied first drops the live size, not the put's bytes, which go on counting
    in full (the put will create the key afresh). A put's reservation counts until the
    files read model has the version its write left (`version`): until then the row may
    still show the old size.

    A tus concatenation (a final upload) is complete at once, its bytes its parts'; the
    parts stay active (reusable in another final) until they expire. Its bytes count once:
    in the final (then its file) while that counts, and not in its parts meanwhile. A part
    no final holds (never concatenated, or its finals' files deleted, or their uploads
    ended) counts as any active upload does."""
    excluded = uuid.UUID(exclude_upload) if exclude_upload else None
    db = conn or store.pool
    # Each part is read after the one its bytes move from, so that bytes moving meanwhile
    # are seen in one or the other, never in neither: a request's hold is deleted only once
    # its upload's event is committed, and the events are read after the holds; an
    # upload's event comes before its read-model row, which is read last. A hold for a file
    # (`file_id` set) and that file's row are read in one statement: counted exactly once.
    reserved = await db.fetchval(
        "SELECT coalesce(sum(bytes), 0) FROM api.quota_reservations"
        " WHERE owner = $1 AND expires_at > now() AND file_id IS NULL AND target IS NULL"
        " AND completing IS NULL"
        " AND id IS DISTINCT FROM $2",
        owner,
        uuid.UUID(exclude_reservation) if exclude_reservation else None,
    )
    # Uploads the projection may not have seen yet: the newest initiations, read through
    # the event store (so through the upcasters, like every other reader of events).
    initiated = [
        e
        for ev in await store.read_latest(UploadInitiated.type, UNPROJECTED_TAIL, conn, owner)
        if isinstance(e := ev.payload, UploadInitiated)
    ]
    recent = {uuid.UUID(e.upload_id): e.file_size or 0 for e in initiated}
    if excluded is not None:
        recent.pop(excluded, None)
    # The finals among them with their parts, one (final, part) pair a row.
    pairs = [
        (uuid.UUID(e.upload_id), uuid.UUID(p))
        for e in initiated
        if e.mode == "final" and uuid.UUID(e.upload_id) in recent
        for p in e.parts
    ]
    # Live: a partial upload with all its bytes (PARTIAL_COMPLETE) counts as before.
    active = [s.value for s in LIVE]
    # An upload counts until its file exists (whichever read model is ahead), so around a
    # completion the bytes are counted exactly once. A part is held (left out) exactly when
    # one of its finals counts in a term below: the final's live file (files), or, before
    # it has a file, its row (uploads, on the same conditions) or its event (recent) when
    # the read model has no row yet. The final's event comes before its row, both read here
    # after the holds, so a part stops counting where its final starts: around an
    # initiation the bytes are counted exactly once too (the create's own hold aside,
    # which overlaps as any create's does until it is released).
    used = await db.fetchval(
        f"""
        -- Each term a named CTE (one row, `n`), summed at the end; all read in one statement
        -- (one snapshot), which the exactly-once arguments above and below rely on.
        -- Partial uploads left out of listed_uploads and unlisted_uploads: finals count them.
        WITH held AS (
          -- Parts of a concatenation about to be created (`reserve`).
          SELECT unnest($8::uuid[]) AS id
          UNION
          -- Parts of finals only the events have, unless the final's file was deleted.
          SELECT t.part
            FROM unnest($6::uuid[], $7::uuid[]) AS t(id, part)
           WHERE NOT EXISTS (SELECT 1 FROM readmodel.uploads u WHERE u.id = t.id)
             AND NOT EXISTS (SELECT 1 FROM readmodel.files x
                              WHERE x.upload_id = t.id AND x.deleted_at IS NOT NULL)
          UNION
          -- Parts (those that could count, each looked up in the finals by part) of a
          -- final that counts below: as its live file, or, without a file yet, as an
          -- upload (on listed_uploads' own conditions).
          SELECT c.id
            FROM (SELECT id FROM readmodel.uploads
                   WHERE owner = $1 AND partial AND status = ANY($3::text[])
                  UNION ALL SELECT unnest($4::uuid[])) AS c(id)
           WHERE EXISTS (
                   SELECT 1 FROM readmodel.uploads f
                    WHERE f.owner = $1 AND f.mode = 'final' AND f.parts @> ARRAY[c.id]
                      AND f.id IS DISTINCT FROM $2
                      AND (EXISTS (SELECT 1 FROM readmodel.files x
                                    WHERE x.upload_id = f.id AND x.deleted_at IS NULL)
                           OR ((f.status = ANY($3::text[])
                                OR (f.status = 'COMPLETED'
                                    AND f.updated_at > now() - interval '1 hour'))
                               AND NOT EXISTS (SELECT 1 FROM readmodel.files x
                                                WHERE x.upload_id = f.id))))
        ),
        -- Live files (objects, fetched and copied files included), but the upload's left out.
        -- The owner's total is kept by a trigger (readmodel.owner_totals, migration 0025):
        -- one row, where summing the files grew with them (this runs under the owner's
        -- lock, so its cost bounds the rate of one owner's PUTs). The upload's own file,
        -- if any, is looked up by its upload id and taken off.
        live_files AS (
          SELECT coalesce((SELECT bytes FROM readmodel.owner_totals WHERE owner = $1), 0)
               - (SELECT coalesce(sum(size), 0) FROM readmodel.files
                   WHERE upload_id = $2 AND owner = $1 AND deleted_at IS NULL) AS n
        ),
        -- Uploads in the read model without a file yet: declared size, or bytes received.
        listed_uploads AS (
          SELECT coalesce(sum({COUNTED}), 0) AS n
            FROM readmodel.uploads u
           WHERE u.owner = $1 AND u.id IS DISTINCT FROM $2
             AND (u.status = ANY($3::text[])
                  OR (u.status = 'COMPLETED' AND u.updated_at > now() - interval '1 hour'))
             AND NOT EXISTS (SELECT 1 FROM readmodel.files f WHERE f.upload_id = u.id)
             AND u.id NOT IN (SELECT id FROM held)
        ),
        -- Uploads only the event store has yet (`recent`): their declared sizes.
        unlisted_uploads AS (
          SELECT coalesce(sum(t.size), 0) AS n
            FROM unnest($4::uuid[], $5::bigint[]) AS t(id, size)
           WHERE NOT EXISTS (SELECT 1 FROM readmodel.uploads u WHERE u.id = t.id)
             AND NOT EXISTS (SELECT 1 FROM readmodel.files f WHERE f.upload_id = t.id)
             AND t.id NOT IN (SELECT id FROM held)
        ),
        -- Holds of requests that made a file (`release` with file_id) not listed yet.
        file_holds AS (
          SELECT coalesce(sum(r.bytes), 0) AS n
            FROM api.quota_reservations r
           WHERE r.owner = $1 AND r.expires_at > now() AND r.file_id IS NOT NULL
             AND r.target IS NULL AND r.id IS DISTINCT FROM $9
             AND NOT EXISTS (SELECT 1 FROM readmodel.files f WHERE f.id = r.file_id)
        ),
        -- Holds for an upload (`completing`): what of them its row does not count yet.
        -- A completion's hold (`reserve` completing: an upload whose bucket went, made
        -- again) holds the upload's whole size; it adds what of it the upload's row does
        -- not count yet (as listed_uploads counts it: its bytes received once its bucket
        -- went; no row yet, what its event counts, its declared size: none for a deferred
        -- length, nothing without its event either), read in this one statement with
        -- that row and the files, and nothing once the row is completed or its file listed
        -- (the file counts it then): whichever read model is ahead, the bytes count once.
        -- Several holds of one upload (a completion's, a PATCH's or chunk's into an upload
        -- whose bucket went) count as the largest of them: they hold the same bytes. The
        -- upload left out ($2) is left out with its holds.
        upload_holds AS (
          SELECT coalesce(sum(greatest(0, h.top - coalesce(
                   (SELECT {COUNTED} FROM readmodel.uploads u WHERE u.id = h.completing),
                   (SELECT t.size FROM unnest($4::uuid[], $5::bigint[]) AS t(id, size)
                     WHERE t.id = h.completing),
                   0))), 0) AS n
            FROM (SELECT r.completing, max(r.bytes) AS top
                    FROM api.quota_reservations r
                   WHERE r.owner = $1 AND r.expires_at > now() AND r.completing IS NOT NULL
                     AND r.id IS DISTINCT FROM $9 AND r.completing IS DISTINCT FROM $2
                   GROUP BY r.completing) AS h
           WHERE NOT EXISTS (SELECT 1 FROM readmodel.uploads u
                              WHERE u.id = h.completing AND NOT u.status = ANY($3::text[]))
             AND NOT EXISTS (SELECT 1 FROM readmodel.files f WHERE f.upload_id = h.completing)
        ),
        -- Puts on their way to a key: what the largest adds to the key's live file.
        -- (Read with the key's row, in this one statement; the file counts in live_files.)
        put_holds AS (
          SELECT coalesce(sum(greatest(0, p.top - coalesce(f.size, 0))), 0) AS n
            FROM (SELECT r.target, max(r.bytes) AS top
                    FROM api.quota_reservations r
                   WHERE r.owner = $1 AND r.expires_at > now() AND r.target IS NOT NULL
                     AND r.id IS DISTINCT FROM $9
                     AND {PENDING}
                   GROUP BY r.target) AS p
            LEFT JOIN readmodel.files f
                   ON f.id = p.target AND f.owner = $1 AND f.deleted_at IS NULL
                  AND ($2::uuid IS NULL OR f.upload_id IS DISTINCT FROM $2)
        )
        SELECT live_files.n + listed_uploads.n + unlisted_uploads.n
               + file_holds.n + upload_holds.n + put_holds.n
          FROM live_files, listed_uploads, unlisted_uploads, file_holds, upload_holds, put_holds
        """,
        owner,
        excluded,
        active,
        list(recent),
        list(recent.values()),
        [f for f, _ in pairs],
        [p for _, p in pairs],
        [uuid.UUID(p) for p in held_parts],
        uuid.UUID(exclude_reservation) if exclude_reservation else None,
    )
    return int(used or 0) + int(reserved or 0)


async def key_holds(
    conn: asyncpg.Connection,
    owner: str,
    targets: Sequence[str],
    exclude_reservation: str | None = None,
) -> dict[str, int]:
    """What `storage_used` counts for the key of each object in `targets`: the largest of
    its live size and the puts on their way to it (leaving out one reservation). A put of
    N bytes to it adds max(0, N - this). One statement for them all."""
    if not targets:
        return {}
    rows = await conn.fetch(
        f"""
        SELECT t.id, greatest(
          (SELECT coalesce(max(size), 0) FROM readmodel.files
            WHERE id = t.id AND owner = $1 AND deleted_at IS NULL),
          (SELECT coalesce(max(r.bytes), 0) FROM api.quota_reservations r
            WHERE r.owner = $1 AND r.target = t.id AND r.expires_at > now()
              AND r.id IS DISTINCT FROM $3
              AND {PENDING})) AS holds
          FROM unnest($2::uuid[]) AS t(id)
        """,
        owner,
        [uuid.UUID(t) for t in targets],
        uuid.UUID(exclude_reservation) if exclude_reservation else None,
    )
    return {str(r["id"]): int(r["holds"] or 0) for r in rows}


# The advisory lock class of quota reservations (the key's second half: the owner's hash).
QUOTA_LOCK = 727_003
# How long a reservation counts at most: a request in flight longer loses it (its bytes
# were checked when it began); one left by a crashed process stops counting after this.
RESERVATION_TTL_SECONDS = 3600


async def reserve(
    store: PostgresEventStore,
    owner: str,
    quota: int,
    requested: int,
    exclude_upload: str | None = None,
    resize: str | None = None,
    parts: Sequence[str] = (),
    target: str | None = None,
    completing: str | None = None,
    file_id: str | None = None,
) -> tuple[str | None, dict[str, int] | None, int]:
    """Reserve `requested` bytes of `owner`'s quota: (the reservation's id, None, the bytes
    used besides it), or (None, the refusal's details, used) when they would go over.
    `resize`: an earlier reservation of the same request, which becomes `requested` bytes (its own bytes not
    counted against it); refused, it stays as it was. `parts`: the partial uploads of a
    concatenation of `requested` bytes about to be initiated; what of them counts now
    (no other final holds it) moves to it, so only the rest is reserved (and refused).
    `target`: the object (file id) an object PUT writes, replacing what its key holds:
    only what it adds to the key is asked (`key_holds`; details then say `replaced`), and
    a put that adds nothing is never refused, so an owner at (or over) the quota may
    replace an object with one no larger. "Used besides it" leaves the key out then, and
    the upload with `completing` (so `quota - used - requested` is what is left beside it).
    `completing`: an upload about to be completed, of `requested` bytes: only what of them
    it does not count now is asked (nothing, unless its bucket went since it began and the
    read model lags behind its bytes: see WENT), and the hold then counts until the uploads
    read model has it completed. The same for an upload about to grow to `requested`
    bytes (a tus length declared, bytes into an upload whose bucket went): the hold counts
    what of them its row does not (yet); an upload's holds count as the largest of them.
    `file_id`: the file the request is to make, known before it makes it (a task's copy):
    the hold is its from the start (as `release` with `file_id` makes it), counted in one
    statement with the files read model, so a file listed before the request is over (its
    reply waited for) is not counted twice meanwhile: a task's next item asking then was
    refused for room there was."""
    async with store.pool.acquire() as conn, conn.transaction():
        await _lock_owner(conn, owner)
        used = await storage_used(store, owner, exclude_upload, conn, exclude_reservation=resize)
        asked = requested
        if parts:
            # Read under the lock like `used`: no other final of them can come in between.
            rest = await storage_used(
                store, owner, exclude_upload, conn, held_parts=parts, exclude_reservation=resize
            )
            asked -= used - rest
        counted = 0  # what of `requested` counts already (an upload being completed, grown)
        if completing is not None:
            without = await storage_used(store, owner, completing, conn, exclude_reservation=resize)
            counted = used - without
            asked = max(0, requested - counted)
        replaced = 0
        if target is not None:
            # Read under the lock too: another put of the key, or one to come, sees this
            # reservation and is judged against it (the largest counts, see storage_used).
            replaced = (await key_holds(conn, owner, [target], resize))[target]
            asked = max(0, requested - replaced)
        # A put, or a completion, that adds nothing always fits.
        refusable = asked > 0 or (target is None and completing is None)
        if refusable and (details := over_quota(quota, used, asked)) is not None:
            if replaced:
                details["replaced"] = replaced
            return None, details, used - replaced - counted
        rid = uuid.UUID(resize) if resize is not None else uuid.uuid4()
        await conn.execute(
            "INSERT INTO api.quota_reservations (id, owner, bytes, expires_at, target,"
            " completing, file_id)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6, $7)"
            # A resize may name the upload its bytes go to now (a tus creation's hold,
            # once the upload exists, api/limits.QuotaHold.cover).
            " ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes,"
            " completing = coalesce(excluded.completing, api.quota_reservations.completing)",
            rid,
            owner,
            # A target's row holds the put's whole size: the key counts the largest. So
            # does a completion's: storage_used counts what of it its upload does not.
            requested if target is not None or completing is not None else asked,
            float(RESERVATION_TTL_SECONDS),
            uuid.UUID(target) if target is not None else None,
            uuid.UUID(completing) if completing is not None else None,
            uuid.UUID(file_id) if file_id is not None else None,
        )
        return str(rid), None, used - replaced - counted


# One request of `reserve_many`: `requested` bytes, for an object PUT to `target` or not.
Ask = tuple[int, str | None]


async def reserve_many(
    store: PostgresEventStore, owner: str, quota: int, asks: Sequence[Ask]
) -> list[tuple[str | None, dict[str, int] | None, int]]:
    """`reserve` for several requests of one owner at once (none with `parts`, `resize`,
    `completing`, `file_id` or an upload left out), decided in order under one take of
    the owner's lock: each answer is what `reserve` would have answered had they come one
    after the other in this order, from one usage read. Group commit for the quota: while
    one batch holds the lock, the next gathers (api/quota_batches.py), so one owner's concurrent
    small PUTs cost a lock, a usage read and an insert per batch, not per PUT.

    Why it is the same: a granted request adds to what the owner uses exactly what it was
    asked (a create its size; a put what it adds beyond what its key holds: the key counts
    the largest of its live size and its puts, so max(0, bytes - that)), and a later put
    of the same key is judged against the largest hold of the batch before it too."""
    if not asks:
        return []
    async with store.pool.acquire() as conn, conn.transaction():
        await _lock_owner(conn, owner)
        used = await storage_used(store, owner, None, conn)
        targets = sorted({t for _, t in asks if t is not None})
        holds = await key_holds(conn, owner, targets)
        answers: list[tuple[str | None, dict[str, int] | None, int]] = []
        granted: list[tuple[uuid.UUID, int, str | None]] = []
        for requested, target in asks:
            replaced = holds[target] if target is not None else 0
            asked = max(0, requested - replaced) if target is not None else requested
            if (asked > 0 or target is None) and (
                details := over_quota(quota, used, asked)
            ) is not None:
                if replaced:
                    details["replaced"] = replaced
                answers.append((None, details, used - replaced))
                continue
            rid = uuid.uuid4()
            answers.append((str(rid), None, used - replaced))
            used += asked
            if target is not None:
                holds[target] = max(replaced, requested)
            # A target's row holds the put's whole size (the key counts the largest).
            granted.append((rid, requested if target is not None else asked, target))
        if granted:
            await conn.execute(
                "INSERT INTO api.quota_reservations (id, owner, bytes, expires_at, target)"
                " SELECT g.id, $2, g.bytes, now() + make_interval(secs => $3), g.target"
                " FROM unnest($1::uuid[], $4::bigint[], $5::uuid[]) AS g(id, bytes, target)",
                [g[0] for g in granted],
                owner,
                float(RESERVATION_TTL_SECONDS),
                [g[1] for g in granted],
                [uuid.UUID(g[2]) if g[2] is not None else None for g in granted],
            )
        return answers


async def _lock_owner(conn: asyncpg.Connection, owner: str) -> None:
    """Take `owner`'s quota lock for the transaction on `conn`, then drop their spent holds.

    One owner's reservations are decided one at a time (held to commit); other owners are
    not held up. The two-key form keeps the key space apart from the event store's. The
    lock is its own statement, before any read: a statement's snapshot is taken when it
    starts, so one that also waited for the lock would not see what its holder wrote."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", QUOTA_LOCK, owner)
    await _drop_spent(conn, owner)


async def _drop_spent(conn: asyncpg.Connection, owner: str) -> None:
    """Delete `owner`'s holds that count no more (under the owner's lock, before reading):
    expired ones, puts' holds whose version the files read model has, and holds for an
    upload whose row counts them (their bytes, or the upload ended, or its file listed).
    The first two never count again: a row counts only more, but for its bucket's going,
    after which what it did not receive must not count. So an owner's many PUTs or
    PATCHes do not leave an hour of rows to every check."""
    await conn.execute(
        f"""DELETE FROM api.quota_reservations r WHERE r.owner = $1 AND (r.expires_at <= now()
             OR (r.version IS NOT NULL AND EXISTS (SELECT 1 FROM readmodel.files x
                  WHERE x.id = r.target AND x.last_version >= r.version))
             OR (r.completing IS NOT NULL
                 AND (EXISTS (SELECT 1 FROM readmodel.files x WHERE x.upload_id = r.completing)
                      OR EXISTS (SELECT 1 FROM readmodel.uploads u
                                  WHERE u.id = r.completing
                                    AND (NOT u.status = ANY($2::text[])
                                         OR {COUNTED_2} >= r.bytes)))))""",
        owner,
        [a.value for a in LIVE],
    )


async def keep(pool: asyncpg.Pool, reservation: str, size: int, upload: str | None = None) -> None:
    """The request is over, having brought an upload (the reservation's `completing`, or
    `upload`, which it becomes) to `size` bytes: its reservation stays, as `size` bytes,
    and counts what of them the uploads read model does not count yet (nothing once it
    does; see storage_used). No check: `size` bytes are stored, not asked for (a body
    without a length may have brought more than its hold had)."""
    await pool.execute(
        "UPDATE api.quota_reservations SET bytes = $2,"
        " completing = coalesce($3, completing) WHERE id = $1",
        uuid.UUID(reservation),
        size,
        uuid.UUID(upload) if upload is not None else None,
    )


async def release(
    pool: asyncpg.Pool, reservation: str, file_id: str | None = None, version: int | None = None
) -> None:
    """The request is over: its reservation goes, or (`file_id`: it made that file, which
    counts once the files read model has it) stays until then; or (`version`: a put to its
    target was applied, leaving the object's stream at that version) stays until the files
    read model has that version."""
    if version is not None:
        await pool.execute(
            "UPDATE api.quota_reservations SET version = $2 WHERE id = $1",
            uuid.UUID(reservation),
            version,
        )
    elif file_id is None:
        await pool.execute(
            "DELETE FROM api.quota_reservations WHERE id = $1", uuid.UUID(reservation)
        )
    else:
        await pool.execute(
            "UPDATE api.quota_reservations SET file_id = $2 WHERE id = $1",
            uuid.UUID(reservation),
            uuid.UUID(file_id),
        )
