"""HEAD wherever GET is answered: RFC 9110 §9.1 asks it of every general-purpose server.

Litestar routes a method only where a handler names it. Cairn's handlers name HEAD where
clients read headers to decide (a file's or an object's content), so every other GET
answered HEAD with 405: `/health` and `/ready` to an uptime monitor that checks with HEAD
(UptimeRobot's default), a bucket to S3's HeadBucket habit, the console to a link checker.

Here a HEAD that the application refuses with 405 while its `Allow` names GET is asked
again as that GET, and answered with the GET's status and headers (its Content-Length
too, §9.3.2) and no body. The answer ends as soon as its head is sent, so a GET that
streams (an event stream, which may send nothing for minutes) is not kept open: the
server marks the response complete, and the application's next `receive` says the client
is gone, which ends the stream and gives its slot back.
"""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Receive, Send


def _allows_get(headers: Any) -> bool:
    for name, value in headers:
        if name.lower() == b"allow":
            return b"GET" in (m.strip().upper() for m in value.split(b","))
    return False


class HeadForGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        refused = False

        async def unless_refused(message: Any) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 405:
                refused = _allows_get(message.get("headers", ()))
            if not refused:
                await send(message)

        await self.app(scope, receive, unless_refused)
        if not refused:
            return
        done = False

        async def head_only(message: Any) -> None:
            nonlocal done
            if done or message["type"] != "http.response.start":
                return  # the GET's body: not part of a HEAD's answer
            done = True
            await send(message)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        as_get: Any = {**scope, "method": "GET"}
        await self.app(as_get, receive, head_only)
