"""tus 1.0's wire format: its headers, its version check and discovery, its URLs, and how
an upload's state and the domain's refusals read in its terms.

Kept apart from the controller (api/tus/controller.py), which says what each request does,
and from the appender (api/tus/appender.py), which stores a body.

Locations: without CAIRN_TRUST_PROXY the Location is a path (tus allows relative URLs), so
nothing a client controls (Host, X-Forwarded-*) ends up in it; with it, an absolute URL
from Forwarded / X-Forwarded-Host / X-Forwarded-Proto.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.context import ctx
from api.errors import ApiError, error_response
from api.http.digits import ascii_int
from api.http.forwarded import origin
from api.http.trailers import TRAILERS_EXTENSION
from api.tus.pieces import max_size
from bus.config.settings import Settings
from domain.errors import DomainError
from domain.uploads import LIVE, UploadState, UploadStatus

TUS_VERSION = "1.0.0"
_VERSION = TUS_VERSION.encode()
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "checksum-trailer",
    "termination",
    "concatenation",
)
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
}
OFFSET_STREAM = "application/offset+octet-stream"
PATH = "/v1/tus"

_UPLOAD_PATH = re.compile(r".*/v1/tus/([^/]+)/?")

# The protocol's headers, each one value: sent twice, which one counts is a guess (the
# server read the first, a proxy or a client library may read the other or join them).
_SINGLE = {
    name.lower().encode(): name
    for name in (
        "Tus-Resumable",
        "Upload-Offset",
        "Upload-Length",
        "Upload-Defer-Length",
        "Upload-Metadata",
        "Upload-Checksum",
        "Upload-Concat",
        "X-HTTP-Method-Override",
    )
}


def repeated_header(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The first tus header `headers` holds more than once, else None."""
    seen: set[bytes] = set()
    for key, _ in headers:
        name = key.lower()
        if name in _SINGLE:
            if name in seen:
                return _SINGLE[name]
            seen.add(name)
    return None


# ---- protocol headers ----------------------------------------------------------------


def tus_middleware(app: ASGIApp) -> ASGIApp:
    """`Tus-Resumable` on every answer, 412 for a request speaking another version, 400
    `invalid_header` for one sending a protocol header twice (nothing is done), and the
    OPTIONS (discovery) answer.

    Runs inside the route's exception handler, so error answers get the header too."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = str(scope.get("method"))

        async def send_tus(message: Message) -> None:
            if message["type"] == "http.response.start":
                hdrs = [h for h in message.get("headers", []) if h[0].lower() != b"tus-resumable"]
                hdrs.append((b"tus-resumable", _VERSION))
                message["headers"] = hdrs
            await send(message)

        if method == "OPTIONS":
            # Discovery, answered here: clients ask it before they know which version to
            # speak, and Litestar's automatic OPTIONS handler shadows a controller's own.
            settings = scope["litestar_app"].state.cairn.settings
            response: Response[Any] = Response(
                None, status_code=204, headers=discovery_headers(settings)
            )
        elif next((v for k, v in scope["headers"] if k == b"tus-resumable"), None) != _VERSION:
            response = error_response(
                Request(scope, receive),
                412,
                "unsupported_tus_version",
                f"this server speaks tus {TUS_VERSION} (send Tus-Resumable: {TUS_VERSION})",
                {"supported": [TUS_VERSION]},
                {"Tus-Version": TUS_VERSION},
            )
        elif (twice := repeated_header(scope["headers"])) is not None:
            response = error_response(
                Request(scope, receive),
                400,
                "invalid_header",
                f"{twice} was sent more than once",
                {"header": twice},
            )
        else:
            await app(scope, receive, send_tus)
            return
        # (For HEAD, the server drops the error's body.)
        asgi = response.to_asgi_response(app=None, request=Request(scope, receive))
        await asgi(scope, receive, send_tus)

    return middleware


def discovery_headers(settings: Settings) -> dict[str, str]:
    return {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": ",".join(EXTENSIONS),
        "Tus-Max-Size": str(max_size(settings)),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
    }


_KEY = re.compile(r"[!-~]+")


def parse_metadata(value: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64(value)` pairs, the value optional.

    Values are decoded as UTF-8; a key without a value maps to "". Keys are printable ASCII
    (tus: "SHOULD be ASCII"): a header's other bytes reach us as Latin-1, so a UTF-8 key
    would be kept garbled. Raises ApiError(400)."""
    out: dict[str, str] = {}
    if value is None or not value.strip():
        return out
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, encoded = item.partition(" ")
        encoded = encoded.strip()
        if not _KEY.fullmatch(key):
            raise ApiError(400, "invalid_metadata", "Upload-Metadata has an invalid key")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8") if encoded else ""
        except (binascii.Error, ValueError):
            raise ApiError(
                400,
                "invalid_metadata",
                "Upload-Metadata values must be base64 of UTF-8 text",
                {"key": key[:100]},
            ) from None
        if key in out:
            # tus 1.0: "the key MUST be unique"; which value would count is a guess.
            raise ApiError(
                400, "invalid_metadata", "Upload-Metadata repeats a key", {"key": key[:100]}
            )
        out[key] = decoded
    return out


