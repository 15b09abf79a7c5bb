"""Is the bucket a job writes into still the one it was asked for?

The API checks a destination bucket when a task or a fetch is made, and the job writes
into it later, sometimes much later (a task waiting in the queue, a fetch of many
gigabytes). Bucket names are global: deleted meanwhile and made again by someone else,
the name is their bucket, and the job's files or objects (an overwrite replacing theirs)
would land in it. So a job asks again, from the bucket's own stream (the read model may
lag), right before it writes.
"""

from __future__ import annotations

from datetime import datetime

from domain.buckets import BucketState
from domain.ports import EventStore
from domain.registry import AGGREGATES


async def bucket_gone(
    store: EventStore, bucket: str, owner: str, asked_at: datetime | None = None
) -> bool:
    """Whether `bucket` is gone for a job of `owner`: missing, deleted, or another user's.

    With `asked_at` (when the job was asked for), another user's bucket made before then
    is not gone (an admin may fetch into a user's bucket); one made since is."""
    if bucket == "default":
        return False
    events = await store.read_stream(AGGREGATES["buckets"].stream_id(bucket))
    st: BucketState | None = AGGREGATES["buckets"].fold(events)
    if st is None or st.deleted:
        return True
    if st.owner == owner:
        return False
    return asked_at is None or st.created_at > asked_at
