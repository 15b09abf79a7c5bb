"""objects.list: listing a bucket, and the owner's files, next to nginx's JSON autoindex.

Every other capability had a scenario; listing is the one that reads many rows of the
Postgres read model per request (`readmodel.files`: keyset pages of ListObjectsV2 in
projections/object_queries.py, offset pages of `GET /v1/files` in projections/queries.py),
so its cost grows with what a bucket holds, not with the bytes.

One bucket gets `scale.list_objects` small objects (10,000; quick: 1,000) keyed
`d{i % 10}/f{i:05}`, PUT from 32 concurrent clients as objects.put_4k does; nginx's data
dir gets the same names as files, once flat (one directory of N files) and once as a tree
(10 sub-directories, `d0` to `d9`). Then, from one client (the same httpx client for both
servers, one connection to each), the ways take turns, each listing the whole thing
once a round, round after round for `scale.list_seconds` per way; a run's rate is the
entries (keys, common prefixes, files or directory entries) of one listing over its
median time:

- the full listing, following `next_cursor` until `is_truncated` is false (1,000 keys a
  page), against nginx's listing of the flat directory (all N in one answer);
- the delimiter listing of the root (10 common prefixes) against nginx's root of the tree,
  and of one prefix (N/10 keys) against one of its sub-directories;
- `GET /v1/files?bucket=...` paged by `offset` (sort by name, 1,000 a page), against the
  flat directory too.

Each listing is checked once before anything is timed (every key once and in order, the
counts the layout gives): a rate of a wrong listing means nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import secrets
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.bench import client as native
from tests.bench.core import Result, Row, Scenario, percentile
from tests.bench.runner import Bench

CLIENTS = 32  # seeding PUTs in flight, as objects.put_4k
SIZE = 16  # bytes per object and per file: a listing does not read them
PAGE = 1000  # the objects listing's default and maximum `limit`; the same for /v1/files
FOLDERS = 10  # keys d0/ to d9/: a root listing with a delimiter has 10 common prefixes
ONE = "d3/"  # the prefix (and nginx's sub-directory) listed alone
POLL = 0.05  # seconds between looks at the read model while it catches up, as a client does
PROJECTION_TIMEOUT = 300.0

# The ways, in the order of the first run (each run starts one further along).
CAIRN_WAYS = ("full", "root", "prefix", "files")
NGINX_WAYS = ("flat", "tree", "sub")


def key(i: int) -> str:
    return f"d{i % FOLDERS}/{name(i)}"


def name(i: int) -> str:
    return f"f{i:05}"


def _check(got: Sequence[Any], expected: Sequence[Any], what: str) -> None:
    """`got` is `expected` exactly (each once, in order), or say how it is not."""
    if list(got) == list(expected):
        return
    dup = len(got) - len(set(got))
    missing = len(set(expected) - set(got))
    extra = len(set(got) - set(expected))
    first = next(
        (k for k, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    raise AssertionError(
        f"{what}: {len(got)} entries, expected {len(expected)} ({dup} repeated, {missing}"
        f" missing, {extra} unexpected); first difference at {first}:"
        f" {got[first] if first < len(got) else None!r} against"
        f" {expected[first] if first < len(expected) else None!r}"
    )


def _json(r: httpx.Response, what: str) -> Any:
    if r.status_code != 200:
        raise AssertionError(f"{what}: HTTP {r.status_code} {r.text[:300]}")
    return r.json()


# ---------------------------------------------------------------------------- the listings


async def bucket_listing(
    c: httpx.AsyncClient, url: str, headers: dict[str, str], **params: str
) -> tuple[list[str], list[str], int]:
    """Every page of a bucket's listing, following the cursor until `is_truncated` is
    false: (keys, common prefixes, pages)."""
    keys: list[str] = []
    prefixes: list[str] = []
    cursor: str | None = None
    for pages in itertools.count(1):
        q = {**params, "cursor": cursor} if cursor else params
        page = _json(await c.get(url, params=q, headers=headers), "object listing")
        items = [o["key"] for o in page["items"]]
        if page["key_count"] != len(items) + len(page["common_prefixes"]):
            raise AssertionError(f"key_count {page['key_count']} on page {pages}")
        keys += items
        prefixes += page["common_prefixes"]
        if not page["is_truncated"]:
            return keys, prefixes, pages
        cursor = page["next_cursor"]
        if not cursor:
            raise AssertionError(f"page {pages} is truncated without a next_cursor")
    raise AssertionError("unreachable")


async def files_listing(
    c: httpx.AsyncClient, url: str, headers: dict[str, str], bucket: str, limit: int = PAGE
) -> tuple[list[str], list[str], int]:
    """Every page of `GET /v1/files` of one bucket by name, `offset` after `offset` until
    the total: (names, keys, total)."""
    names: list[str] = []
    keys: list[str] = []
    while True:
        q: dict[str, str | int] = {"bucket": bucket, "sort": "name", "order": "asc"}
        q |= {"limit": limit, "offset": len(names)}
        page = _json(await c.get(url, params=q, headers=headers), "GET /v1/files")
        total = page["total"]
        names += [f["name"] for f in page["items"]]
        keys += [f["key"] for f in page["items"]]
        if not page["items"] or len(names) >= total:
            return names, keys, total


async def autoindex(c: httpx.AsyncClient, url: str) -> list[tuple[str, str]]:
    """nginx's JSON listing of one directory: (name, type) of each entry."""
    return [(e["name"], e["type"]) for e in _json(await c.get(url), f"nginx autoindex {url}")]


