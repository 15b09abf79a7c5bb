"""Server-Sent Events framing of a subscription: events, heartbeats, and a reasoned end.

Each event is `id: <global position>`, `event: <type>`, `data: <envelope JSON>`, so a
browser's EventSource reconnects with `Last-Event-ID` and resumes exactly after it. A
comment line (`: keepalive`) goes out whenever nothing else did for `heartbeat` seconds,
so proxies keep idle streams open. When the server ends a stream (slow consumer, token
expired, shutdown) its last message is `event: end` with the one error shape as data and no
`id`, so the client's resume position stays on the last real event. The first message
is `id: <start position>` with no data: it sets a client's resume position before any event.

Once the stream has sent every event up to the store's head as it was when the stream was
asked for (at once without a resume position), it sends `event: caught_up` with no data and
no id, once: a client that prints what is there and stops (`cairn events` without
`--follow`) stops there. A message without data is dispatched by no EventSource (WHATWG
SSE) and sets no last event id, so every other client reads the stream as before.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import orjson

from api.auth import Principal
from api.events.fanout import Dropped, Subscription

RETRY_MS = 2000  # EventSource's reconnect delay after the server ends a stream
CAUGHT_UP = b"event: caught_up\n\n"


def end_message(code: str, message: str, request_id: str) -> bytes:
    body = {"error": {"code": code, "message": message, "details": {}}, "request_id": request_id}
    return b"event: end\ndata: %s\n\n" % orjson.dumps(body)


async def sse_stream(
    sub: Subscription,
    who: Principal,
    heartbeat: float,
    request_id: str,
    on_end: Callable[[], None] = lambda: None,
) -> AsyncIterator[bytes]:
    """The stream's bytes; `on_end` is called once it is over, however it ends."""
    try:
        # The first message says where the stream starts: as `id:` without data, which
        # dispatches no event but sets the client's last event id (WHATWG SSE), so a
        # client cut off before its first event resumes from here and misses none (it
        # reconnected without a position before, starting after whatever came meanwhile);
        # and as a comment for people reading the stream.
        yield b"retry: %d\nid: %d\n: cairn events after position %d\n\n" % (
            RETRY_MS,
            sub.cursor,
            sub.cursor,
        )
        while True:
            if sub.announce_caught_up():
                yield CAUGHT_UP
            wait = heartbeat
            if who.expires_at is not None:
                left = who.expires_at - time.time()
                if left <= 0:
                    yield end_message("token_expired", "the token has expired", request_id)
                    return
                wait = min(wait, left)
            try:
                events = await sub.next(wait)
            except Dropped as d:
                yield end_message(d.code, d.message, request_id)
                return
            if not events:
                # It may just have caught up (the history read returns [] on reaching
                # `until`): say so now, in place of the keepalive.
                yield CAUGHT_UP if sub.announce_caught_up() else b": keepalive\n\n"
                continue
            yield b"".join(ev.sse() for ev in events)
            sub.delivered(events)
    finally:
        sub.close()
        on_end()
