"""The Date header of every HTTP answer, read from the clock when the answer starts.

uvicorn's own Date is refreshed by its main loop about once a second (later when the loop
is busy), so an answer could carry a Date a second or more in the past: earlier than the
Last-Modified of a file stored a moment before, which RFC 9110 §8.8.2.1 forbids and
caches and linters (REDbot) flag as a modification time "in the future". uvicorn's is
turned off (api/server.py) and this wrapper adds the current second instead, unless the
app already set one (content answers do: api/http/content.py clamps Last-Modified to it).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from api.http.conditionals import format_http_date

_cached: tuple[int, bytes] = (0, b"")


def current_date() -> bytes:
    """IMF-fixdate of this second; formatted once per second."""
    global _cached
    second = int(time.time())
    if _cached[0] != second:
        _cached = (second, format_http_date(datetime.fromtimestamp(second, UTC)).encode("latin-1"))
    return _cached[1]


def with_date(app: ASGIApp) -> ASGIApp:
    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:  # WebSocket handshakes and lifespan pass through
            await app(scope, receive, send)
            return

        async def dated_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(k.lower() == b"date" for k, _ in headers):
                    headers.append((b"date", current_date()))
                    message["headers"] = headers
            await send(message)

        await app(scope, receive, dated_send)

    return wrapper
