"""One answer shape for every paged list (`GET /v1/uploads`, `/v1/files`, `/v1/tasks`,
`/v1/fetches`): `{items, total, limit, offset}` with `X-Total-Count`, and a query the read
model refuses (a bad sort or filter value: ValueError) as 400 `invalid_query`.

One rule for the lists' enum query parameters (`status`, `type`, `sort`, `order`):
`enum_query` takes any ASCII case and refuses anything else as 400 `invalid_query` naming
the field and the allowed values (api/errors.unknown_value: the answer the event streams'
filters give too). And one rule for the cursor-paged lists (`/v1/buckets`, a bucket's
objects): the cursor is opaque (`encode_cursor`), and `decode_cursor` refuses one the
listing did not issue (malformed, forged, or another listing's) as 400 `invalid_cursor`."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, overload

import orjson
from litestar import Response

from api.errors import INVALID_QUERY, ApiError, unknown_value

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
        raise ApiError(400, INVALID_QUERY, str(e)) from None
    items = [view(r) for r in rows] if view is not None else list(rows)
    return Response(
        {"items": items, "total": total, "limit": limit, "offset": offset},
        headers={"X-Total-Count": str(total)},
    )


@overload
def enum_query(name: str, value: str, allowed: Iterable[str]) -> str: ...
@overload
def enum_query(name: str, value: str | None, allowed: Iterable[str]) -> str | None: ...
def enum_query(name: str, value: str | None, allowed: Iterable[str]) -> str | None:
    """A list's enum query parameter in any ASCII case, as its canonical spelling (None if
    absent); anything else (empty, unknown, a non-ASCII look-alike such as a dotless i) is
    400 `invalid_query` naming the field and the allowed values: not an empty page, where
    a typo would read as "none"."""
    if value is None:
        return None
    values = list(allowed)
    if value.isascii():
        folded = value.lower()
        for canonical in values:
            if canonical.lower() == folded:
                return canonical
    raise unknown_value(name, value, values, any_case=True)


def status_filter(status: str | None, statuses: Iterable[str]) -> str | None:
    """A list's `status` query (as `enum_query`) against a status enum's values."""
    return enum_query("status", status, [str(s) for s in statuses])


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