async def _rounds(
    ops: dict[str, Callable[[], Awaitable[int]]], seconds: float, first: int
) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Rounds in which every way lists once (`ops`: one whole listing each, returning how
    many entries it listed), the order turning by one each round, until `seconds` per way
    have passed (and at least 3 rounds): the entries of each way's listing and every
    listing's seconds.

    Interleaved rather than one way for `seconds`, then the next: on a machine shared with
    other work, a burst of someone else's CPU then falls on every way alike instead of on
    whichever way was being timed (back to back, nginx's rate of one quick run swung 2.6x
    between two runs a minute apart)."""
    ways = list(ops)
    entries: dict[str, int] = {}
    times: dict[str, list[float]] = {w: [] for w in ways}
    t0 = time.perf_counter()
    for r in itertools.count(first):
        k = r % len(ways)
        for way in ways[k:] + ways[:k]:
            t = time.perf_counter()
            listed = await ops[way]()
            times[way].append(time.perf_counter() - t)
            if entries.setdefault(way, listed) != listed:
                raise AssertionError(f"{way}: {listed} entries, {entries[way]} before")
        if r - first >= 2 and time.perf_counter() - t0 >= seconds * len(ways):
            return entries, times
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- set-up


async def _seed(bench: Bench, bucket: str, n: int) -> float:
    """PUT the `n` objects from CLIENTS concurrent clients; their PUTs/s. Then wait until
    the read model (what both listings read) has them all."""
    async with bench.cairn_client(conns=CLIENTS) as c:
        (await c.post("/v1/buckets", json={"name": bucket})).raise_for_status()
        numbers = iter(range(n))  # shared: each worker takes the next number

        async def worker() -> None:
            for i in numbers:
                r = await c.put(f"/v1/buckets/{bucket}/objects/{key(i)}", content=os.urandom(SIZE))
                if r.status_code != 201:
                    raise AssertionError(f"PUT {key(i)}: HTTP {r.status_code} {r.text[:200]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        rate = n / (time.perf_counter() - t0)
        # The PUTs were answered once their events were stored; the read model follows a
        # bounded lag behind, and a listing before it has them all would be checked short.
        async with asyncio.timeout(PROJECTION_TIMEOUT):
            while True:
                r = await c.get("/v1/files", params={"bucket": bucket, "limit": 1})
                if int(r.headers.get("X-Total-Count", 0)) >= n:
                    return rate
                await asyncio.sleep(POLL)


def _write_dirs(root: Path, n: int) -> None:
    """The same names on disk: `flat/f00000...` and `tree/d{i % 10}/f{i:05}`. Directories
    are made world-readable: nginx's workers run as another user when the master is root."""
    shutil.rmtree(root, ignore_errors=True)
    for d in [root, root / "flat", root / "tree"] + [root / "tree" / f"d{j}" for j in range(10)]:
        d.mkdir()
        d.chmod(0o755)
    for i in range(n):
        (root / "flat" / name(i)).write_bytes(os.urandom(SIZE))
        (root / "tree" / key(i)).write_bytes(os.urandom(SIZE))
    os.sync()


