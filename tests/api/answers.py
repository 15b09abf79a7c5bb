"""Small helpers the API route tests share: fresh names (tests on a shared system keep
apart by them) and the one error shape every refusal must have."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import httpx


def user() -> str:
    """A user of its own for one test."""
    return f"u-{secrets.token_hex(4)}"


def bname() -> str:
    """A bucket name of its own for one test."""
    return f"b-{secrets.token_hex(6)}"


def opath(bucket: str, key: str) -> str:
    """The path of object `key` in `bucket`. Dots percent-encoded: HTTP clients remove `..`
    segments from a URL before sending it (RFC 3986 §5.2.4), and a key is not a path."""
    return f"/v1/buckets/{bucket}/objects/{quote(key, safe='/').replace('.', '%2E')}"


async def make_bucket(c: httpx.AsyncClient, public: bool = False) -> str:
    """A bucket of its own (`public` or not) for one test, made by `c`'s user: its name."""
    name = bname()
    r = await c.post("/v1/buckets", json={"name": name, "public": public})
    assert r.status_code == 201, r.text
    return name


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """`r` is `status` with `code` in the one error shape ({"error", "request_id"}, the id
    the one the response's X-Request-Id names); returns the error object."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"} and body["error"]["code"] == code, body
    assert body["request_id"] == r.headers["x-request-id"]
    return body["error"]  # type: ignore[no-any-return]
