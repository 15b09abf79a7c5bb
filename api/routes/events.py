"""Live events over HTTP: `GET /v1/events` (SSE), `GET /v1/events/ws` (WebSocket) and the
per-resource shortcuts `GET /v1/uploads/{id}/events`, `GET /v1/tasks/{id}/events` and
`GET /v1/fetches/{id}/events`.

The streams themselves are in api/events/ (fan-out, filters, SSE framing, WebSocket
protocol); this module validates the request, authorises it and picks the resume position.
"""

from __future__ import annotations

import weakref
from typing import Annotated, Any

from litestar import Controller, Request, WebSocket, get, websocket
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import Stream

from api.auth import Principal, provide_principal
from api.context import ctx, parse_uuid
from api.errors import ApiError, request_id_of
from api.events.fanout import Dropped, FanOut
from api.events.filters import FILTERS, caught_up_at, parse_position, selector_for
from api.events.sse import sse_stream
from api.events.stream_slots import StreamSlots
from api.events.websocket import EventSocket
from api.http.sendwatch import bound_sends
from api.openapi import LIVE_STREAMS, SECURED
from bus.store import feed

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _query(request: Request[Any, Any, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """Query parameters as {name: [values]}; unknown names are 400 like everywhere."""
    params = request.query_params
    unknown = sorted(k for k in params if k not in allowed)
    if unknown:  # the same answer as api/http/strict.py gives for declared parameters
        raise ApiError(
            400,
            "unknown_query_parameter",
            f"unknown query parameter(s): {', '.join(u[:64] for u in unknown[:10])}",
            {"unknown": [u[:64] for u in unknown[:10]], "allowed": sorted(allowed)},
        )
    return {name: params.getall(name) for name in params}


async def _resume_position(
    request: Request[Any, Any, Any], query: dict[str, Any]
) -> tuple[int | None, int | None]:
    """`Last-Event-ID` (the header EventSource sends on reconnect, or the query parameter
    `last_event_id` for the first connection), and the store's head now, up to which the
    stream is "what is there" (its `caught_up` message; filters.caught_up_at).

    Either given twice is 400: the header's first value, the parameter's last one was
    used, and the other ignored (`?last_event_id=5&last_event_id=` streamed live from now,
    skipping what the client asked to resume), while a proxy or a log may read the other.
    Both the header and the parameter is fine: EventSource keeps the first connection's URL
    and adds the header on reconnect, which is the newer position."""
    headers = request.headers.getall("last-event-id", [])
    params = query.get("last_event_id") or []
    for given, name in ((headers, "Last-Event-ID"), (params, "last_event_id")):
        if len(given) > 1:
            raise ApiError(
                400,
                "invalid_last_event_id",
                f"{name} was given more than once",
                {"field": name, "value": ", ".join(given)[:64]},
            )
    name = "Last-Event-ID"
    raw: Any = headers[0] if headers else None
    if raw is None and params:
        raw, name = params[0], "last_event_id"
    after = parse_position(raw, name)
    return after, await caught_up_at(ctx(request).pool, after, name)


def _fanout(request: Request[Any, Any, Any]) -> FanOut:
    return request.app.state.events  # type: ignore[no-any-return]


def _stream(
    request: Request[Any, Any, Any],
    who: Principal,
    filters: dict[str, Any],
    position: tuple[int | None, int | None],
) -> Stream:
    """`position` is (resume after, the store's head then): see _resume_position."""
    selector = selector_for(who, filters)
    slot = _slots(request).take(who.user)  # 429 / 503 before anything is held
    after, until = position
    try:
        sub = _fanout(request).subscribe(selector, after, "sse", until)
    except Dropped as d:
        slot.release()
        raise ApiError(503, d.code, d.message, {}, {"Retry-After": "1"}) from None
    settings = ctx(request).settings
    # A client that stops reading is cut after this long (api/http/sendwatch.py), which
    # ends the stream and gives its slot back.
    bound_sends(request.scope, settings.events_send_timeout)
    body = sse_stream(sub, who, settings.sse_heartbeat, request_id_of(request), slot.release)
    # The stream gives its slot back when it ends; should it never start (the response
    # dropped before its body), when it is collected.
    weakref.finalize(body, slot.release)
    return Stream(body, media_type="text/event-stream", headers=_HEADERS)


def _slots(request: Request[Any, Any, Any]) -> StreamSlots:
    return request.app.state.stream_slots  # type: ignore[no-any-return]


# Documented for OpenAPI; the handlers read the raw query (a filter may repeat).
Aggregate = Annotated[
    str | None, QueryParameter(description="aggregate names, comma-separated: uploads, files, ...")
]
EventType = Annotated[str | None, QueryParameter(description="event types, comma-separated")]
StreamFilter = Annotated[
    str | None,
    QueryParameter(
        description="aggregate ids or stream ids (upload-<uuid>, bucket-<name>), comma-separated"
    ),
]
LastEventIdQuery = Annotated[
    str | None,
    QueryParameter(
        description="resume after this position (when the Last-Event-ID header cannot be set)"
    ),
]
LastEventIdHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        required=False,
        description="resume after this position; 0 replays all; beyond the newest event is 400",
    ),
]


