"""Who may read and write what: the one place where Cairn decides access to files, buckets
and objects (every route asks here, none decides for itself).

The rules (README, "Access"):

- A file's owner and admins may do anything with it.
- A file that is an object of a PUBLIC bucket (its `bucket` names a live public bucket of
  the same owner) is readable (GET, HEAD; the bucket's objects listable) by anyone,
  authenticated or not. Writing (PUT, PATCH, DELETE, signing) stays the owner's (and
  admins'). Files in no bucket (`default`) and objects of private buckets are private.
- A valid signed URL (api/http/signing.py) grants exactly its method on exactly its
  resource until it expires, without authentication; a request that carries a signature is
  judged by the signature alone, so a bad link fails the same way for everyone: 403 (the
  one place 403 is right: the URL itself is bad, and says nothing about the resource).
- Nobody learns that something private exists: an authenticated caller without access
  gets 404, exactly as for something missing; an anonymous caller gets 401 "authentication
  required" for anything not public, missing or not.

A bucket name stays on a file when its bucket is deleted, and a deleted name may be created
again by anyone: the owner check (bucket owner == file owner) keeps another user's new
public bucket of that name from exposing the old owner's files.

Who may put a file into a bucket (uploads native and tus, moves): only into a bucket the
file's owner owns (`default`, no bucket, is everyone's own). Any other bucket (someone
else's, public or private, a deleted or missing one, a name that is not a bucket name) is
404 `bucket_not_found`, the same answer, so nothing is learnt. This reads another aggregate
(the bucket) than the one the command goes to, so it lives in the adapter: a bucket deleted
between this check and the command leaves the file labelled with a bucket that no longer
exists, outside every bucket's usage, as before.

Buckets are read through the process's cache (api/bucket_cache.py), which forgets a bucket
when it changes; a change made by another API process is seen once its NOTIFY arrives, the
same kind of race as the one above, milliseconds wide.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from api.auth import Principal, authentication_required
from api.context import AppContext, parse_uuid
from api.errors import ApiError
from api.http.signing import NO_VERSION, PARAMS, Grant, SignatureError, carries_signature
from domain.buckets import BucketState
from domain.buckets.names import bucket_not_found, is_bucket_name
from domain.errors import DomainError, NotFound
from domain.files import FileState

NO_BUCKET = "default"


def file_path(file_id: str) -> str:
    """A file's content path, which its signed URLs name."""
    return f"/v1/files/{file_id}/content"


def file_resource(file_id: str, owner: str) -> str:
    """What a signed URL for a file's content grants: that file while `owner` owns it. An
    object's file id comes from its bucket and key, so whoever takes a deleted bucket's
    name and writes the same key writes the same file: without the owner, the first
    owner's URLs would serve the next owner's object."""
    return json.dumps([file_path(file_id), owner])


def object_path(bucket: str, key: str) -> str:
    """An object's API path (the key as stored, not percent-encoded)."""
    return f"/v1/buckets/{bucket}/objects/{key}"


def object_resource(bucket: str, key: str, owner: str) -> str:
    """What a signed URL for an object grants: the key of the bucket while `owner` owns it
    (a bucket deleted and created again by someone else is another grant: the old URLs
    fail). JSON keeps the pair unambiguous whatever the key and owner hold."""
    return json.dumps([object_path(bucket, key), owner])


def object_version(st: FileState | None) -> str:
    """The version token a signed PUT names: `none` for no object, else the content and
    the time this version was written (a PUT of the same bytes is a new version)."""
    if st is None:
        return NO_VERSION
    return f"{st.sha256}.{int(st.created_at.timestamp() * 1_000_000)}"


async def live_bucket(c: AppContext, name: str | None) -> BucketState | None:
    """The live bucket `name`, or None (no bucket, missing, deleted, not a bucket name)."""
    if name is None or name == NO_BUCKET or not is_bucket_name(name):
        return None
    return await c.buckets.get(name, lambda: c.load("buckets", f"bucket-{name}"))


def _controls(principal: Principal | None, owner: str) -> bool:
    return principal is not None and (principal.admin or principal.user == owner)


def _deny(principal: Principal | None, error: DomainError) -> Exception:
    return authentication_required() if principal is None else error


def check_signature(
    c: AppContext, method: str, resource: str, params: Mapping[str, str | None]
) -> Grant:
    """The grant of a signed request, or 403 in the one error shape saying why not."""
    try:
        return c.signer.verify(method, resource, params, time.time())
    except SignatureError as e:
        raise ApiError(403, e.code, e.message) from None


