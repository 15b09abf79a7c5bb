"""One answer shape for every paged list (`GET /v1/uploads`, `/v1/files`, `/v1/tasks`,
`/v1/fetches`): `{items, total, limit, offset}` with `X-Total-Count`, and a query the read
model refuses (a bad sort or filter value: ValueError) as 400 `invalid_query`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any

from litestar import Response

from api.errors import ApiError


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
