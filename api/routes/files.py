"""Files: metadata, content download, deletion, listing.

Single-file reads fold the file's (short) event stream, so they are consistent with the
log immediately after an upload completes; listings come from the read model.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, head
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from api.auth import Principal, provide_principal
from api.context import ctx, now, parse_uuid
from api.errors import ApiError
from api.http.disposition import content_disposition
from api.http.strict import strict_request
from api.openapi import SECURED
from api.schemas import BIGINT_MAX, File, FileDeleted, FilePage, ok
from bus.blobs.manifests import read_manifest
from domain.commands import DeleteFile
from domain.files import FileState
from projections import queries


def file_view(st: FileState) -> dict[str, Any]:
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
        "created_at": st.created_at.isoformat(),
        "updated_at": st.updated_at.isoformat(),
    }


async def _load_file(
    request: Request[Any, Any, Any], file_id: FromPath[str], principal: NamedDependency[Principal]
) -> FileState:
    c = ctx(request)
    file_id = parse_uuid(file_id, "file_not_found", "file")
    st: FileState | None = await c.load("files", f"file-{file_id}")
    if st is None or st.deleted or (st.owner != principal.user and not principal.admin):
        raise ApiError(404, "file_not_found", "no such file", {"id": file_id})
    return st


def _content_headers(st: FileState, download: bool) -> dict[str, str]:
    return {
        "Content-Length": str(st.size),
        "ETag": f'"{st.sha256}"',
        "Last-Modified": st.created_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Content-Disposition": content_disposition(st.name, download),
        "Cache-Control": "private, max-age=0, must-revalidate",
        "X-Content-Type-Options": "nosniff",
    }


class FilesController(Controller):
    path = "/v1/files"
    tags = ["files"]
    dependencies = {"principal": Provide(provide_principal)}
    security = SECURED

    @get(
        "/{file_id:str}",
        summary="File metadata",
        before_request=strict_request,
        responses=ok(200, File, "The file's metadata"),
    )
    async def get_file(
        self,
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        return file_view(await _load_file(request, file_id, principal))

    @get("/{file_id:str}/content", summary="Download the file's bytes")
    async def content(
        self,
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        principal: NamedDependency[Principal],
        download: FromQuery[bool] = False,
    ) -> Stream:
        st = await _load_file(request, file_id, principal)
        blobs = ctx(request).blobs
        return Stream(
            read_manifest(blobs, list(st.manifest)),
            media_type=st.content_type,
            headers=_content_headers(st, download),
        )

    @head("/{file_id:str}/content", summary="The download's headers only")
    async def content_head(
        self,
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        principal: NamedDependency[Principal],
        download: FromQuery[bool] = False,
    ) -> Response[None]:
        st = await _load_file(request, file_id, principal)
        return Response(None, media_type=st.content_type, headers=_content_headers(st, download))

    @delete(
        "/{file_id:str}",
        status_code=200,
        summary="Delete a file",
        before_request=strict_request,
        responses=ok(200, FileDeleted, "The file is deleted"),
    )
    async def delete_file(
        self,
        request: Request[Any, Any, Any],
        file_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        c = ctx(request)
        file_id = parse_uuid(file_id, "file_not_found", "file")
        await c.send(
            request,
            DeleteFile(
                aggregate_id=file_id, caller=principal.user, admin=principal.admin, at=now()
            ),
        )
        return {"id": file_id, "deleted": True}

    @get(
        "/",
        summary="List the caller's files",
        before_request=strict_request,
        responses=ok(200, FilePage, "A page of files; X-Total-Count holds the total"),
    )
    async def list_files(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        bucket: FromQuery[str | None] = None,
        prefix: FromQuery[str | None] = None,
        content_type: FromQuery[str | None] = None,
        sort: FromQuery[str] = "created_at",
        order: FromQuery[str] = "desc",
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=BIGINT_MAX)] = 0,
    ) -> Response[Any]:
        c = ctx(request)
        try:
            rows, total = await queries.list_files(
                c.pool,
                principal.user,
                bucket=bucket,
                name_prefix=prefix,
                content_type=content_type,
                sort=sort,
                order=order,
                limit=limit,
                offset=offset,
            )
        except ValueError as e:
            raise ApiError(400, "invalid_query", str(e)) from None
        return Response(
            {"items": rows, "total": total, "limit": limit, "offset": offset},
            headers={"X-Total-Count": str(total)},
        )