# ---- files ---------------------------------------------------------------------------


async def readable_file(
    c: AppContext,
    raw_id: str,
    principal: Principal | None,
    method: str = "GET",
    signature: Mapping[str, str | None] | None = None,
) -> FileState:
    """The live file `raw_id` if this caller (or the signed URL it carries) may read it."""
    if signature is not None and carries_signature(signature):
        file_id = parse_uuid(raw_id, "file_not_found", "file")
        st: FileState | None = await c.load("files", f"file-{file_id}")
        # The grant names the owner (a deleted file keeps its own): a file that never
        # existed matches no grant, one owned by someone else now matches none either.
        check_signature(c, method, file_resource(file_id, st.owner if st else ""), signature)
        if st is None or st.deleted:
            raise NotFound("file_not_found", "no such file", {"id": file_id})
        return st
    missing = NotFound("file_not_found", "no such file", {"id": raw_id[:64]})
    try:
        file_id = parse_uuid(raw_id, "file_not_found", "file")
    except NotFound:
        raise _deny(principal, missing) from None
    st = await c.load("files", f"file-{file_id}")
    if st is None or st.deleted:
        raise _deny(principal, missing)
    if _controls(principal, st.owner):
        return st
    bucket = await live_bucket(c, st.bucket)
    if bucket is not None and bucket.public and bucket.owner == st.owner:
        return st
    raise _deny(principal, missing)


# ---- buckets and their objects --------------------------------------------------------


async def readable_bucket(c: AppContext, name: str, principal: Principal | None) -> BucketState:
    """The live bucket `name` if this caller may read its objects (GET, HEAD, list): anyone
    for a public bucket, its owner and admins for a private one."""
    st = await live_bucket(c, name)
    if st is not None and (st.public or _controls(principal, st.owner)):
        return st
    raise _deny(principal, bucket_not_found(name))


async def writable_bucket(c: AppContext, name: str, principal: Principal | None) -> BucketState:
    """The live bucket `name` if this caller may write its objects: its owner and admins
    (public or not: public is about reading)."""
    st = await live_bucket(c, name)
    if st is not None and _controls(principal, st.owner):
        return st
    raise _deny(principal, bucket_not_found(name))


async def signed_bucket(
    c: AppContext, name: str, key: str, method: str, params: Mapping[str, str | None]
) -> tuple[BucketState, Grant]:
    """The bucket and grant of a signed object request, or 403: the grant names the
    bucket's owner, so a bucket that is gone (or is someone else's now) never matches."""
    st = await live_bucket(c, name)
    grant = check_signature(c, method, object_resource(name, key, st.owner if st else ""), params)
    if st is None:  # (no grant can name a missing bucket's owner; kept for the type)
        raise bucket_not_found(name)
    return st, grant


async def object_bucket(
    c: AppContext,
    name: str,
    key: str,
    principal: Principal | None,
    method: str,
    params: Mapping[str, str | None],
) -> tuple[BucketState, Grant | None]:
    """The bucket of an object request (GET, HEAD, PUT) and the signed URL's grant if it
    carries one; else the caller's access: reads need `readable_bucket`, writes
    `writable_bucket`."""
    if carries_signature(params):
        return await signed_bucket(c, name, key, method, params)
    if method in ("GET", "HEAD"):
        return await readable_bucket(c, name, principal), None
    return await writable_bucket(c, name, principal), None


async def check_writable(c: AppContext, bucket: str | None, owner: str) -> None:
    """Raise NotFound unless a file of `owner` may be in `bucket`."""
    if bucket is None or bucket == NO_BUCKET:
        return
    st = await live_bucket(c, bucket)
    if st is None or st.owner != owner:
        raise bucket_not_found(bucket)


def signature_params(query: Mapping[str, Any]) -> dict[str, str | None]:
    """The signed-URL parameters of a request's query (absent ones None); 403
    signed_url_invalid if one is given twice (which value was signed is anybody's guess,
    and a parser elsewhere may pick the other)."""
    getall = getattr(query, "getall", None)
    if getall is not None and any(len(getall(p, [])) > 1 for p in PARAMS):
        raise ApiError(403, "signed_url_invalid", "a signed URL parameter is given twice")
    return {p: (str(query[p]) if query.get(p) is not None else None) for p in PARAMS}
