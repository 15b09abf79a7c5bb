"""Request ids (accepted from the client if sane, or generated; bound to logs, echoed back)
and the request's server span, child of the client's `traceparent`."""

from __future__ import annotations

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry.trace import SpanKind

from api.errors import SAFE_REQUEST_ID
from bus.config.tracing import span
from bus.ids import uuid4_hex


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        rid = None
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                candidate = v.decode("latin-1")
                if SAFE_REQUEST_ID.match(candidate):
                    rid = candidate
                break
        rid = rid or uuid4_hex()
        scope.setdefault("state", {})["request_id"] = rid
        raw = rid.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                hdrs = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                hdrs.append((b"x-request-id", raw))
                message["headers"] = hdrs
            await send(message)

        incoming = None
        for k, v in scope["headers"]:
            if k == b"traceparent":
                incoming = v.decode("latin-1")
        name = f"HTTP {scope.get('method', 'WS')} {scope['path']}"
        with (
            structlog.contextvars.bound_contextvars(request_id=rid),
            span(name, incoming, SpanKind.SERVER, request_id=rid),
        ):
            await app(scope, receive, send_with_id)

    return middleware
