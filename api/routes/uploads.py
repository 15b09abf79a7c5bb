"""The native chunked upload API: create, PUT numbered chunks (any order), complete, abort.

Chunk bytes are streamed straight into the content-addressed blob store (hashed on the
way, fsync'd) and only then is the StoreChunk command sent: when the PUT answers 2xx the
chunk is durable and recorded. Nothing is buffered whole in memory.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.exceptions import InternalServerException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import (
    FromPath,
    FromQuery,
    HeaderParameter,
    JSONBody,
    Parameter,
    QueryParameter,
)

from api import running_digests
from api.auth import Principal
from api.bucket_access import check_writable
from api.commanding import SecuredController, load_owned, parse_id, reply_state, send_as
from api.completion import MAX_MANIFEST_ENTRIES, finish_upload
from api.context import ctx, now
from api.errors import ApiError
from api.http import objheaders
from api.http.digits import ascii_int
from api.http.strict import refuse_repeated
from api.idempotency import (
    Handler,
    deduplicated,
    idempotent,
    note_body_digest,
    resource_id,
)
from api.limits import inflight_limited, quota_checked
from api.openapi import BODY_IN_FLIGHT, TOO_LARGE, UPLOAD_EXPIRED, raw_body
from api.paging import enum_query, page_response, status_filter
from api.schemas import (
    BIGINT_MAX,
    ChunkStored,
    CreateUpload,
    MissingChunks,
    Upload,
    UploadAborted,
    UploadCompleted,
    UploadCreated,
    UploadPage,
    UploadStats,
    ok,
)
from bus.blobs.errors import BlobTooLarge
from bus.ids import uuid4_str
from domain.commands import AbortUpload, InitiateUpload, StoreChunk
from domain.errors import Conflict, Gone
from domain.uploads import ACTIVE, SHA256_RE, UploadState, UploadStatus, decide
from projections import queries

# Pages: at most this many items; offsets within PostgreSQL's bigint.
MAX_LIMIT = 1000


def _chunk_index(text: str) -> int:
    """A chunk PUT's index from its path, or 400 invalid_chunk_index: ASCII digits only
    (api/http/digits.py), without leading zeros, so that no chunk is named by several paths
    ("+1", "0_1", "01", full-width digits)."""
    n = ascii_int(text)
    if n is None or (len(text) > 1 and text.startswith("0")):
        raise ApiError(
            400,
            "invalid_chunk_index",
            "a chunk index is a whole number from 0, in ASCII digits without leading zeros",
            {"index": text[:40]},
        )
    return n


def _initiate(
    request: Request[Any, Any, Any], who: Principal, data: CreateUpload, upload_id: str
) -> InitiateUpload:
    """The create's command, or its refusal: the API's limits (sizes, chunk count)."""
    s = ctx(request).settings
    chunk_size = data.chunk_size if data.chunk_size is not None else s.default_chunk_size
    if isinstance(data.file_size, int) and data.file_size > s.max_upload_bytes:
        raise ApiError(
            413,
            "upload_too_large",
            "file_size exceeds the maximum upload size",
            {"max_upload_bytes": s.max_upload_bytes},
        )
    if isinstance(chunk_size, int) and chunk_size > s.max_chunk_size:
        raise ApiError(
            400,
            "invalid_chunk_size",
            "chunk_size exceeds the maximum chunk size",
            {"max_chunk_bytes": s.max_chunk_size},
        )
    if (
        isinstance(chunk_size, int)
        and isinstance(data.file_size, int)
        and chunk_size > 0
        and -(-data.file_size // chunk_size) > MAX_MANIFEST_ENTRIES
    ):
        # A file's manifest travels in single bus messages; keep it within their size.
        raise ApiError(
            400,
            "too_many_chunks",
            f"a file holds at most {MAX_MANIFEST_ENTRIES} chunks: use a bigger chunk_size",
            {
                "max_chunks": MAX_MANIFEST_ENTRIES,
                "min_chunk_size": -(-data.file_size // MAX_MANIFEST_ENTRIES),
            },
        )
    return InitiateUpload(
        aggregate_id=upload_id,
        caller=who.user,
        admin=who.admin,
        at=now(),
        file_name=data.file_name,
        file_size=data.file_size,
        chunk_size=chunk_size,
        content_type=data.content_type or "application/octet-stream",
        sha256=data.sha256.lower() if isinstance(data.sha256, str) else None,
        bucket=data.bucket or "default",
        metadata=dict(data.metadata or {}),
        key=data.key,
        headers=objheaders.from_fields(data.headers or {}),
    )


def _checked_create(fn: Handler) -> Handler:
    """Refuse a create exactly as the upload path would, before `deduplicated` may answer
    it with a file the caller has: else known content was a way past the rules (a name
    with a slash, a chunk_size past the limit: 201 with the file instead of 400). The
    domain's rules are applied by its own `decide`, pure, to no upload yet; the bucket is
    checked here too, once (a bucket not the caller's is 404 whatever the content)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request: Request[Any, Any, Any] = kwargs["request"]
        data: CreateUpload = kwargs["data"]
        principal: Principal = kwargs["principal"]
        decide(None, _initiate(request, principal, data, uuid4_str()))
        await check_writable(ctx(request), data.bucket or None, principal.user)
        return await fn(*args, **kwargs)

    return wrapper


def _upload_view(row: dict[str, Any]) -> dict[str, Any]:
    """Add speed and ETA, derived from bytes received over the upload's active time.

    None where nothing was measured: no bytes, no time between the creation and the last
    event (bytes that came with the creation: dividing by a floor made up a rate of a
    thousand times their size per second; a clock stepped back), or a concatenation
    (mode final), whose bytes its parts received."""
    out = dict(row)
    created, updated = row.get("created_at"), row.get("updated_at")
    speed = None
    eta = None
    received = int(row.get("bytes_received") or 0)
    elapsed = (
        (datetime.fromisoformat(updated) - datetime.fromisoformat(created)).total_seconds()
        if created and updated
        else 0.0
    )
    if received and elapsed > 0 and row.get("mode") != "final":
        speed = received / elapsed
        size = row.get("file_size")
        # A tus upload with a deferred length has no known remainder, so no ETA.
        eta = (
            max(0.0, (int(size) - received) / speed)
            if size is not None and speed > 0 and out.get("status") in ("INITIATED", "IN_PROGRESS")
            else None
        )
    out["speed_bytes_per_second"] = speed
    out["eta_seconds"] = eta
    return out


def _state_view(st: UploadState) -> dict[str, Any]:
    received = st.bytes_received
    return _upload_view(
        {
            "id": st.id,
            "owner": st.owner,
            "file_name": st.file_name,
            "file_size": st.file_size,
            "chunk_size": st.chunk_size,
            "total_chunks": st.total_chunks,
            "chunks_received": len(st.chunks),
            "bytes_received": received,
            "progress": queries.progress_percent(
                st.file_size, received, st.status == UploadStatus.COMPLETED
            ),
            "status": st.status.value,
            "mode": st.mode,
            "partial": st.partial,
            "content_type": st.content_type,
            "bucket": st.bucket,
            "key": st.key,
            "metadata": st.metadata,
            "headers": st.headers,
            "sha256": st.sha256,
            "file_id": st.file_id,
            "failure_reason": st.failure if st.status == UploadStatus.FAILED else None,
            "created_at": st.created_at.isoformat(),
            "updated_at": st.updated_at.isoformat(),
            "completed_at": st.updated_at.isoformat()
            if st.status == UploadStatus.COMPLETED
            else None,
        }
    )


class UploadsController(SecuredController):
    path = "/v1/uploads"
    tags = ["uploads"]

    @post(
        "/",
        status_code=201,
        summary="Start a chunked upload",
        responses={
            **ok(201, UploadCreated, "The upload (or, for known content, the file at once)"),
            **TOO_LARGE,
            404: ResponseSpec(
                None, description="bucket_not_found: `bucket` is not one of the caller's"
            ),
        },
    )
    @idempotent("create", 201)
    @_checked_create
    @deduplicated
    @quota_checked("create")
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreateUpload],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        c = ctx(request)
        upload_id = resource_id(request) or uuid4_str()
        cmd = _initiate(request, principal, data, upload_id)
        result = await c.send(request, cmd)
        st = reply_state(result)
        body = {
            "id": upload_id,
            "chunk_size": st.get("chunk_size", cmd.chunk_size),
            "total_chunks": st.get("total_chunks"),
            "status": st.get("status"),
            "file_id": st.get("file_id"),
            "file_name": st.get("file_name"),
            "file_size": st.get("file_size"),
        }
        return Response(body, status_code=201, headers={"Location": f"/v1/uploads/{upload_id}"})

    @put(
        "/{upload_id:str}/chunks/{index:str}",
        request_max_body_size=None,
        summary="Upload one chunk (raw body)",
        status_code=201,
        operation_class=raw_body(
            "application/octet-stream",
            "The chunk's bytes: exactly chunk_size bytes (the last chunk: the remainder)",
        ),
        responses={
            **ok(201, ChunkStored, "The chunk is durable and recorded"),
            **ok(200, ChunkStored, "The same bytes were already stored for this index"),
            **BODY_IN_FLIGHT,
            **TOO_LARGE,
            **UPLOAD_EXPIRED,
        },
    )
    @inflight_limited
    @idempotent("chunk", 201)
    @quota_checked("chunk")
    async def put_chunk(
        self,
        request: Request[Any, Any, Any],
        upload_id: FromPath[str],
        index: Annotated[str, Parameter(description="The chunk's index from 0, in ASCII digits")],
        principal: NamedDependency[Principal],
        chunk_sha256: Annotated[str | None, HeaderParameter(name="X-Chunk-SHA256")] = None,
    ) -> Response[Any]:
        c = ctx(request)
        if chunk_sha256 is not None:
            refuse_repeated(request.headers, "X-Chunk-SHA256", "invalid_sha256")
        upload_id = parse_id("uploads", upload_id)
        n = _chunk_index(index)
        shape = await c.upload_shape(upload_id, principal)
        if not 0 <= n < shape.total_chunks:
            raise ApiError(
                400,
                "chunk_index_out_of_range",
                f"chunk index must be in [0, {shape.total_chunks})",
                {"index": n, "total_chunks": shape.total_chunks},
            )
        expected = shape.expected_size(n)
        declared = request.headers.get("content-length")
        length = ascii_int(declared)
        if declared is not None and length != expected:
            await _refuse_if_inactive(request, upload_id)
            details: dict[str, Any] = {"index": n, "expected": expected}
            if length is not None:
                details["received"] = length
            raise ApiError(400, "wrong_chunk_size", f"chunk {n} must be {expected} bytes", details)
        if chunk_sha256 is not None and not SHA256_RE.fullmatch(chunk_sha256.lower()):
            raise ApiError(400, "invalid_sha256", "X-Chunk-SHA256 must be 64 hex digits")
        # A chunk that continues the bytes this process saw in order also feeds the
        # upload's running digest, so that completion need not read the file back.
        offset = n * shape.chunk_size
        running = running_digests.resume(upload_id, offset)
        try:
            digest, size = await c.blobs.put_stream(
                request.stream(), max_bytes=expected, also_hash=running
            )
            note_body_digest(request, digest)
        except BlobTooLarge:
            await _refuse_if_inactive(request, upload_id)
            raise ApiError(
                400,
                "wrong_chunk_size",
                f"chunk {n} must be {expected} bytes",
                {"index": n, "expected": expected},
            ) from None
        except InternalServerException:
            # The client went away mid-body: nothing was kept, nothing is recorded.
            raise ApiError(400, "incomplete_body", "the request body ended early") from None
        if size != expected:
            await _refuse_if_inactive(request, upload_id)
            raise ApiError(
                400,
                "wrong_chunk_size",
                f"chunk {n} must be {expected} bytes",
                {"index": n, "expected": expected, "received": size},
            )
        if chunk_sha256 is not None and chunk_sha256.lower() != digest:
            raise ApiError(
                400,
                "checksum_mismatch",
                "the chunk does not match X-Chunk-SHA256",
                {"index": n, "declared": chunk_sha256.lower(), "actual": digest},
            )
        result = await send_as(
            request, principal, StoreChunk, upload_id, index=n, size=size, sha256=digest
        )
        if running is not None:
            # Accepted (stored now, or these very bytes before): they are the upload's.
            running_digests.record(upload_id, offset + size, running)
        st = reply_state(result)
        body = {
            "upload_id": upload_id,
            "index": n,
            "size": size,
            "sha256": digest,
            "chunks_received": st.get("chunks_received"),
            "bytes_received": st.get("bytes_received"),
            "status": st.get("status"),
        }
        return Response(body, status_code=201 if result.applied else 200)

    @get(
        "/{upload_id:str}",
        summary="An upload's state, progress, missing chunks, speed and ETA",
        responses=ok(200, Upload, "The upload"),
    )
    async def get_upload(
        self,
        request: Request[Any, Any, Any],
        upload_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        c = ctx(request)
        state = await _owned(request, upload_id, principal)
        upload_id = state.id
        row = await queries.get_upload(
            c.pool, upload_id, None if principal.admin else principal.user
        )
        # The projection is the read model; if it lags behind the log (just created), answer
        # from the event store so a client never sees its own upload disappear.
        view = (
            _upload_view(row)
            if row
            and row.get("chunks_received") == len(state.chunks)
            and row.get("bytes_received") == state.bytes_received
            and row.get("file_size") == state.file_size
            and row.get("status") == state.status.value
            else _state_view(state)
        )
        view["missing_chunks"] = state.missing_chunks
        return view

    @get(
        "/{upload_id:str}/missing-chunks",
        summary="Indexes of chunks not yet stored",
        responses=ok(200, MissingChunks, "The chunks still missing"),
    )
    async def missing(
        self,
        request: Request[Any, Any, Any],
        upload_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        state = await _owned(request, upload_id, principal)
        upload_id = state.id
        missing = state.missing_chunks
        return {
            "upload_id": upload_id,
            "status": state.status.value,
            "total_chunks": state.total_chunks,
            "chunks_received": len(state.chunks),
            "missing_chunks": missing,
        }

    @post(
        "/{upload_id:str}/complete",
        status_code=200,
        summary="Verify and turn the upload into a file",
        responses={
            **ok(200, UploadCompleted, "The upload is complete; file_id names its file"),
            **UPLOAD_EXPIRED,
            404: ResponseSpec(
                None,
                description="upload_not_found, or bucket_not_found: the upload's bucket was"
                " deleted since (the upload stays; abort it, or make the bucket again)",
            ),
            413: ResponseSpec(
                None,
                description="quota_exceeded ({quota, used, requested}): the upload's bucket"
                " was deleted since it began (it then holds only what it received) and made"
                " again, and what of its bytes does not count yet no longer fits the owner's"
                " quota; the upload stays, with them",
            ),
            422: ResponseSpec(
                None,
                description="checksum_mismatch: the assembled bytes do not match the declared"
                " sha256 (details {declared, actual}); no file is made",
            ),
        },
    )
    @idempotent("complete", 200)
    async def complete(
        self,
        request: Request[Any, Any, Any],
        upload_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        c = ctx(request)
        state = await _owned(request, upload_id, principal)
        upload_id = state.id
        missing = state.missing_chunks
        if missing and state.status in (UploadStatus.INITIATED, UploadStatus.IN_PROGRESS):
            raise ApiError(
                409,
                "chunks_missing",
                f"{len(missing)} chunk(s) missing",
                {"missing_chunks": missing[:1000], "missing_count": len(missing)},
            )
        if state.status != UploadStatus.COMPLETED:
            # Checked at create, but the bucket may have been deleted since (or its name taken
            # by someone else): completing then would make a file of no bucket, an object
            # listed nowhere. The upload stays as it is; abort it, or make the bucket again.
            await check_writable(c, state.bucket, state.owner)
        state = await finish_upload(c, request, state, caller=principal.user, admin=principal.admin)
        return {
            "upload_id": upload_id,
            "file_id": state.file_id,
            "sha256": state.completed_sha256,
            "size": state.file_size,
            "status": UploadStatus.COMPLETED.value,
        }

    @delete(
        "/{upload_id:str}",
        status_code=200,
        summary="Abort an upload",
        responses={**ok(200, UploadAborted, "The upload is aborted"), **UPLOAD_EXPIRED},
    )
    async def abort(
        self,
        request: Request[Any, Any, Any],
        upload_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        upload_id = parse_id("uploads", upload_id)
        result = await send_as(request, principal, AbortUpload, upload_id)
        return {"id": upload_id, "status": reply_state(result).get("status")}

    @get(
        "/",
        summary="List the caller's uploads",
        responses=ok(200, UploadPage, "A page of uploads; X-Total-Count holds the total"),
    )
    async def list_uploads(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        status: FromQuery[str | None] = None,
        sort: FromQuery[str] = "created_at",
        order: FromQuery[str] = "desc",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=BIGINT_MAX)] = 0,
    ) -> Response[Any]:
        c = ctx(request)
        status = status_filter(status, UploadStatus)
        sort = enum_query("sort", sort, queries.UPLOAD_SORTS)
        order = enum_query("order", order, queries.ORDERS)
        return await page_response(
            queries.list_uploads(
                c.pool,
                principal.user,
                status=status,
                sort=sort,
                order=order,
                limit=limit,
                offset=offset,
            ),
            limit,
            offset,
            view=_upload_view,
        )

    @get(
        "/stats",
        summary="Counts by status, bytes and recent activity for the caller",
        responses=ok(200, UploadStats, "The caller's upload statistics"),
    )
    async def stats(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> dict[str, Any]:
        pool = ctx(request).pool
        out = await queries.upload_stats(pool, principal.user)
        out["average_progress"] = await queries.upload_average_progress(pool, principal.user)
        return out


async def _owned(request: Request[Any, Any, Any], raw_id: str, who: Principal) -> UploadState:
    state: UploadState = await load_owned(request, "uploads", raw_id, who)
    return state


async def _refuse_if_inactive(request: Request[Any, Any, Any], upload_id: str) -> None:
    """A chunk of the wrong size for an upload that takes no chunks any more says the
    latter: the size is not what the client must fix."""
    state: UploadState | None = await ctx(request).load("uploads", f"upload-{upload_id}")
    if state is None or state.status in ACTIVE:
        return
    if state.status == UploadStatus.EXPIRED:
        raise Gone("upload_expired", "the upload has expired", {"id": upload_id})
    raise Conflict(
        "upload_not_active",
        f"the upload is {state.status.value}",
        {"id": upload_id, "status": state.status.value},
    )
