"""Serving a stored file's bytes: the one path shared by file content and object reads.

`GET/HEAD /v1/files/{id}/content` and `GET/HEAD /v1/buckets/{name}/objects/{key}` answer
exactly alike once the caller is allowed: RFC 9110 ranges and conditionals (api/http),
the optional S3 presigned redirect, download counting. Keeping it here means the two
routes cannot drift apart (a fix to one is a fix to both).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.openapi.datastructures import ResponseSpec

from api.context import AppContext, now
from api.http.content import ContentResponse, Representation, plan, read_small, request_fields
from api.http.presigned import redirect_location
from domain.files import FileState


def content_responses(what: str) -> dict[int, ResponseSpec]:
    """The OpenAPI responses of a content read besides 200 (`what`: "file", "object")."""
    return {
        403: ResponseSpec(
            None, description="A signed URL that is expired, altered, or for another method"
        ),
        206: ResponseSpec(None, description="The requested range(s): one, or multipart/byteranges"),
        304: ResponseSpec(None, description="Not modified (If-None-Match, If-Modified-Since)"),
        307: ResponseSpec(
            None,
            description=f"With CAIRN_S3_REDIRECT: a full GET of {'an' if what[0] in 'aeiou' else 'a'}"
            f" {what} stored as one S3 object, redirected to a short-lived presigned S3 URL"
            " (Location)",
        ),
        412: ResponseSpec(None, description="If-Match or If-Unmodified-Since is false"),
        416: ResponseSpec(None, description="No satisfiable range, or too many ranges"),
    }


async def serve(
    c: AppContext, request: Request[Any, Any, Any], st: FileState, *, download: bool
) -> ContentResponse:
    """Answer a GET or HEAD of `st`'s bytes. The caller has ALREADY decided access (owner,
    public bucket, or a valid signed URL): the presigned redirect hands out a URL that is
    itself a credential, so it must never be reached before that check."""
    rep = Representation(
        size=st.size,
        etag=st.sha256,
        last_modified=st.created_at,
        content_type=st.content_type,
        name=st.name,
    )
    p = plan(
        request.method,
        request_fields(request),
        rep,
        now=now(),
        download=download,
        max_ranges=c.settings.max_ranges,
    )
    if request.method != "GET" or p.status not in (200, 206):
        # HEAD, 304, 412, 416: no body, nothing read, not a download.
        return ContentResponse(b"", status=p.status, headers=p.headers)
    if p.status == 200:
        location = await redirect_location(c.settings, c.blobs, st.manifest, st.size, p.headers)
        if location is not None:
            c.downloads.record(st.id, st.size)  # handed over whole; counted as sent
            return ContentResponse(
                b"", status=307, headers={"Location": location, "Cache-Control": "no-store"}
            )
    body = await read_small(c.blobs, st.manifest, p, lambda sent: c.downloads.record(st.id, sent))
    return ContentResponse(body, status=p.status, headers=p.headers)
