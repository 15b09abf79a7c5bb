"""`cairn events`: the server's live events (SSE at /v1/events), resumable.

With `--follow` the client reconnects by itself after a dropped connection or a stream
the server ended (slow_consumer, shutting_down), sending the last position it printed as
`Last-Event-ID`: the server replays from its event store, so nothing is missed or shown
twice.

Without it, `cairn events` prints what is there and stops, as `tail` without `-f`: the
server sends `event: caught_up` once it has sent every event up to its newest one when
the stream was asked for (everything after `--since`; nothing without it). That is exact,
not a guess from a quiet moment. A server older than that message never sends it: there
the command runs until the server ends the stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from bus.client.errors import AUTH, ClientError
from bus.client.http import BAD_JSON, check, not_cairn, retry_after, unreachable

RECONNECT_DELAY = 2.0  # the server's `retry:` hint; a reconnect storm helps nobody
RESUMABLE_ENDS = ("slow_consumer", "shutting_down")
PASSING = (429, 502, 503, 504)


def stream(
    client: httpx.Client,
    *,
    params: dict[str, list[str]],
    since: int | None,
    follow: bool,
    limit: int | None,
    emit: Callable[[dict[str, Any]], None],
    path: str = "/v1/events",
    until: Callable[[dict[str, Any]], bool] | None = None,
    caught_up: bool = False,
) -> int:
    """Hand events to `emit` until `limit`, `until(event)` is true, the server says it has
    sent everything there was when asked (with `caught_up`), the server ends the stream
    (without `follow`) or Ctrl-C; returns how many were handed over. `path` is /v1/events
    or one resource's stream (/v1/tasks/{id}/events)."""
    last = since
    count = 0
    delay = 0.0
    while True:
        time.sleep(delay)  # none before the first connection
        headers = {"Last-Event-ID": str(last)} if last is not None else {}
        try:
            with connect_sse(
                client,
                "GET",
                path,
                params=params,
                headers=headers,
                timeout=httpx.Timeout(10.0, read=None),
            ) as source:
                if follow and source.response.status_code in PASSING:
                    # A state that passes (the server's stream slots all taken: 503
                    # events_busy or 429 too_many_streams, with Retry-After; a proxy's
                    # 502/504 while the API restarts): ridden out as a dropped connection.
                    delay = min(max(RECONNECT_DELAY, retry_after(source.response)), 60.0)
                    continue
                check(source.response)
                if "text/event-stream" not in source.response.headers.get("Content-Type", ""):
                    # Not a stream (a web page at --url): said once, not retried forever
                    # as a dropped connection (--follow), nor reported as unreachable.
                    raise not_cairn(source.response)
                for sse in source.iter_sse():
                    if sse.event == "end":
                        err = _end_error(sse.data)
                        if follow and err.code in RESUMABLE_ENDS:
                            break
                        raise err
                    if sse.event == "caught_up":
                        if caught_up:
                            return count
                        continue
                    if not sse.data:
                        # The first message, no data, carries the position the stream
                        # starts at: a stream cut before its first event resumes from
                        # there, not from whatever is new by then.
                        if sse.id and sse.id.isascii() and sse.id.isdigit():
                            last = int(sse.id)
                        continue
                    event, position = _event(sse, source.response)
                    if position is not None:
                        last = position
                    emit(event)
                    count += 1
                    if (limit is not None and count >= limit) or (until and until(event)):
                        return count
                else:
                    if not follow:
                        return count
        except (httpx.TransportError, httpx.StreamError) as e:
            if not follow:
                raise unreachable(str(client.base_url), e) from None
        delay = RECONNECT_DELAY


def _event(sse: ServerSentEvent, response: httpx.Response) -> tuple[dict[str, Any], int | None]:
    """An event (a JSON object with its `type`, and its `data` an object) and its position
    (the SSE id, a number); anything else from the server stops the command with one
    line, not a traceback."""
    try:
        event = json.loads(sse.data)
        position = int(sse.id) if sse.id else None
    except BAD_JSON:
        event = None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("data", {}), dict)
    ):
        raise ClientError(
            f"{response.request.url} sent what is not an event: {sse.data[:200]!r} (id {sse.id!r})",
            code="bad_response",
        )
    return event, position


def _end_error(data: str) -> ClientError:
    try:
        err = json.loads(data)["error"]
        code, message = str(err["code"]), str(err["message"])
    except (*BAD_JSON, KeyError, TypeError):
        code, message = "stream_ended", data or "the server ended the stream"
    return ClientError(message, code=code, exit_code=AUTH if code == "token_expired" else 1)
