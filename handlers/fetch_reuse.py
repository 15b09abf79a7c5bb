"""The fetch cache across buckets and keys: a first fetch of a URL reuses a completed one.

The API already answers the same URL asked again (same owner, bucket and key) with the same
fetch for CAIRN_FETCH_TTL seconds. A fetch of that URL into another bucket or key is a
fetch of its own (another file, or an object), and it used to download the bytes again.
Now, when a worker starts such a fetch for the first time (generation 0: `refresh: true`
makes a later generation, which always downloads), it looks for the owner's fetch of the
same URL completed within the TTL, and if one is found records that fetch's response and
its pieces as its own: the blobs are content-addressed, so nothing is copied, and the
fetch completes as if it had downloaded them, through the same `_finish` (file or object
created), with the source's sha256: the same pieces, so nothing is read to hash them.

Not reused: a source whose sha256 differs from the one this fetch declares (the origin has
changed, or the caller expects other bytes), one over the size limit, or one whose pieces
are no longer all in the blob store. Safe against the blob collector: a completed fetch
keeps the references of its pieces (bus/blobs/references.py), and the new fetch's
FetchBytesAppended adds its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from domain import fetches as f
from domain.ports import BlobStore, EventStore
from projections import fetch_queries


async def reusable_source(
    pool: asyncpg.Pool,
    store: EventStore,
    blobs: BlobStore,
    fetch: f.FetchState,
    now: datetime,
    ttl: float,
    max_bytes: int,
) -> f.FetchState | None:
    """A completed fetch whose bytes `fetch` may take as its own, or None. One larger than
    `max_bytes` (CAIRN_FETCH_MAX_BYTES lowered since) is not: a download fails on it."""
    if fetch.generation != 0 or fetch.bytes or fetch.segments:
        return None
    since = now - timedelta(seconds=ttl)
    for source_id in await fetch_queries.completed_since(
        pool, fetch.owner, fetch.url, since, fetch.id
    ):
        # The read model said COMPLETED; the source's own events say what it holds.
        source = f.AGGREGATE.fold(await store.read_stream(f.AGGREGATE.stream_id(source_id)))
        if source is None or source.status != f.FetchStatus.COMPLETED or not source.pieces:
            continue
        if source.bytes > max_bytes:
            continue
        if fetch.sha256 is not None and source.completed_sha256 != fetch.sha256:
            continue
        if all([await blobs.exists(sha) for sha, _ in source.pieces]):
            return source
    return None
