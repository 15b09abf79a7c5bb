"""One answer shape for every paged list (`GET /v1/uploads`, `/v1/files`, `/v1/tasks`,
`/v1/fetches`): `{items, total, limit, offset}` with `X-Total-Count`, and a query the read
model refuses (a bad sort or filter value: ValueError) as 400 `invalid_query`.

One rule for the cursor-paged lists (`/v1/buckets`, a bucket's
objects): the cursor is opaque (`encode_cursor`), and `decode_cursor` refuses one the
listing did not issue (malformed, forged, or another listing's) as 400 `invalid_cursor`."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Iterable, Sequence
from enum import StrEnum
from typing import Any

import orjson
from litestar import Response

from api.errors import ApiError

INVALID_CURSOR = "the cursor is not one this listing returned"


async def page_response(
    query: Awaitable[tuple[Sequence[Any], int]],
    limit: int,
    offset: int,
    view: Callable[[Any], Any] | None = None,
) -> Response[Any]:
    try:
        rows, total = await query
    except ValueError as e:
        raise ApiError(400, "invalid_query", str(e)) from None
    items = [view(r) for r in rows] if view is not None else list(rows)
    return Response(
        {"items": items, "total": total, "limit": limit, "offset": offset},
        headers={"X-Total-Count": str(total)},
    )


def status_filter(status: str | None, statuses: type[StrEnum]) -> str | None:
    """A list's `status` query, in any case: the status's name, or 400 `invalid_status`
    naming the allowed ones (not an empty page: a typo would read as "none")."""
    if status is None:
        return None
    if status.upper() not in statuses.__members__:
        raise ApiError(
            400, "invalid_status", "unknown status", {"allowed": list(statuses.__members__)}
        )
    return status.upper()


def encode_cursor(position: dict[str, str]) -> str:
    """Opaque to clients: where a listing's next page starts. Each listing keys `position`
    with its own names, so one listing's cursor is never taken for another's."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str, keys: Iterable[str]) -> tuple[str, str]:
    """(key, text) of a cursor that holds one of `keys` with a text value (no NUL, valid
    Unicode), as `encode_cursor` made it; else 400 `invalid_cursor`."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        data = orjson.loads(raw)
    except (binascii.Error, ValueError):
        data = None
    if isinstance(data, dict) and len(data) == 1:
        ((key, text),) = data.items()
        if key in set(keys) and isinstance(text, str) and "\x00" not in text:
            return key, text
    raise ApiError(400, "invalid_cursor", INVALID_CURSOR, {"field": "cursor"})
