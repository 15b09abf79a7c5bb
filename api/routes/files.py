"""Files: metadata, content download, deletion, listing.

Single-file reads fold the file's (short) event stream, so they are consistent with the
log immediately after an upload completes; listings come from the read model.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import HttpMethod, Request, Response, delete, get, patch, post, route
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from api import signed_urls
from api.auth import Principal, provide_optional_principal
from api.bucket_access import (
    check_writable,
    file_path,
    file_resource,
    readable_file,
    signature_params,
)
from api.commanding import SecuredController, load_owned, parse_id, send_as
from api.context import ctx
from api.errors import ApiError
from api.http.conditionals import field_value, write_match
from api.http.content import ContentResponse
from api.http.signed_query import (
    Signature,
    SignedExpires,
    SignedKid,
    SignedMaxSize,
    SignedMethod,
    SignedVersion,
)
from api.object_move import move_object, wants_move
from api.openapi import ANONYMOUS
from api.paging import enum_query, page_response
from api.schemas import (
    BIGINT_MAX,
    File,
    FileDeleted,
    FilePage,
    SignedUrl,
    SignFileUrl,
    UpdateFile,
    ok,
)
from api.serving import content_responses, serve
from domain.commands import DeleteFile
from domain.commands import UpdateFile as UpdateFileCommand
from domain.errors import NotFound
from domain.files import FileState
from projections import queries
from projections.downloads import downloads_of


def file_view(st: FileState) -> dict[str, Any]:
    """A file's JSON as single-file answers give it (GET, PATCH): read from its stream (the
    authority; the listing reads the same fields, `headers` included, from the read
    model)."""
    return {
        "id": st.id,
        "name": st.name,
        "size": st.size,
        "content_type": st.content_type,
        "sha256": st.sha256,
        "bucket": st.bucket,
        "metadata": st.metadata,
        "upload_id": st.upload_id,
        "chunk_count": len(st.manifest),
        "key": st.key,
        "headers": st.headers,
        "created_at": st.created_at.isoformat(),
        "updated_at": st.updated_at.isoformat(),
    }


async def _load_file(
    request: Request[Any, Any, Any], file_id: FromPath[str], principal: NamedDependency[Principal]
) -> FileState:
    st: FileState = await load_owned(request, "files", file_id, principal)
    return st


async def _as_left(request: Request[Any, Any, Any], file_id: str, owner: str) -> dict[str, Any]:
    """The file as a PATCH's change (or move) left it, read back from its stream. A DELETE
    may have come right after: the change was made all the same (its command was refused
    otherwise), so this answers 200 with it, not a 404 that would make the client retry
    what happened. Owned by someone else now (an object's key taken over after its
    bucket: README, Buckets) is the one 404."""
    after: FileState | None = await ctx(request).load("files", f"file-{file_id}")
    if after is None or after.owner != owner:
        raise NotFound("file_not_found", "no such file", {"id": file_id})
    return file_view(after)


# Reads (metadata, content) also answer anonymous callers: objects of public buckets, and
# signed URLs for the content (api/bucket_access.py decides).
_READ = {"principal": Provide(provide_optional_principal)}


class FilesController(SecuredController):
    path = "/v1/files"
    tags = ["files"]

    @get(
        "/{file_id:str}",
        summary="File metadata (anyone's for a file in a public bucket)",
        dependencies=_READ,
        security=ANONYMOUS,
        responses=ok(200, File, "The file's metadata"),
    )
    async def get_file(
        self,
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        principal: NamedDependency[Principal | None],
    ) -> dict[str, Any]:
        st = await readable_file(ctx(request), file_id, principal)
        # Counts as last flushed by the API processes (CAIRN_DOWNLOAD_FLUSH_INTERVAL).
        return {**file_view(st), **await downloads_of(ctx(request).pool, st.id)}

    @route(
        "/{file_id:str}/content",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="Download the file's bytes (Range, conditionals; HEAD for the headers only);"
        " without auth for a file in a public bucket, or with a signed URL's parameters",
        dependencies=_READ,
        security=ANONYMOUS,
        responses=content_responses("file"),
    )
    async def content(
        self,
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        principal: NamedDependency[Principal | None],
        download: FromQuery[bool] = False,
        signed_method: SignedMethod = None,
        expires: SignedExpires = None,
        max_size: SignedMaxSize = None,
        version: SignedVersion = None,
        kid: SignedKid = None,
        signature: Signature = None,
    ) -> ContentResponse:
        c = ctx(request)
        st = await readable_file(
            c, file_id, principal, request.method, signature_params(request.query_params)
        )
        return await serve(c, request, st, download=download)

    @patch(
        "/{file_id:str}",
        summary="Rename a file, move it to another of its owner's buckets, set its metadata;"
        " rename/move an object (`key`, `bucket`: copy-then-delete, a new id)",
        responses=ok(200, File, "The file after the change"),
    )
    async def update_file(
        self,
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        data: JSONBody[UpdateFile],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        c = ctx(request)
        st = await _load_file(request, file_id, principal)
        if wants_move(st, data.key, data.bucket):
            other = data.name is not None or data.metadata is not None
            moved = await move_object(request, principal, st, data.key, data.bucket, other)
            return await _as_left(request, moved, st.owner)
        # Only into a bucket the file's owner owns (an admin moves others' files too). The
        # bucket it is in already is no move: a client sending the file back as it read
        # it may rename it even if that bucket has gone since (README, Buckets).
        if data.bucket != st.bucket:
            await check_writable(c, data.bucket, st.owner)
        await send_as(
            request,
            principal,
            UpdateFileCommand,
            st.id,
            name=data.name,
            bucket=data.bucket,
            metadata=None if data.metadata is None else dict(data.metadata),
        )
        return await _as_left(request, st.id, st.owner)

    @post(
        "/{file_id:str}/signed-url",
        status_code=200,
        summary="A URL that serves the file's content without auth until it expires",
        responses=ok(200, SignedUrl, "The signed URL and when it expires"),
    )
    async def sign(
        self,
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        data: JSONBody[SignFileUrl],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        # Only the owner (or an admin) signs: a public file's readers may not mint links.
        st = await _load_file(request, file_id, principal)
        return signed_urls.issue(
            request,
            file_resource(st.id, st.owner),
            data.method,
            data.expires_in,
            path=file_path(st.id),
        )

    @delete(
        "/{file_id:str}",
        status_code=200,
        summary="Delete a file; `If-Match` makes it conditional",
        responses={
            **ok(200, FileDeleted, "The file is deleted"),
            412: ResponseSpec(
                None, description="If-Match: the file is not live, or not that version"
            ),
        },
    )
    async def delete_file(
        self,
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        principal: NamedDependency[Principal],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
    ) -> dict[str, Any]:
        file_id = parse_id("files", file_id)
        # An object's file changes with each version: If-Match, checked by the command
        # (atomic with the delete), keeps a delete from removing a version it did not see.
        if_match = field_value(request.headers, "If-Match")
        match = None if if_match is None else write_match(if_match)
        if if_match is not None and match is None:
            raise ApiError(
                400,
                "invalid_if_match",
                'If-Match on DELETE is `*` or one strong ETag (`"<sha256>"`)',
            )
        await send_as(request, principal, DeleteFile, file_id, if_match=match)
        return {"id": file_id, "deleted": True}

    @get(
        "/",
        summary="List the caller's files",
        responses=ok(200, FilePage, "A page of files; X-Total-Count holds the total"),
    )
    async def list_files(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        bucket: FromQuery[str | None] = None,
        prefix: FromQuery[str | None] = None,
        content_type: FromQuery[str | None] = None,
        created_after: FromQuery[str | None] = None,
        created_before: FromQuery[str | None] = None,
        sort: FromQuery[str] = "created_at",
        order: FromQuery[str] = "desc",
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=BIGINT_MAX)] = 0,
    ) -> Response[Any]:
        c = ctx(request)
        sort = enum_query("sort", sort, queries.FILE_SORTS)
        order = enum_query("order", order, queries.ORDERS)
        return await page_response(
            queries.list_files(
                c.pool,
                principal.user,
                bucket=bucket,
                name_prefix=prefix,
                content_type=content_type,
                created_after=created_after,
                created_before=created_before,
                sort=sort,
                order=order,
                limit=limit,
                offset=offset,
            ),
            limit,
            offset,
        )
