"""ListObjectsV2 over the files read model: a bucket's live objects in key order.

Keys are compared in code point order (the `key` column is COLLATE "C", which on UTF-8 is
byte order, S3's order). Paging is keyset paging on the key: a page ends at a key (or a
common prefix) and the next starts strictly after it, so objects added or deleted while a
client pages are never the cause of a key being skipped or repeated. With a delimiter,
every key whose rest (after `prefix`) holds the delimiter rolls up into one common prefix,
emitted once; the scan then jumps past everything under it (an index range scan, not a
walk through a folder's keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

_BATCH = 1000
# Rows asked for right after a jump past a common prefix. Folders tend to sit next to
# folders: at the root of a bucket of ten folders of 1,000 keys, asking _BATCH after each
# jump read 10,000 rows to use ten (74 ms against nginx's autoindex at 2.2 ms, `just bench
# objects.list`). A scan that keeps finding objects grows back to _BATCH (x4 per query).
_AFTER_JUMP = 8


def successor(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with `prefix` (None: there
    is none, or `prefix` is empty). In code point order, skipping the surrogate block."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:
                nxt = 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


@dataclass(frozen=True)
class Bound:
    """Where a page starts: strictly after the key `after`, or at `start` (inclusive)."""

    after: str | None = None
    start: str | None = None


@dataclass
class Listing:
    objects: list[dict[str, Any]] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    # Where the next page starts (when truncated).
    next: Bound | None = None


def _object(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "key": r["key"],
        "id": str(r["id"]),
        "size": r["size"],
        "sha256": r["sha256"],
        "etag": f'"{r["sha256"]}"',
        "content_type": r["content_type"],
        "headers": r["headers"],  # stored HTTP headers, as the object's own JSON has them
        "last_modified": r["created_at"].isoformat(),
    }


# One lower bound and, within a prefix, one upper: plain range conditions the index
# (bucket, owner, key) scans from, whatever the parameters. asyncpg prepares statements,
# and PostgreSQL runs a prepared one with a generic plan after a few executions; with
# `($3 IS NULL OR key > $3)`-style bounds that plan could not start the index scan at the
# bound and read the bucket's keys from the prefix on, filtering, for every page and
# every jump past a common prefix.
_COLUMNS = "key, id, size, sha256, content_type, headers, created_at"
_WHERE = "WHERE bucket = $1 AND owner = $2 AND key IS NOT NULL AND deleted_at IS NULL AND key >= $3"
_PAGE_SQL = f"SELECT {_COLUMNS} FROM readmodel.files {_WHERE} ORDER BY key LIMIT $4"
_PAGE_IN_PREFIX_SQL = (
    f"SELECT {_COLUMNS} FROM readmodel.files {_WHERE} AND key < $5 ORDER BY key LIMIT $4"
)

# The jumps past common prefixes, done in PostgreSQL (a "loose index scan"): one index
# probe per step for the first key at or after the bound; while that key rolls up into a
# common prefix (its rest after the prefix, from character $4 on, holds the delimiter $5),
# the next probe starts at the prefix's successor: the key up to the delimiter's first
# occurrence, then $6, the delimiter's successor (see `successor`; the delimiter's last
# character is below U+10FFFF, so nothing carries). The walk stops at the first key that
# is an object, at the end of the range, or after $7 steps (what the page can still take,
# plus one). The root of a bucket of ten folders was one round trip per folder (6.8 ms
# against nginx's 1.6 ms, `just bench objects.list`); this is one for them all. strpos,
# left and substr count characters, as Python's str does, and find the first occurrence,
# as `str.find` does; the caller recomputes each common prefix from the key in Python.
_WALK_STEP = (
    "SELECT key FROM readmodel.files WHERE bucket = $1 AND owner = $2 AND key IS NOT NULL"
    " AND deleted_at IS NULL AND key >= {low}{upper} ORDER BY key LIMIT 1"
)


def _walk_sql(upper: str) -> str:
    first = _WALK_STEP.format(low="$3", upper=upper)
    step = _WALK_STEP.format(low="left(w.key, $4 + w.cut - 2) || $6", upper=upper)
    return (
        "WITH RECURSIVE walk(n, key, cut) AS ("
        f" SELECT 1, f.key, strpos(substr(f.key, $4), $5) FROM ({first}) f"
        " UNION ALL"
        " SELECT w.n + 1, f.key, strpos(substr(f.key, $4), $5)"
        f" FROM walk w CROSS JOIN LATERAL ({step}) f"
        " WHERE w.cut > 0 AND w.n < $7"
        ") SELECT key FROM walk ORDER BY n"
    )


_WALK_SQL = _walk_sql("")
_WALK_IN_PREFIX_SQL = _walk_sql(" AND key < $8")


def lower_bound(prefix: str, bound: Bound) -> str:
    """The smallest key a page may start at: at or after `prefix` and `bound.start`, and
    after `bound.after`. A key holds no NUL (domain/files/keys.py, and PostgreSQL text
    cannot), so the keys after `after` are exactly those at or after `after` + U+0001;
    Python compares strings by code point, the order of the COLLATE "C" column."""
    low = prefix
    if bound.start is not None:
        low = max(low, bound.start)
    if bound.after is not None:
        low = max(low, bound.after + "\x01")
    return low


def _common(prefix: str, delimiter: str | None, key: str) -> str | None:
    """The common prefix `key` rolls up into, or None when it is an object of the listing."""
    rest = key[len(prefix) :]
    cut = rest.find(delimiter) if delimiter else -1
    return None if cut < 0 else prefix + rest[: cut + len(delimiter or "")]


async def list_objects(
    pool: asyncpg.Pool,
    bucket: str,
    owner: str,
    *,
    prefix: str = "",
    delimiter: str | None = None,
    bound: Bound | None = None,
    limit: int = 1000,
) -> Listing:
    """One page: at most `limit` entries (objects and common prefixes together), and
    whether more follow (`truncated`, then `next` is where the next page starts)."""
    out = Listing()
    upper = successor(prefix)  # the prefix as an index range [prefix, upper)
    bound = bound or Bound()
    last: Bound | None = None
    batch = _BATCH
    # The jumps run in PostgreSQL (_WALK_SQL) unless the delimiter ends in U+10FFFF, whose
    # successor carries into the characters before it: then one query per common prefix.
    walkable = delimiter is not None and delimiter[-1:] not in ("", "\U0010ffff")
    # A delimiter listing starts with a walk: its first key may as well be a folder's.
    walk = walkable
    async with pool.acquire() as conn:
        while True:
            room = limit - len(out.objects) - len(out.common_prefixes)
            low = lower_bound(prefix, bound)
            if walk:
                assert delimiter is not None
                walk = False
                # Never more steps than the page can still take, plus the one that tells
                # whether more follow.
                args = (bucket, owner, low, len(prefix) + 1, delimiter, successor(delimiter))
                if upper is None:
                    found = await conn.fetch(_WALK_SQL, *args, room + 1)
                else:
                    found = await conn.fetch(_WALK_IN_PREFIX_SQL, *args, room + 1, upper)
                for r in found:
                    key: str = r["key"]
                    common = _common(prefix, delimiter, key)
                    if common is None:
                        bound = Bound(start=key)  # an object: the range scan goes on from it
                        break
                    if len(out.common_prefixes) + len(out.objects) == limit:
                        out.truncated, out.next = True, last  # one more entry exists
                        return out
                    out.common_prefixes.append(common)
                    last = Bound(start=successor(common))
                    # Folders tend to sit next to folders: few rows after the walk.
                    batch = _AFTER_JUMP
                else:
                    return out  # no key is left in the range
                continue
            # Never more rows than the page can still take, plus the one that tells whether
            # more follow.
            want = min(batch, room + 1)
            if upper is None:
                rows = await conn.fetch(_PAGE_SQL, bucket, owner, low, want)
            else:
                rows = await conn.fetch(_PAGE_IN_PREFIX_SQL, bucket, owner, low, want, upper)
            for r in rows:
                key = r["key"]
                if len(out.objects) + len(out.common_prefixes) == limit:
                    out.truncated, out.next = True, last  # one more entry exists
                    return out
                common = _common(prefix, delimiter, key)
                if common is None:
                    out.objects.append(_object(r))
                    last = Bound(after=key)
                    continue
                if walkable:
                    # The walk starts at this key, emits its common prefix and jumps on.
                    bound, walk = Bound(start=key), True
                    break
                out.common_prefixes.append(common)
                jump = successor(common)
                if jump is None:
                    return out  # nothing sorts after it
                last = Bound(start=jump)
                batch = _AFTER_JUMP
                break  # scan again from past everything under the common prefix
            else:
                if len(rows) < want:
                    return out
                last_key = rows[-1]["key"]
                bound = Bound(after=last_key)
                batch = min(_BATCH, batch * 4)
                continue
            if walk:
                continue
            assert last is not None and last.start is not None
            bound = last