_MEDIA_TYPE = re.compile(r"[!-~][ -~]{0,254}")


def content_type(metadata: dict[str, str]) -> str:
    """`filetype` becomes the file's Content-Type when served: visible ASCII only."""
    value = metadata.get("filetype") or "application/octet-stream"
    if not _MEDIA_TYPE.fullmatch(value):
        raise ApiError(400, "invalid_metadata", "filetype must be a media type (printable ASCII)")
    return value


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items()
    )


def parse_int(value: str, header: str) -> int:
    n = ascii_int(value.strip())
    if n is None:
        raise ApiError(400, "invalid_header", f"{header} must be a non-negative integer")
    return n


def trailer_field(request: Request[Any, Any, Any], name: str) -> str | None:
    """A request trailer field (see api/http/trailers.py), or None."""
    extensions: dict[Any, Any] = dict(request.scope.get("extensions") or {})
    fields: list[tuple[bytes, bytes]] = list(extensions.get(TRAILERS_EXTENSION) or [])
    for key, value in fields:
        if key.decode("latin-1").lower() == name:
            return str(value.decode("latin-1"))
    return None


def parse_checksum(value: str | None) -> tuple[str, bytes] | None:
    """`Upload-Checksum: <algorithm> <base64 digest>`; 400 for anything unknown or bent."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUMS:
        raise ApiError(
            400,
            "unsupported_checksum_algorithm",
            f"unsupported checksum algorithm {algorithm[:32]!r}",
            {"supported": list(CHECKSUMS)},
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_checksum", "Upload-Checksum must be base64") from None
    if len(digest) != CHECKSUMS[algorithm]().digest_size:
        raise ApiError(400, "invalid_checksum", f"not a {algorithm} digest")
    return algorithm, digest


def media_type(request: Request[Any, Any, Any]) -> str:
    return (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()


# ---- URLs ------------------------------------------------------------------------------


def upload_url(request: Request[Any, Any, Any], upload_id: str) -> str:
    root = str(request.scope.get("root_path") or "")
    path = f"{root}{PATH}/{upload_id}"
    if not ctx(request).settings.trust_proxy:
        return path
    base = origin(request, trust_proxy=True)
    return f"{base}{path}" if base else path


def id_from_url(url: str) -> str:
    try:
        path = urlsplit(url.strip()).path
    except ValueError:  # an unparseable host such as "[::1" (a 500 before)
        path = ""
    m = _UPLOAD_PATH.fullmatch(path)
    if not m:
        raise ApiError(
            400, "invalid_concat", "Upload-Concat names something that is not a tus upload URL"
        )
    try:
        return str(uuid.UUID(m.group(1)))
    except ValueError:
        raise ApiError(
            400, "invalid_concat_part", "a part is not a partial upload of yours", {"part": url}
        ) from None


# ---- upload state ----------------------------------------------------------------------


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def expires_at(state: UploadState, ttl: float) -> datetime | None:
    """When an unfinished upload (or a partial one with all its bytes, kept for final
    concatenations until then) expires: its last activity plus the TTL."""
    if state.status not in LIVE or state.mode == "final":
        return None
    return _aware(state.updated_at) + timedelta(seconds=ttl)


def http_date(t: datetime) -> str:
    return format_datetime(t.astimezone(UTC), usegmt=True)


def not_found(upload_id: str) -> ApiError:
    return ApiError(404, "upload_not_found", "no such upload", {"id": upload_id})


def tus_error(e: DomainError) -> DomainError | ApiError:
    """A domain refusal in tus terms: a terminated upload is gone from the protocol's view
    (404), an expired or failed one is 410, bytes past the length are 413. Anything else
    keeps the one mapping of api/errors.py."""
    if e.code == "upload_not_active":
        status = e.details.get("status")
        if status == UploadStatus.ABORTED.value:
            return ApiError(404, "upload_not_found", "the upload was terminated", e.details)
        if status in (UploadStatus.EXPIRED.value, UploadStatus.FAILED.value):
            return ApiError(410, "upload_gone", e.message, e.details)
    if e.code == "length_exceeded":
        return ApiError(413, e.code, e.message, e.details)
    return e


def state_headers(state: UploadState, ttl: float) -> dict[str, str]:
    headers = {"Upload-Offset": str(state.offset), "Cache-Control": "no-store"}
    exp = expires_at(state, ttl)
    if exp is not None:
        headers["Upload-Expires"] = http_date(exp)
    return headers


def empty_answer(status: int, headers: dict[str, str]) -> Response[bytes]:
    """An answer with no body at all (not JSON `null`), as tus clients expect."""
    return Response(b"", status_code=status, headers=headers, media_type="text/plain")
