"""Event-stream filters (`aggregate`, `type`, `stream`) and resume positions, validated once
for SSE and WebSocket alike, and turned into a Selector bound to the caller.

A bad value is 400 `invalid_query` naming the filter in `details.field` (with the allowed
values for `aggregate` and `type`): the same answer a listing's bad query value gets
(api/errors.unknown_value).

Authorisation lives here too: a non-admin's selector always carries `owner`, so another
user's stream id simply matches nothing, exactly like an id that does not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg

from api.auth import Principal
from api.errors import ApiError, bad_value, unknown_value
from api.http.digits import ascii_int
from bus.store import feed
from bus.store.feed import Selector
from domain.buckets.names import is_bucket_name
from domain.registry import EVENTS, STREAM_PREFIXES

FILTERS = ("aggregate", "type", "stream")
MAX_VALUES = 100  # values per filter


def _values(name: str, raw: Any) -> list[str]:
    """A filter's values: a comma-separated string, a list of strings, or absent."""
    if raw is None:
        return []
    items: Iterable[Any] = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise bad_value(name, item, "must be a string or a list of strings")
        out.extend(v.strip() for v in item.split(",") if v.strip())
    if len(out) > MAX_VALUES:
        raise bad_value(name, f"{len(out)} values", f"at most {MAX_VALUES} values")
    return out


def _stream_ids(value: str) -> list[str]:
    """`upload-<uuid>` (or `bucket-<name>`) names one stream; a bare `<uuid>` any aggregate's
    stream with that id."""
    prefix, sep, rest = value.partition("-")
    if sep and STREAM_PREFIXES.get(prefix) == "buckets" and is_bucket_name(rest):
        return [value]  # a bucket's id is its name, not a uuid (domain/buckets/commands.py)
    if sep and prefix in STREAM_PREFIXES:
        try:
            return [f"{prefix}-{uuid.UUID(rest)}"]
        except ValueError:
            pass
    try:
        aggregate_id = str(uuid.UUID(value))
    except ValueError:
        raise bad_value(
            "stream",
            value,
            "expected an aggregate id or a stream id like upload-<uuid> or bucket-<name>",
        ) from None
    return [f"{p}-{aggregate_id}" for p in STREAM_PREFIXES]


def selector_for(who: Principal, filters: dict[str, Any]) -> Selector:
    """Validate `filters` (400 `invalid_query` naming the filter) and bind them to `who`."""
    aggregates = _values("aggregate", filters.get("aggregate"))
    known_aggregates = sorted(set(STREAM_PREFIXES.values()))
    for a in aggregates:
        if a not in known_aggregates:
            raise unknown_value("aggregate", a, known_aggregates)
    types = _values("type", filters.get("type"))
    for t in types:
        if t not in EVENTS:
            raise unknown_value("type", t, sorted(EVENTS))
    streams: list[str] = []
    for s in _values("stream", filters.get("stream")):
        streams.extend(_stream_ids(s))
    return Selector(
        owner=None if who.admin else who.user,
        aggregates=frozenset(aggregates),
        types=frozenset(types),
        streams=frozenset(streams),
    )


def parse_position(value: Any, name: str) -> int | None:
    """A resume position: a non-negative integer (0 = from the very beginning)."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    position = ascii_int(text, 18)
    if position is None:
        raise ApiError(
            400,
            "invalid_last_event_id",
            f"{name} must be a non-negative integer (an event's position)",
            {"field": name, "value": text[:64]},
        )
    return position


def check_not_beyond(position: int | None, head: int, name: str) -> None:
    """A position beyond the store's head was never handed out by this deployment (another
    system, or a restored database): 400 rather than silently starting elsewhere."""
    if position is not None and position > head:
        raise ApiError(
            400,
            "last_event_id_beyond_head",
            f"{name} {position} is beyond the newest event; start without it",
            {"value": position, "head": head},
        )


async def caught_up_at(pool: asyncpg.Pool, after: int | None, name: str) -> int | None:
    """The store's head now, for a stream resuming after `after`: up to it is "what is
    there", and the stream says `caught_up` once it has sent that far (SSE and WebSocket
    alike). The store's, not the fan-out's (whose reader may not have read the newest
    commits yet), so `caught_up` comes after every event committed before the request.
    A position beyond it is 400 (check_not_beyond); None without a resume position (live
    from now: caught up at once)."""
    if after is None:
        return None
    head = await feed.head(pool)
    check_not_beyond(after, head, name)
    return head
