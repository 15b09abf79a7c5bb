"""The one error shape, and the one place where failures become HTTP statuses.

Every error answer is `{"error": {"code", "message", "details"}, "request_id"}` with the
`X-Request-ID` header, whatever raised it: a domain refusal, a framework validation
error, an unknown route, an unavailable bus, or a bug (500, logged, details hidden).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from bus.actors.commandbus import BusUnavailable
from bus.blobs.errors import BlobCorrupt, BlobNotFound, BlobStoreFull, BlobStoreUnavailable
from bus.config.logs import get_logger
from bus.ids import uuid4_hex
from bus.store.db import database_down
from domain.errors import DomainError, NewerSchema

log = get_logger(__name__)

SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

STATUS_BY_KIND = {
    "invalid": 400,
    "not_found": 404,
    "conflict": 409,
    "unprocessable": 422,
    "gone": 410,
    "precondition": 412,
    "unavailable": 503,
}

# How long a client is told to wait when a stream holds an event of a newer schema version
# than this process reads (NewerSchema): a rolling upgrade replaces processes in seconds to
# minutes, and the next try may well land on a newer one.
UPGRADE_RETRY_AFTER = "5"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


# Stored bytes that cannot be served: (code, message, log event) of the 500 each answers.
_BLOB_CORRUPT = ("blob_corrupt", "stored bytes failed verification", "blob corrupt in the store")
_BLOB_MISSING = (
    "blob_missing",
    "stored bytes of this file are missing",
    "blob missing from the store",
)


class ApiError(Exception):
    """An HTTP-level refusal raised by the adapters (auth, limits, malformed requests)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


# A listing's query parameter or an event stream's filter given a value it does not take
# (an unknown status, sort, order, type or aggregate; a malformed stream id or prefix): one
# code for every listing and parameter, with the parameter in `details.field`, so that a
# client handles a typo in any of them once. `invalid_status` (uploads and fetches),
# `invalid_filter` (events) and `invalid_prefix` and the like (a bucket's objects) were
# per-listing spellings of the same refusal.
INVALID_QUERY = "invalid_query"


