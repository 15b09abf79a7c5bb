"""The access log and the HTTP metrics: one structured line and one observation per request.

An ASGI wrapper around the whole Litestar app (api/server.py applies it), so that it sees
every request, including those no route matches (Litestar's own middleware runs only for
routed requests). The route label is Litestar's path template (`/v1/uploads/{upload_id}`),
never the raw path, so metric cardinality stays bounded; unrouted requests are labelled
`unmatched`. The request id is the one the app answered with (X-Request-ID), so the line
joins up with the error body and the app's own log lines.
"""

from __future__ import annotations

import re
import time
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

from bus.config import metrics
from bus.config.logs import get_logger

log = get_logger("api.access")

# Transfers counted in cairn_transfers_in_flight, by method and raw path (the route is not
# known until Litestar has routed the request, but the gauge goes up when it arrives).
_OBJECT = r"buckets/[^/]+/objects/.+"
_UPLOADS = re.compile(rf"^/v1/(uploads/[^/]+/chunks/[^/]+|tus(/[^/]+)?/?|{_OBJECT})$")
_DOWNLOADS = re.compile(rf"^/v1/(files/[^/]+/content/?|{_OBJECT})$")


def _direction(method: str, path: str) -> str | None:
    if method in ("PUT", "PATCH", "POST") and _UPLOADS.match(path):
        return "upload"
    if method in ("GET", "HEAD") and _DOWNLOADS.match(path):
        return "download"
    return None


def access_log(app: ASGIApp) -> ASGIApp:
    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http",):  # websocket and lifespan pass through
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        method = str(scope.get("method", ""))
        direction = _direction(method, str(scope.get("path", "")))
        status = 500  # if the app dies before answering, the server sends a 500
        received = 0
        sent = 0
        request_id = ""

        async def counting_receive() -> Any:
            nonlocal received
            message: Any = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def observing_send(message: Any) -> None:
            nonlocal status, sent, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", ()):
                    if k.lower() == b"x-request-id":
                        request_id = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        if direction:
            metrics.TRANSFERS_IN_FLIGHT.labels(direction).inc()
        try:
            await app(scope, counting_receive, observing_send)
        finally:
            if direction:
                metrics.TRANSFERS_IN_FLIGHT.labels(direction).dec()
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            code = str(status)
            metrics.HTTP_REQUESTS.labels(method, route, code).inc()
            metrics.HTTP_DURATION.labels(method, route, code).observe(elapsed)
            if received:
                metrics.HTTP_REQUEST_BYTES.labels(route).inc(received)
            if sent:
                metrics.HTTP_RESPONSE_BYTES.labels(route).inc(sent)
            fields: dict[str, Any] = {
                "method": method,
                "path": scope.get("path", ""),
                "route": route,
                "status": status,
                "bytes_in": received,
                "bytes_out": sent,
                "duration_ms": round(elapsed * 1000, 2),
                "request_id": request_id or None,
            }
            if route in ("/health", "/ready", "/metrics"):
                log.debug("request", **fields)  # probes and scrapes: not worth a line each
            else:
                log.info("request", **fields)

    return wrapper
