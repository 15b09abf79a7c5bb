"""Who may put a file into a bucket: the one rule for uploads (native and tus) and moves.

A bucket's objects are its owner's files whose `bucket` is its name, so a file may name a
bucket only if the file's owner owns that bucket (`default`, no bucket, is everyone's own).
Any other bucket (someone else's, public or private, a deleted or missing one, a name that
is not a bucket name) is 404 `bucket_not_found`, the same answer, so nothing is learnt.
This reads another aggregate (the bucket) than the one the command goes to, so it lives in
the adapter: a bucket deleted between this check and the command leaves the file labelled
with a bucket that no longer exists, outside every bucket's usage, as before.
"""

from __future__ import annotations

from api.context import AppContext
from domain.buckets import BucketState
from domain.buckets.names import is_bucket_name
from domain.errors import NotFound

NO_BUCKET = "default"


async def check_writable(c: AppContext, bucket: str | None, owner: str) -> None:
    """Raise NotFound unless a file of `owner` may be in `bucket`."""
    if bucket is None or bucket == NO_BUCKET:
        return
    st: BucketState | None = None
    if is_bucket_name(bucket):
        st = await c.load("buckets", f"bucket-{bucket}")
    if st is None or st.deleted or st.owner != owner:
        raise NotFound("bucket_not_found", "no such bucket", {"name": bucket[:64]})
