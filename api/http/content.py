"""Serving a stored representation like a static file server: the answer to GET and HEAD.

`plan` decides (without I/O) the status, the exact header set and which byte ranges go
out, from the request's method and headers and the representation's validators: 412 and
304 from the preconditions, then 206 (one range, or several as `multipart/byteranges`),
416, or the full 200 (RFC 9110 §13, §14, §15). HEAD gets what GET would get, except that
Range applies to GET only (§14.2): a HEAD with Range describes the full representation.

`ContentResponse` then streams those ranges from the blob store with Litestar's streaming
response (which stops reading when the client disconnects), using the headers verbatim:
Litestar would otherwise append `; charset=utf-8` to text types and cannot render HEAD
answers for types it does not serialise (the old 500 for octet-stream, SVG and XHTML).
Full downloads read the file in 1 MiB pieces, one thread hop each, as before ranges:
that is what keeps a full download near nginx's sendfile.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from litestar import Request
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from api.errors import ApiError
from api.http import conditionals
from api.http.disposition import content_disposition
from api.http.media import SANDBOX_CSP, is_active, served_type
from api.http.ranges import ByteRange, MalformedRange, UnsatisfiableRange, parse_range
from bus.blobs.manifests import manifest_offsets, read_manifest
from domain.ports import BlobStore

CACHE_CONTROL = "private, max-age=0, must-revalidate"


@dataclass(frozen=True)
class Representation:
    """What is served: its size, validators and how it is named and typed."""

    size: int
    etag: str  # opaque tag, without quotes: the content's sha256
    last_modified: datetime
    content_type: str  # as stored; checked by `served_type`
    name: str


@dataclass
class Plan:
    status: int
    headers: dict[str, str]
    # What to send, in order: (bytes before the range, the range). Empty: no body.
    parts: list[tuple[bytes, ByteRange]] = field(default_factory=list)
    trailer: bytes = b""  # the closing boundary of a multipart body

    @property
    def body_length(self) -> int:
        return sum(len(h) + r.length for h, r in self.parts) + len(self.trailer)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name)


def plan(
    method: str,
    headers: Mapping[str, str],
    rep: Representation,
    *,
    now: datetime,
    download: bool = False,
    max_ranges: int = 100,
) -> Plan:
    """The answer to a GET or HEAD of `rep` at `now`; 412 and 416 are raised as ApiError.

    `headers` is looked up by lower-case name (Litestar's request headers are). `now` is
    the answer's Date: a Last-Modified later than it (a writer whose clock runs ahead of
    this process's) is replaced by it, as RFC 9110 §8.8.2.1 requires, and the validators
    are compared against what is sent."""
    etag = conditionals.format_etag(rep.etag)
    ctype = served_type(rep.content_type)
    active = is_active(ctype)
    modified = min(rep.last_modified, now)
    common = {
        "Date": conditionals.format_http_date(now),
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
    }
    if active:
        common["Content-Security-Policy"] = SANDBOX_CSP

    verdict = conditionals.evaluate(
        method,
        etag=rep.etag,
        last_modified=modified,
        if_match=_header(headers, "if-match"),
        if_none_match=_header(headers, "if-none-match"),
        if_modified_since=_header(headers, "if-modified-since"),
        if_unmodified_since=_header(headers, "if-unmodified-since"),
    )
    if verdict is conditionals.Verdict.PRECONDITION_FAILED:
        raise ApiError(
            412, "precondition_failed", "a precondition of the request is false", headers=common
        )
    if verdict is conditionals.Verdict.NOT_MODIFIED:
        # §15.4.5: the fields a 200 would carry for caches; no content metadata.
        return Plan(304, dict(common))

    full = {
        **common,
        "Content-Type": ctype,
        "Accept-Ranges": "bytes",
        "Last-Modified": conditionals.format_http_date(modified),
        "Content-Disposition": content_disposition(rep.name, download),
    }
    whole = [(b"", ByteRange(0, rep.size))] if rep.size else []
    range_value = _header(headers, "range")
    if method != "GET" or range_value is None:
        return _with_length(Plan(200, full, whole))
    if not conditionals.if_range_ok(
        _header(headers, "if-range"), etag=rep.etag, last_modified=modified
    ):
        return _with_length(Plan(200, full, whole))
    try:
        ranges = parse_range(range_value, rep.size, max_ranges=max_ranges)
    except MalformedRange:
        return _with_length(Plan(200, full, whole))
    except UnsatisfiableRange as e:
        raise ApiError(
            416,
            e.code,
            str(e),
            {"size": rep.size},
            headers={**common, "Accept-Ranges": "bytes", "Content-Range": f"bytes */{rep.size}"},
        ) from None
    if not ranges:  # a suffix range of an empty file: nothing to cut, send it whole
        return _with_length(Plan(200, full, whole))
    if len(ranges) == 1:
        (r,) = ranges
        return _with_length(
            Plan(206, {**full, "Content-Range": r.content_range(rep.size)}, [(b"", r)])
        )
    boundary = f"cairn-{secrets.token_hex(16)}"
    parts = []
    for i, r in enumerate(ranges):
        head = (
            ("\r\n" if i else "")
            + f"--{boundary}\r\nContent-Type: {ctype}\r\n"
            + f"Content-Range: {r.content_range(rep.size)}\r\n\r\n"
        )
        parts.append((head.encode("latin-1"), r))
    multipart = {**full, "Content-Type": f"multipart/byteranges; boundary={boundary}"}
    return _with_length(Plan(206, multipart, parts, f"\r\n--{boundary}--\r\n".encode("latin-1")))


def _with_length(p: Plan) -> Plan:
    p.headers["Content-Length"] = str(p.body_length)
    return p


async def stream_parts(
    blobs: BlobStore,
    manifest: Sequence[tuple[str, int]],
    p: Plan,
    on_done: Callable[[int], None] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The body of `p`: each part's framing, then its bytes, read only where it lies.

    `on_done(content bytes sent)` runs when the body ends, completely or not (a client that
    went away cancels the stream)."""
    offsets = manifest_offsets(manifest)
    sent = 0
    try:
        for head, r in p.parts:
            if head:
                yield head
            async for piece in read_manifest(blobs, manifest, r.start, r.end, offsets=offsets):
                sent += len(piece)
                yield piece
        if p.trailer:
            yield p.trailer
    finally:
        if on_done is not None:
            on_done(sent)


async def read_small(
    blobs: BlobStore,
    manifest: Sequence[tuple[str, int]],
    p: Plan,
    on_done: Callable[[int], None] | None = None,
) -> bytes | AsyncGenerator[bytes, None]:
    """The body of `p`: read at once if at most SMALL_BODY bytes, else a stream.

    A small body (a 4 KiB range) is cheaper sent in one piece than streamed: no task
    group listening for a disconnect, one ASGI message. Memory stays bounded by
    SMALL_BODY per request."""
    stream = stream_parts(blobs, manifest, p, on_done)
    if p.body_length > SMALL_BODY:
        return stream
    return b"".join([piece async for piece in stream])


_CONDITIONAL_FIELDS = (
    "range",
    "if-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
)


def request_fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The fields serving looks at; a field sent several times is one comma-joined list
    (RFC 9110 §5.3), which leaves singleton fields such as Range invalid, as they are."""
    out = {}
    for name in _CONDITIONAL_FIELDS:
        value = conditionals.field_value(request.headers, name)
        if value is not None:
            out[name] = value
    return out


# Bodies up to this size are read before the answer starts (see read_small).
SMALL_BODY = 64 * 1024


class ContentResponse(Stream):
    """An answer whose headers go out exactly as given, with no body for HEAD: streamed,
    or sent in one piece when the body is already in memory (a small range)."""

    def __init__(self, body: bytes | AsyncIterator[bytes], *, status: int, headers: dict[str, str]):
        super().__init__([], status_code=status, headers=headers)
        self._body = body
        self._exact_headers = headers

    def to_asgi_response(
        self, app: Any, request: Request[Any, Any, Any], **kwargs: Any
    ) -> ASGIResponse:
        head = request.method == "HEAD" or self.status_code == 304
        headers = {**(kwargs.get("headers") or {}), **self._exact_headers}
        media_type = self._exact_headers.get("Content-Type")
        if isinstance(self._body, bytes):
            return ASGIResponse(
                body=b"" if head else self._body,
                headers=headers,
                is_head_response=head,
                media_type=media_type,
                status_code=self.status_code,
            )
        return ASGIStreamingResponse(
            iterator=self._body,
            headers=headers,
            is_head_response=head,
            media_type=media_type,
            status_code=self.status_code,
        )
