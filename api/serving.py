"""Serving a stored file's bytes: the one path shared by file content and object reads.

`GET/HEAD /v1/files/{id}/content` and `GET/HEAD /v1/buckets/{name}/objects/{key}` answer
exactly alike once the caller is allowed: RFC 9110 ranges and conditionals (api/http),
the optional S3 presigned redirect, download counting. Keeping it here means the two
routes cannot drift apart (a fix to one is a fix to both).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from litestar import Request
from litestar.openapi.datastructures import ResponseSpec

from api.bucket_access import signature_params
from api.context import AppContext, now
from api.errors import log_cut_off, log_unservable
from api.http import objheaders
from api.http.content import ContentResponse, Representation, plan, read_small, request_fields
from api.http.presigned import redirect_location
from api.http.signing import carries_signature
from bus.blobs.errors import BlobCorrupt, BlobNotFound, BlobStoreUnavailable
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
    c: AppContext,
    request: Request[Any, Any, Any],
    st: FileState,
    *,
    download: bool,
    described: Mapping[str, str] | None = None,
) -> ContentResponse:
    """Answer a GET or HEAD of `st`'s bytes. The caller has ALREADY decided access (owner,
    public bucket, or a valid signed URL): the presigned redirect hands out a URL that is
    itself a credential, so it must never be reached before that check.

    `described`: more headers about the representation (an object's x-amz-meta-*), sent
    with what describes it (200, 206 and the 307 redirect), not with 304, 412 or 416.
    The file's stored headers (an object's Cache-Control, Content-Encoding, ...) go out
    as api/http/objheaders.py says, on both routes: the same version, the same answer."""
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
    objheaders.apply(p.headers, p.status, st.headers, download=download)
    if described and p.status in (200, 206):
        p.headers.update(described)
    if request.method != "GET" or p.status not in (200, 206):
        # HEAD, 304, 412, 416: no body, nothing read, not a download.
        return ContentResponse(b"", status=p.status, headers=p.headers)
    if p.status == 200 and objheaders.redirectable(st.headers):
        location = await redirect_location(
            c.settings,
            c.blobs,
            st.manifest,
            st.size,
            p.headers,
            granted_for=_signed_lifetime(request),
        )
        if location is not None:
            c.downloads.record(st.id, st.size)  # handed over whole; counted as sent
            return ContentResponse(
                b"",
                status=307,
                headers={**(described or {}), "Location": location, "Cache-Control": "no-store"},
            )
    body = await read_small(c.blobs, st.manifest, p, lambda sent: c.downloads.record(st.id, sent))
    if isinstance(body, bytes):
        return ContentResponse(body, status=p.status, headers=p.headers)
    framed = bool(p.parts and p.parts[0][0])
    return ContentResponse(
        await started(request, body, framed=framed), status=p.status, headers=p.headers
    )


def _signed_lifetime(request: Request[Any, Any, Any]) -> int | None:
    """Seconds left of the signed URL that let this request in, or None if it carries
    none. Its signature (expiry included) was verified before `serve` was reached: a
    request that carries one is judged by it alone (api/bucket_access.py)."""
    params = signature_params(request.query_params)
    if not carries_signature(params):
        return None
    expires = params.get("expires") or ""
    if not (expires.isascii() and expires.isdigit()):
        return 0  # cannot have been verified; never redirected
    return int(expires) - int(time.time())


async def started(
    request: Request[Any, Any, Any], body: AsyncGenerator[bytes, None], *, framed: bool
) -> AsyncIterator[bytes]:
    """`body` with its first bytes of content already read, before the status is sent.

    A blob missing from the store (or corrupt) at the start of the answer is then the
    500 `blob_missing` / `blob_corrupt` the README promises, not a 200 whose body stops at
    once. One found later cuts the answer short (its status has gone out): that is logged
    with the same error line, naming the blob and the request."""
    first: list[bytes] = []
    try:
        for _ in range(2 if framed else 1):  # a multipart body starts with its framing
            first.append(await anext(body))
    except StopAsyncIteration:
        pass
    except BaseException:
        await body.aclose()
        raise

    async def rest() -> AsyncIterator[bytes]:
        for piece in first:
            yield piece
        try:
            async for piece in body:
                yield piece
        except (BlobNotFound, BlobCorrupt) as e:
            log_unservable(request, e)
            raise
        except BlobStoreUnavailable as e:
            # S3 went away (or kept stalling past its retries) after the status went out:
            # the answer is cut short, and without this line the log held only the ASGI
            # server's traceback, which names neither the store nor the cause.
            log_cut_off(request, e)
            raise
        finally:
            await body.aclose()  # its end (counting the bytes sent) runs now, not at GC

    return rest()