# ---------------------------------------------------------------------------- the scenario


async def list_objects(bench: Bench, res: Result) -> None:
    s = bench.scale
    n = s.list_objects
    assert bench.cairn is not None
    cairn = bench.cairn
    bucket = f"bench-{secrets.token_hex(6)}"
    seeded = await _seed(bench, bucket, n)
    nginx = bench.nginx
    tree = f"list-{secrets.token_hex(4)}"
    if nginx is not None:
        await asyncio.to_thread(_write_dirs, nginx.data_dir / tree, n)
    await bench.settle()

    keys = sorted(key(i) for i in range(n))  # code point order, as the listing's
    one = [k for k in keys if k.startswith(ONE)]
    objects_url = f"{cairn.url}/v1/buckets/{bucket}/objects"
    files_url = f"{cairn.url}/v1/files"
    auth = cairn.headers
    rates: dict[str, list[float]] = {w: [] for w in CAIRN_WAYS + NGINX_WAYS}
    times: dict[str, list[float]] = {w: [] for w in CAIRN_WAYS + NGINX_WAYS}
    # One client for both servers (its pool keeps one connection to each): the same
    # client's cost is in every figure, so the ratio is the servers'. nginx ignores the
    # Authorization header that goes to it too.
    async with native.client(conns=2) as c:

        async def full() -> int:
            got, prefixes, _ = await bucket_listing(c, objects_url, auth)
            return len(got) + len(prefixes)

        async def root() -> int:
            got, prefixes, _ = await bucket_listing(c, objects_url, auth, delimiter="/")
            return len(got) + len(prefixes)

        async def prefix() -> int:
            got, prefixes, _ = await bucket_listing(c, objects_url, auth, prefix=ONE, delimiter="/")
            return len(got) + len(prefixes)

        async def files() -> int:
            names, _, _ = await files_listing(c, files_url, auth, bucket)
            return len(names)

        ops: dict[str, Callable[[], Awaitable[int]]] = {
            "full": full,
            "root": root,
            "prefix": prefix,
            "files": files,
        }

        # Correctness first, untimed (this also opens the connections and warms each
        # path once, so the way timed first does not pay for that).
        got, prefixes, pages = await bucket_listing(c, objects_url, auth)
        _check(got, keys, "full listing")
        _check(prefixes, [], "full listing's common prefixes")
        if pages != math.ceil(n / PAGE):
            raise AssertionError(f"full listing in {pages} pages, expected {math.ceil(n / PAGE)}")
        got, prefixes, _ = await bucket_listing(c, objects_url, auth, delimiter="/")
        _check(prefixes, [f"d{j}/" for j in range(FOLDERS)], "root's common prefixes")
        _check(got, [], "root's keys")
        got, prefixes, _ = await bucket_listing(c, objects_url, auth, prefix=ONE, delimiter="/")
        _check(got, one, f"keys under {ONE}")
        _check(prefixes, [], f"common prefixes under {ONE}")
        names, file_keys, total = await files_listing(c, files_url, auth, bucket)
        if total != n:
            raise AssertionError(f"GET /v1/files: total {total}, expected {n}")
        _check(names, [name(i) for i in range(n)], "GET /v1/files names")
        _check(file_keys, [key(i) for i in range(n)], "GET /v1/files keys")
        # Smaller pages too, checked and not timed: a quick run's 1,000 keys are one page,
        # and the cursor must carry a listing across pages, past common prefixes as well.
        small = PAGE // 10
        got, prefixes, pages = await bucket_listing(c, objects_url, auth, limit=str(small))
        _check(got, keys, f"full listing by {small}")
        if prefixes or pages != math.ceil(n / small):
            raise AssertionError(f"full listing by {small}: {pages} pages, {prefixes[:3]}")
        got, prefixes, pages = await bucket_listing(c, objects_url, auth, delimiter="/", limit="3")
        _check(prefixes, [f"d{j}/" for j in range(FOLDERS)], "root's common prefixes by 3")
        if got or pages != math.ceil(FOLDERS / 3):
            raise AssertionError(f"root by 3: {pages} pages, keys {got[:3]}")
        names, file_keys, _ = await files_listing(c, files_url, auth, bucket, limit=small)
        _check(names, [name(i) for i in range(n)], f"GET /v1/files names by {small}")
        _check(file_keys, [key(i) for i in range(n)], f"GET /v1/files keys by {small}")
        if nginx is not None:
            flat_url = nginx.list_url(f"{tree}/flat")
            tree_url = nginx.list_url(f"{tree}/tree")
            sub_url = nginx.list_url(f"{tree}/tree/{ONE}")
            _check(await autoindex(c, flat_url), [(name(i), "file") for i in range(n)], "flat")
            _check(
                await autoindex(c, tree_url),
                [(f"d{j}", "directory") for j in range(FOLDERS)],
                "nginx's tree",
            )
            _check(
                await autoindex(c, sub_url),
                [(k.removeprefix(ONE), "file") for k in one],
                f"nginx's {ONE}",
            )

            def nginx_op(url: str) -> Callable[[], Awaitable[int]]:
                async def op() -> int:
                    return len(await autoindex(c, url))

                return op

            ops |= {
                "flat": nginx_op(flat_url),
                "tree": nginx_op(tree_url),
                "sub": nginx_op(sub_url),
            }

        for i, warmup in bench.iterations():
            listed, ts = await _rounds(ops, s.list_seconds, first=i)
            if not warmup:
                for way, seconds in ts.items():
                    # The median listing, so that one stalled listing (a scheduler hiccup
                    # on two shared cores) does not move a run's figure.
                    rates[way].append(listed[way] / statistics.median(seconds))
                    times[way] += seconds

    note = None if nginx is not None else bench.nginx_note
    flat = f"nginx autoindex JSON, one directory of {n:,} files"
    for way, metric, base, baseline in (
        ("full", f"full listing of {n:,} keys, cursor pages of {PAGE:,}", "flat", flat),
        (
            "root",
            f"delimiter listing of the root ({FOLDERS} common prefixes)",
            "tree",
            f"nginx autoindex JSON, the root of {FOLDERS} directories",
        ),
        (
            "prefix",
            f"delimiter listing of one prefix ({len(one):,} keys)",
            "sub",
            f"nginx autoindex JSON, one directory of {len(one):,} files",
        ),
        ("files", f"GET /v1/files of the {n:,} objects, offset pages of {PAGE:,}", "flat", flat),
    ):
        res.rows.append(Row(metric, "entries/s", rates[way], baseline, rates[base] or None, note))
    res.notes.append(
        "ms per whole listing, p50 / p99: "
        + "; ".join(
            f"{way} {1000 * percentile(times[way], 50):.1f} / {1000 * percentile(times[way], 99):.1f}"
            for way in CAIRN_WAYS + NGINX_WAYS
            if times[way]
        )
    )
    res.notes.append(
        f"{n:,} objects of {SIZE} B keyed d{{i % {FOLDERS}}}/f{{i:05}} in one bucket, PUT from"
        f" {CLIENTS} clients at {seeded:.0f} PUTs/s; nginx's data dir holds the same names"
        f" flat and as {FOLDERS} sub-directories. One client, one listing at a time, the"
        f" ways taking turns (each once a round, for {s.list_seconds:.0f} s per way and run);"
        " a run's figure is one listing's entries over its median time; every listing"
        " checked once before timing (every key once, in order)"
    )


SCENARIOS = [
    Scenario(
        "objects.list",
        "listing a bucket of 10,000 keys (quick: 1,000; cursor pages, delimiter) and"
        " GET /v1/files, vs nginx's JSON autoindex of as many files",
        list_objects,
        needs=frozenset({"nginx"}),
    ),
]