class EventsController(Controller):
    path = "/v1"
    tags = ["events"]
    dependencies = {"principal": Provide(provide_principal)}
    security = SECURED

    @get(
        "/events",
        summary="Live events as Server-Sent Events, resumable with Last-Event-ID",
        responses=LIVE_STREAMS,
        description=(
            "Filters (comma-separated or repeated): `aggregate` (uploads, files, ...), `type`"
            " (event type), `stream` (an aggregate id or stream id). `id:` is the event's"
            " global position, `event:` its type, `data:` the envelope. Without"
            " `Last-Event-ID` (header, or `last_event_id` query parameter) the stream starts"
            " at the newest event; `0` replays everything you may see. Once every event up to"
            " the newest one when asked for has been sent, a message `event: caught_up` with"
            " no data and no `id` (which EventSource does not dispatch) says so, once."
        ),
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        aggregate: Aggregate = None,
        type: EventType = None,
        stream: StreamFilter = None,
        last_event_id: LastEventIdQuery = None,
        last_event_id_header: LastEventIdHeader = None,
    ) -> Stream:
        query = _query(request, (*FILTERS, "last_event_id"))
        filters = {k: v for k, v in query.items() if k in FILTERS}
        selector_for(principal, filters)  # 400 before anything else
        return _stream(request, principal, filters, await _resume_position(request, query))

    @get(
        "/uploads/{upload_id:str}/events",
        summary="Live events of one upload (SSE), resumable with Last-Event-ID",
        responses=LIVE_STREAMS,
        description="Another user's upload answers 404 like one that does not exist.",
    )
    async def upload_events(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        upload_id: FromPath[str],
        type: EventType = None,
        last_event_id: LastEventIdQuery = None,
        last_event_id_header: LastEventIdHeader = None,
    ) -> Stream:
        return await _resource_stream(request, principal, "upload", upload_id)

    @get(
        "/tasks/{task_id:str}/events",
        summary="Live events of one task (SSE), resumable with Last-Event-ID",
        responses=LIVE_STREAMS,
        description="Another user's task answers 404 like one that does not exist.",
    )
    async def task_events(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        task_id: FromPath[str],
        type: EventType = None,
        last_event_id: LastEventIdQuery = None,
        last_event_id_header: LastEventIdHeader = None,
    ) -> Stream:
        return await _resource_stream(request, principal, "task", task_id)

    @get(
        "/fetches/{fetch_id:str}/events",
        summary="Live events of one URL fetch (SSE), resumable with Last-Event-ID",
        responses=LIVE_STREAMS,
        description="Another user's fetch answers 404 like one that does not exist.",
    )
    async def fetch_events(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        fetch_id: FromPath[str],
        type: EventType = None,
        last_event_id: LastEventIdQuery = None,
        last_event_id_header: LastEventIdHeader = None,
    ) -> Stream:
        return await _resource_stream(request, principal, "fetch", fetch_id)


async def _resource_stream(
    request: Request[Any, Any, Any], principal: Principal, kind: str, raw_id: str
) -> Stream:
    """The events of one upload, task or fetch (`kind` is its stream prefix); 404 for anyone
    else's, exactly like a missing one."""
    query = _query(request, ("type", "last_event_id"))
    uid = parse_uuid(raw_id, f"{kind}_not_found", kind)
    stream_id, owner = await feed.stream_owner(ctx(request).pool, [f"{kind}-{uid}"])
    if not stream_id or (owner != principal.user and not principal.admin):
        raise ApiError(404, f"{kind}_not_found", f"no such {kind}", {"id": uid})
    filters = {"stream": [stream_id], "type": query.get("type")}
    selector_for(principal, filters)
    return _stream(request, principal, filters, await _resume_position(request, query))


@websocket("/v1/events/ws", name="events_ws")
async def events_ws(socket: WebSocket[Any, Any, Any]) -> None:
    """Live events over a WebSocket: see README ("Live events") for the messages."""
    c = socket.app.state.cairn
    state = socket.app.state
    await EventSocket(socket, state.events, c.auth, c.settings, state.stream_slots).serve()
