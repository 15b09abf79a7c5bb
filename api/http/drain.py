"""Graceful stop of the API: stop taking work, let what is in flight finish, then stop.

uvicorn's own shutdown closes the listening socket at once (new clients get "connection
refused") and, after its grace period, cancels the requests still running, which answer
500. Clients should get either a complete answer or 503 with Retry-After, which they know
to retry (on this instance's replacement, or after the restart). This ASGI wrapper, outside
everything else, makes that so:

1. `drain()` is called when the process is asked to stop. From then on every new request
   is answered 503 `shutting_down` with `Retry-After` and `Connection: close`, while the
   socket still accepts (a load balancer moves on; a client retries).
2. Requests already running go on until they finish, for at most `timeout` seconds.
3. Those still running then are cancelled here, by us: one whose response has not started
   answers 503 instead; one that is streaming its answer is cut off (the client sees a
   short body). Cancelling is safe for Cairn's requests: a 2xx is given only after the
   effect is durable, and a chunk body cut off is discarded (see bus/blobs).

Only then is uvicorn told to exit, and it finds nothing left to cancel.
"""

from __future__ import annotations

import asyncio
from typing import Any

from api.http.rawerror import error_headers, error_json, new_request_id
from bus.aio import wait_event

ASGIApp = Any  # an ASGI 3 callable; Litestar's and uvicorn's types disagree on the details

RETRY_AFTER = 5


class Drain:
    """ASGI wrapper that counts HTTP requests in flight and refuses new ones once draining."""

    def __init__(self, app: ASGIApp, *, retry_after: int = RETRY_AFTER) -> None:
        self.app = app
        self.retry_after = retry_after
        self.draining = False
        self._inflight: dict[asyncio.Task[Any], bool] = {}  # request task -> response started
        self._cancelled: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan: passed through
            await self.app(scope, receive, send)
            return
        if self.draining:
            await self._unavailable(send)
            return
        task = asyncio.current_task()
        assert task is not None
        self._inflight[task] = False
        self._idle.clear()

        async def tracking_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self._inflight[task] = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if task not in self._cancelled or self._inflight[task]:
                raise  # not our cancellation, or too late for a clean answer
            # Our own cancellation of a request that has not answered yet: answer 503.
            task.uncancel()
            await self._unavailable(send)
        finally:
            del self._inflight[task]
            self._cancelled.discard(task)
            if not self._inflight:
                self._idle.set()

    def refuse_new(self) -> None:
        """From now on, answer every new request 503."""
        self.draining = True

    async def drain(self, timeout: float) -> int:
        """Refuse new requests; wait up to `timeout` s for those in flight; cancel the rest.

        Returns how many requests had to be cancelled."""
        self.refuse_new()
        await wait_event(self._idle, timeout)
        left = list(self._inflight)
        for task in left:
            self._cancelled.add(task)
            task.cancel()
        if left:
            # Each answers 503 (or is cut off) as it unwinds; bounded, since an unwinding
            # request only writes a small answer.
            await asyncio.wait(left, timeout=5.0)
        return len(left)

    async def _unavailable(self, send: Any) -> None:
        rid = new_request_id()
        body = error_json(
            "shutting_down",
            "this server is stopping; retry the request",
            rid,
            {"retry_after_seconds": self.retry_after},
        )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": error_headers(body, rid, {"retry-after": str(self.retry_after)}),
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