def shown(value: object, limit: int = 64) -> str:
    """A client's value as an error's details show it: at most `limit` characters, and
    always encodable (a lone surrogate becomes its escape, never a failed answer)."""
    return str(value)[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def unknown_value(
    field: str, value: object, allowed: Sequence[str], *, any_case: bool = False
) -> ApiError:
    """400 `invalid_query` for a value outside `allowed`, naming the parameter and the
    values it takes, in the one shape every listing answers."""
    values = list(allowed)
    return ApiError(
        400,
        INVALID_QUERY,
        f"{field} must be one of {', '.join(values)}" + (" (in any case)" if any_case else ""),
        {"field": field, "value": shown(value), "allowed": values},
    )


def bad_value(field: str, value: object, why: str) -> ApiError:
    """400 `invalid_query` for a malformed value of a parameter that takes no fixed set
    (an event stream id, a listing's prefix): the same code and `details.field`."""
    return ApiError(400, INVALID_QUERY, f"{field}: {why}", {"field": field, "value": shown(value)})


def api_error(exc: DomainError, headers: dict[str, str] | None = None) -> ApiError:
    """The answer to a domain refusal (the one mapping), as an ApiError that can carry
    `headers` too (a tus creation's Location: the upload exists though the request failed)."""
    if exc.code == "contention":
        return ApiError(
            503, exc.code, exc.message, exc.details, {"Retry-After": "1", **(headers or {})}
        )
    if exc.kind == "unavailable":  # upgrade_in_progress (NewerSchema)
        return ApiError(
            503,
            exc.code,
            exc.message,
            exc.details,
            {"Retry-After": UPGRADE_RETRY_AFTER, **(headers or {})},
        )
    return ApiError(STATUS_BY_KIND.get(exc.kind, 400), exc.code, exc.message, exc.details, headers)


def request_id_of(request: Request[Any, Any, Any]) -> str:
    """The id the middleware assigned; unknown routes never reach route middleware, so the
    error path assigns one itself (the client's, if sane)."""
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if not rid:
        given = request.headers.get("x-request-id") or ""
        rid = given if SAFE_REQUEST_ID.match(given) else uuid4_hex()
        state["request_id"] = rid
    return str(rid)


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    rid = request_id_of(request)
    return Response(
        {"error": {"code": code, "message": message, "details": details or {}}, "request_id": rid},
        status_code=status,
        headers={**(headers or {}), "X-Request-ID": rid},
        media_type="application/json",
    )


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, ApiError):
        return error_response(request, exc.status, exc.code, exc.message, exc.details, exc.headers)
    if isinstance(exc, NewerSchema) and not _may_know(request, exc):
        # A stream read directly (a GET folding it) that the caller may not see: the same
        # 404 as a missing one, never a sign that it exists.
        prefix, _, aggregate_id = (exc.stream_id or "").partition("-")
        return error_response(
            request, 404, f"{prefix}_not_found", f"no such {prefix}", {"id": aggregate_id}
        )
    if isinstance(exc, DomainError):
        err = api_error(exc)
        return error_response(request, err.status, err.code, err.message, err.details, err.headers)
    if isinstance(exc, BusUnavailable):
        return error_response(
            request, 503, "bus_unavailable", str(exc), {}, {"Retry-After": str(exc.retry_after)}
        )
    if isinstance(exc, BlobStoreUnavailable):
        # Nothing was recorded: the bytes were not acknowledged by the store. Out of space
        # is not out of reach: said so (507, MinIO's XMinioStorageFull), and logged as an
        # error, since a retry in seconds rarely helps.
        if isinstance(exc, BlobStoreFull):
            status, code, message = 507, "insufficient_storage", "the blob store is out of space"
            log.error("blob store full", path=request.url.path, error=str(exc))
        else:
            status, code = 503, "blob_store_unavailable"
            message = "the blob store is unavailable; retry later"
            log.warning("blob store unavailable", path=request.url.path, error=str(exc))
        return error_response(
            request, status, code, message, {}, {"Retry-After": str(exc.retry_after)}
        )
    if isinstance(exc, (BlobCorrupt, BlobNotFound)):
        # A live file or object names bytes the store cannot give back (corrupt, or gone
        # with a disk or by hand): the server's fault, named with the blob for an operator.
        code, message, _ = _BLOB_CORRUPT if isinstance(exc, BlobCorrupt) else _BLOB_MISSING
        log_unservable(request, exc)
        return error_response(request, 500, code, message, {"sha256": exc.sha256})
    if database_down(exc):
        # PostgreSQL restarting or unreachable: it comes back (the supervisor restarts it,
        # a pool reconnects), so clients are told to retry, like for the bus above.
        log.warning("database unavailable", path=request.url.path, error=repr(exc)[:300])
        return error_response(
            request,
            503,
            "database_unavailable",
            "the database is unavailable; retry later",
            {},
            {"Retry-After": "2"},
        )
    if isinstance(exc, ValidationException):
        return error_response(
            request, 400, "validation_error", str(exc.detail), {"errors": exc.extra or []}
        )
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        hdrs = dict(exc.headers or {})
        if exc.status_code >= 500:
            _log_server_error(request, exc)
            return error_response(request, exc.status_code, code, "internal server error", {}, hdrs)
        return error_response(request, exc.status_code, code, str(exc.detail), {}, hdrs)
    _log_server_error(request, exc)
    return error_response(request, 500, "internal_error", "internal server error")


def _may_know(request: Request[Any, Any, Any], exc: NewerSchema) -> bool:
    """Whether the caller may learn that the stream `exc` met exists: its recorded owner or
    an admin. Anyone else (another user, an anonymous caller, a stream whose owner is not
    known) is answered as for a missing id."""
    if exc.stream_id is None:
        return True  # nothing names a stream: nothing to hide
    try:
        who = request.app.state.cairn.auth.authenticate(request.headers)
    except Exception:
        return False
    return bool(who.admin or (exc.owner is not None and who.user == exc.owner))


def log_unservable(request: Request[Any, Any, Any], exc: BlobCorrupt | BlobNotFound) -> None:
    """The error line of stored bytes that cannot be served, naming the blob and the
    request: at the start of an answer (a 500) or found in the middle of one (cut off)."""
    event = (_BLOB_CORRUPT if isinstance(exc, BlobCorrupt) else _BLOB_MISSING)[2]
    log.error(
        event,
        request_id=request_id_of(request),
        path=request.url.path,
        sha256=exc.sha256,
        error=str(exc),
    )


def log_cut_off(request: Request[Any, Any, Any], exc: BlobStoreUnavailable) -> None:
    """The error line of an answer cut short because the blob store failed after its
    status went out (before, the same failure is the 503 above, logged as a warning)."""
    log.error(
        "blob store unavailable, answer cut short",
        request_id=request_id_of(request),
        path=request.url.path,
        error=str(exc),
    )


def _log_server_error(request: Request[Any, Any, Any], exc: BaseException) -> None:
    """Every 500 is logged with its request id (the one the client sees) and traceback."""
    log.error(
        "unhandled error",
        request_id=request_id_of(request),
        method=request.method,
        path=request.url.path,
        error=repr(exc)[:500],
        exc_info=exc,
    )
