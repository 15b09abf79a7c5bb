"""Renaming or moving an object (`PATCH /v1/files/{id}` with `key` and/or `bucket`).

An object's file id is derived from (bucket, key) (domain/files/keys.py), so a new key is
a new aggregate: a move cannot be one event. It is S3's copy-then-delete, two commands on
two aggregates, in this order:

1. `policies.object_from_file` with create-only semantics (`if_none_match`): the object
   at the new (bucket, key) is made from the same stored chunks (no byte is copied). A
   taken destination is refused atomically by its aggregate's one writer (409).
2. `DeleteFile` of the old key, if it still holds the version copied (a PUT of the old
   key since then is a write after the move, and stays). If it was deleted since (a
   DELETE, or a racing move that came first), this move lost: its copy is taken back
   and it answers 404.

The order is what makes a crash safe: after step 1 is durable, a crash leaves BOTH keys
(the client retries the delete, or sees 409 `object_exists` on a retried move and deletes
the old key); the old key is never deleted before the new one exists, so never neither.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from api.auth import Principal
from api.bucket_access import NO_BUCKET, check_writable
from api.commanding import send_as
from api.context import ctx, now
from api.errors import ApiError
from domain import policies
from domain.commands import DeleteFile
from domain.errors import NotFound, PreconditionFailed
from domain.files import FileState
from domain.files.keys import object_file_id, object_key_problem


def wants_move(st: FileState, key: str | None, bucket: str | None) -> bool:
    """Whether this PATCH renames or moves the object `st` (a new key or bucket)."""
    if st.key is None:
        if key is not None:
            raise ApiError(400, "invalid_key", "only an object has a key; this is a plain file")
        return False
    return (key is not None and key != st.key) or (bucket is not None and bucket != st.bucket)


async def move_object(
    request: Request[Any, Any, Any],
    principal: Principal,
    st: FileState,
    key: str | None,
    bucket: str | None,
    other_changes: bool,
) -> str:
    """Copy-then-delete the object `st` to (bucket, key) (either defaults to the current
    one); the new object's file id."""
    assert st.key is not None
    if other_changes:
        raise ApiError(
            400,
            "invalid_update",
            "an object's name or metadata cannot change in the same request as its key"
            " or bucket: move it, then PATCH the new object",
        )
    new_key = st.key if key is None else key
    new_bucket = st.bucket if bucket is None else bucket
    problem = object_key_problem(new_key)
    if problem is not None:
        raise ApiError(400, "invalid_key", problem, {"max_bytes": 1024})
    if new_bucket == NO_BUCKET:
        raise ApiError(
            400, "invalid_bucket_name", "an object lives in a bucket", {"bucket": NO_BUCKET}
        )
    c = ctx(request)
    # Only into a bucket of the object's owner (an admin moves others' objects too);
    # another user's bucket, public or not, is 404.
    await check_writable(c, new_bucket, st.owner)
    try:
        await c.send(
            request,
            policies.object_from_file(
                st,
                new_bucket,
                new_key,
                owner=st.owner,
                caller=principal.user,
                admin=principal.admin,
                at=now(),
                if_none_match=True,
            ),
        )
    except PreconditionFailed as exc:
        if exc.code != "object_exists":
            raise
        raise ApiError(
            409,
            "object_exists",
            "an object with this key exists in that bucket (a move never overwrites)",
            {"bucket": new_bucket, "key": new_key[:256]},
        ) from None
    # Only now, the new object being durable, the old key goes (see the module docstring),
    # and only the version that was copied: a PUT of the old key that landed since (or a
    # delete) is a write after the move, and deleting it would lose what nobody moved.
    new_id = object_file_id(new_bucket, new_key)
    try:
        await send_as(request, principal, DeleteFile, st.id, if_match=st.sha256)
    except PreconditionFailed as exc:
        if exc.code != "etag_mismatch":
            raise
        await _lost_to_a_delete(request, principal, st, new_id)
    return new_id


async def _lost_to_a_delete(
    request: Request[Any, Any, Any], principal: Principal, st: FileState, new_id: str
) -> None:
    """The old key no longer holds the version copied. Replaced by a PUT: a write after
    the move, kept (both keys stay). Deleted, by a DELETE or by another move of the same
    object: that request came first, so this move finds no source, as it would have a
    moment later; its copy is taken back (only the version it made, `If-Match`) and it
    answers 404. Otherwise two racing moves would both answer 200 and leave two objects
    where there was one, and a DELETE's bytes would live on under the new key."""
    now_st: FileState | None = await ctx(request).load("files", f"file-{st.id}")
    if now_st is not None and not now_st.deleted:
        return
    try:
        await send_as(request, principal, DeleteFile, new_id, if_match=st.sha256)
    except PreconditionFailed as exc:
        if exc.code != "etag_mismatch":
            raise
    raise NotFound("file_not_found", "no such file", {"id": st.id})
