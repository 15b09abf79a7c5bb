"""Buckets: create, list, read (with usage), change and delete named, owned namespaces.

A bucket's settings are read from its aggregate (its short stream folds in one query), so
they are consistent with the log at once; listings and usage come from the read models.
Someone else's bucket is answered exactly like a missing one (404), and so is a name that
is not a valid bucket name at all.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.auth import Principal
from api.commanding import SecuredController, reply_state, send_as
from api.context import ctx
from api.errors import ApiError
from api.paging import decode_cursor, encode_cursor
from api.schemas import Bucket, BucketDeleted, BucketPage, CreateBucket, UpdateBucket, ok
from domain.buckets import BucketState
from domain.buckets.commands import CreateBucket as CreateBucketCommand
from domain.buckets.commands import DeleteBucket
from domain.buckets.commands import UpdateBucket as UpdateBucketCommand
from domain.buckets.names import bucket_not_found, is_bucket_name
from domain.commands import DeleteFile
from domain.files import FileState
from domain.files.events import FileCreated, FileUpdated
from projections import bucket_queries
from projections.usage import UNPROJECTED_TAIL

# A forced delete sends one DeleteFile per object; this many are in flight at once
# (enough to hide the round trip, few enough not to crowd out other clients' commands).
_DELETE_CONCURRENCY = 16
_DELETE_PAGE = 1000


_VIEW_FIELDS = ("name", "owner", "public", "description", "created_at", "updated_at")


def bucket_view(st: BucketState) -> dict[str, Any]:
    return {
        "name": st.name,
        "owner": st.owner,
        "public": st.public,
        "description": st.description,
        "created_at": st.created_at.isoformat(),
        "updated_at": st.updated_at.isoformat(),
    }


async def load_bucket(request: Request[Any, Any, Any], name: str) -> BucketState | None:
    """The live bucket `name`, or None (missing, deleted, or not a valid name)."""
    if not is_bucket_name(name):
        return None
    st: BucketState | None = await ctx(request).load("buckets", f"bucket-{name}")
    return None if st is None or st.deleted else st


async def _visible_bucket(
    request: Request[Any, Any, Any], name: str, principal: Principal
) -> BucketState:
    st = await load_bucket(request, name)
    if st is None or not st.visible_to(principal.user, principal.admin):
        raise bucket_not_found(name)
    return st


async def _is_object(request: Request[Any, Any, Any], st: BucketState, file_id: str) -> bool:
    """Is `file_id` a live object of bucket `st`, by its aggregate (the authority)? The
    read model lags: it may still list an object deleted (or moved) a moment ago."""
    f: FileState | None = await ctx(request).load("files", f"file-{file_id}")
    return f is not None and not f.deleted and f.bucket == st.name and f.owner == st.owner


async def _unprojected(request: Request[Any, Any, Any], st: BucketState) -> list[str]:
    """Files the newest events put into bucket `st` (created there, or moved in), which the
    read model may not list yet: an object PUT answered a moment ago is in the event store
    before the projector applies it, and a DELETE of the bucket right after must see it.
    Read through the event store like the quota's newest uploads (projections/usage.py),
    as far back as UNPROJECTED_TAIL events of each type; confirmed by the caller."""
    store = ctx(request).store
    found: list[str] = []
    for event_type in (FileCreated.type, FileUpdated.type):
        for ev in await store.read_latest(event_type, UNPROJECTED_TAIL):
            e = ev.payload
            if ev.owner == st.owner and isinstance(e, (FileCreated, FileUpdated)):
                if e.bucket == st.name and ev.aggregate_id not in found:
                    found.append(ev.aggregate_id)
    return found


async def _first_object(request: Request[Any, Any, Any], st: BucketState) -> str | None:
    """One live object of the bucket, or None if it is empty.

    Candidates come from the newest events (`_unprojected`) and from the read model, and
    are confirmed on their aggregates, so an object deleted a moment ago never makes a
    bucket look non-empty, and one created a moment ago is not missed for the projector's
    lag."""
    for file_id in await _unprojected(request, st):
        if await _is_object(request, st, file_id):
            return file_id
    after: str | None = None
    c = ctx(request)
    while ids := await bucket_queries.object_ids(c.pool, st.name, st.owner, 100, after=after):
        for file_id in ids:
            if await _is_object(request, st, file_id):
                return file_id
        after = ids[-1]
    return None


class BucketsController(SecuredController):
    path = "/v1/buckets"
    tags = ["buckets"]

    @post(
        "/",
        status_code=201,
        summary="Create a bucket (S3 bucket-name rules; names are unique across users)",
        responses=ok(201, Bucket, "The bucket"),
    )
    async def create_bucket(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreateBucket],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        await send_as(
            request,
            principal,
            CreateBucketCommand,
            data.name,
            public=data.public,
            description=data.description,
        )
        st = await load_bucket(request, data.name)
        if st is None:  # deleted again in between by its owner
            raise bucket_not_found(data.name)
        return Response(
            bucket_view(st), status_code=201, headers={"Location": f"/v1/buckets/{data.name}"}
        )

    @get(
        "/",
        summary="List the caller's buckets (an admin's: everyone's), by name",
        responses=ok(200, BucketPage, "A page of buckets"),
    )
    async def list_buckets(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, QueryParameter(max_length=1024)] = None,
    ) -> dict[str, Any]:
        # Opaque, like the objects listing's: any other text (a bare name, another
        # listing's cursor) is 400 invalid_cursor, not a page from somewhere.
        after = decode_cursor(cursor, ("b",))[1] if cursor is not None else None
        items = await bucket_queries.list_buckets(
            ctx(request).pool,
            None if principal.admin else principal.user,
            limit=limit,
            after=after,
        )
        next_cursor = encode_cursor({"b": items[-1]["name"]}) if len(items) == limit else None
        return {"items": items, "limit": limit, "next_cursor": next_cursor}

    @get(
        "/{name:str}",
        summary="A bucket, its usage and its owner's usage",
        responses=ok(200, Bucket, "The bucket"),
    )
    async def get_bucket(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        st = await _visible_bucket(request, name, principal)
        pool = ctx(request).pool
        return {
            **bucket_view(st),
            "usage": await bucket_queries.bucket_usage(pool, st.name, st.owner),
            "owner_usage": await bucket_queries.owner_usage(pool, st.owner),
        }

    @patch(
        "/{name:str}",
        summary="Change a bucket's public flag or description",
        responses=ok(200, Bucket, "The bucket after the change"),
    )
    async def update_bucket(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        data: JSONBody[UpdateBucket],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        if not is_bucket_name(name):
            raise bucket_not_found(name)
        result = await send_as(
            request,
            principal,
            UpdateBucketCommand,
            name,
            public=data.public,
            description=data.description,
        )
        # The bucket as this command left it (the actor's reply), not read back: a DELETE
        # right after would make an applied change answer 404, and the client retry it.
        st = reply_state(result)
        if st.get("name") == name and st.get("deleted") is False:
            return {k: st[k] for k in _VIEW_FIELDS}
        return bucket_view(await _visible_bucket(request, name, principal))  # no state replied

    @delete(
        "/{name:str}",
        status_code=200,
        summary="Delete a bucket: 409 if it holds objects, unless force=true deletes them",
        responses=ok(200, BucketDeleted, "The bucket is deleted"),
    )
    async def delete_bucket(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        principal: NamedDependency[Principal],
        force: FromQuery[bool] = False,
    ) -> dict[str, Any]:
        c = ctx(request)
        st = await _visible_bucket(request, name, principal)
        if not force and await _first_object(request, st) is not None:
            usage = await bucket_queries.bucket_usage(c.pool, st.name, st.owner)
            raise ApiError(
                409,
                "bucket_not_empty",
                "the bucket holds objects: delete them first, or pass force=true",
                # At least the one just confirmed, which the read model may not count yet.
                {"name": st.name, "objects": max(usage["objects"], 1)},
            )
        deleted = 0
        # Objects first, the bucket last: if this is cut off half-way the bucket still
        # exists, and the same request again finishes the job.
        gate = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def delete_one(file_id: str) -> None:
            async with gate:
                await send_as(request, principal, DeleteFile, file_id)

        # Keyset pages in id order: one pass, whatever the projector applies meanwhile.
        after: str | None = None
        while ids := await bucket_queries.object_ids(
            c.pool, st.name, st.owner, _DELETE_PAGE, after=after
        ):
            live = [i for i in ids if await _is_object(request, st, i)]
            await asyncio.gather(*(delete_one(i) for i in live))
            deleted += len(live)
            after = ids[-1]
        # Objects the read model may not list yet (see `_unprojected`): deleted too, so
        # none is left behind in a bucket that is gone.
        late = [i for i in await _unprojected(request, st) if await _is_object(request, st, i)]
        await asyncio.gather(*(delete_one(i) for i in late))
        deleted += len(late)
        await send_as(request, principal, DeleteBucket, st.name, force=force)
        return {"name": st.name, "deleted": True, "objects_deleted": deleted}
