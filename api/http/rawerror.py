"""The one error shape as bytes, for answers given below the web framework.

Some refusals happen before Litestar sees a request (an oversized or slow request head,
refused in the HTTP protocol) or outside it (requests arriving while the API drains). They
still answer `{"error": {"code", "message", "details"}, "request_id"}` with `X-Request-ID`,
like every error of api/errors.py.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson

from bus.ids import uuid4_hex


def new_request_id() -> str:
    return uuid4_hex()


def error_json(
    code: str, message: str, request_id: str, details: dict[str, Any] | None = None
) -> bytes:
    return orjson.dumps(
        {
            "error": {"code": code, "message": message, "details": details or {}},
            "request_id": request_id,
        }
    )


def error_headers(
    body: bytes, request_id: str, extra: dict[str, str] | None = None
) -> list[tuple[bytes, bytes]]:
    """Headers of an error answer after which the connection is closed."""
    hdrs = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "x-request-id": request_id,
        "connection": "close",
        **(extra or {}),
    }
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs.items()]


def error_response_bytes(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """A complete HTTP/1.1 error response, for writing straight to a transport."""
    rid = new_request_id()
    body = error_json(code, message, rid, details)
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("latin-1")]
    lines += [k + b": " + v + b"\r\n" for k, v in error_headers(body, rid, extra_headers)]
    return b"".join([*lines, b"\r\n", body])
