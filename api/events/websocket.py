"""The WebSocket event protocol: auth, subscribe / unsubscribe with filters and resume
positions, an acknowledgement per subscription, events, and closes that say why.

Browsers cannot set an Authorization header on a WebSocket, and a token in the URL ends up
in access logs; so the token comes either as a `Sec-WebSocket-Protocol` value
(`bearer.<jwt>` next to `cairn.events.v1`, which is the one the server selects) or in the
first message (`{"type": "auth", "token": ...}` or `"api_key"`). README ("Live events")
shows every message. Each subscription says `caught_up` once, when it has sent every event
up to the store's head at its subscribe (right after `subscribed` without `from`): a client
replaying history learns where it meets the live edge (the fan-out decides, as for SSE).
Messages are strict like HTTP bodies: a field its type does not take (`FIELDS`) is an
`unknown_field` error, `from` must be a JSON integer. Every subscription runs as its own
task over the shared fan-out; writes to the socket go through one lock so frames never
interleave.

Close codes: 4401 authentication failed / token expired, 1007 a message that is not JSON,
1003 a binary message, 1009 a message over the size limit, 1008 too many subscriptions,
1013 a slow consumer (dropped; reconnect and resume), 1001 the server is shutting down.
A client that reads nothing for CAIRN_EVENTS_SEND_TIMEOUT is cut by the server's protocol
without a close frame (api/http/sendwatch.py): no frame could reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from api.auth import Authenticator, Principal, ambiguous_credentials
from api.errors import ApiError
from api.events.fanout import Dropped, FanOut, Subscription
from api.events.filters import FILTERS, caught_up_at, parse_position, selector_for
from api.events.stream_slots import Slot, StreamSlots
from api.http.sendwatch import bound_sends
from api.http.strict import duplicate_key, duplicate_key_at
from bus.config.settings import Settings

SUBPROTOCOL = "cairn.events.v1"
AUTH_TIMEOUT = 10.0  # seconds a connection may stay unauthenticated

CLOSE_AUTH = 4401
CLOSE_NOT_JSON = 1007
CLOSE_BINARY = 1003
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
CLOSE_SLOW = 1013  # also: try again later (the process holds as many streams as it may)
CLOSE_TOO_MANY = 4429  # the user holds as many live streams as a user may
CLOSE_GOING_AWAY = 1001

# The fields each client message may hold: anything else is refused (as an HTTP body's
# unknown field is), not ignored, so a typo (`"form": 0`) never goes unseen.
FIELDS = {
    "auth": frozenset({"type", "token", "api_key"}),
    "subscribe": frozenset({"type", "id", "filters", "from"}),
    "unsubscribe": frozenset({"type", "id"}),
    "ping": frozenset({"type", "id"}),
}


class Closing(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # a close reason must fit 123 bytes


def offered_credentials(socket: WebSocket[Any, Any, Any]) -> dict[str, str] | None:
    """Headers for the Authenticator from a `bearer.<token>` / `apikey.<key>` subprotocol;
    Closing (unauthorized) if more than one is offered: which would count is a guess."""
    found: list[dict[str, str]] = []
    for proto in socket.scope.get("subprotocols") or []:
        if proto.startswith("bearer."):
            found.append({"authorization": f"Bearer {proto.removeprefix('bearer.')}"})
        elif proto.startswith("apikey."):
            found.append({"x-api-key": proto.removeprefix("apikey.")})
    if len(found) > 1:
        raise Closing(CLOSE_AUTH, "unauthorized: credentials offered more than once")
    return found[0] if found else None


def unknown_field(msg: dict[str, Any]) -> str | None:
    """The first field (in sorted order) a message of its type may not hold, if any."""
    extra = sorted(set(msg) - FIELDS[str(msg.get("type"))])
    return extra[0] if extra else None


def position_from(value: Any) -> int | None:
    """A subscribe's `from`: absent or null (new events only), or an event's position as a
    JSON integer; a string (`"0"`), a boolean or a float is 400 like any other bad value."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return parse_position(str(value), "from")
    raise ApiError(
        400,
        "invalid_last_event_id",
        "from must be a non-negative integer (an event's position)",
        {"field": "from", "value": orjson.dumps(value).decode()[:64]},
    )


class EventSocket:
    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        fanout: FanOut,
        auth: Authenticator,
        s: Settings,
        slots: StreamSlots,
    ) -> None:
        self.socket = socket
        self.fanout = fanout
        self.slots = slots
        self.slot: Slot | None = None  # taken once the connection is authenticated
        self.auth = auth
        self.max_bytes = s.ws_max_message_bytes
        self.max_subscriptions = s.ws_max_subscriptions
        self.send_timeout = s.events_send_timeout
        self.who: Principal | None = None
        self.subs: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        self.send_lock = asyncio.Lock()
        self.closing: Closing | None = None
        self.twice: str | None = None  # the key the latest message gave twice (receive)
        self.closed = asyncio.Event()

    async def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else orjson.dumps(message)
        async with self.send_lock:
            await self.socket.send_data(data.decode(), mode="text")

    def close_with(self, code: int, reason: str) -> None:
        """Ask the connection to close (from any task); the main loop does the closing."""
        if self.closing is None:
            self.closing = Closing(code, reason)
        self.closed.set()

    async def error(self, sub_id: Any, e: ApiError) -> None:
        body = {"code": e.code, "message": e.message, "details": e.details}
        await self.send({"type": "error", "id": sub_id, "error": body})

    # -- the connection ----------------------------------------------------------------------
    async def serve(self) -> None:
        offered = self.socket.scope.get("subprotocols") or []
        await self.socket.accept(subprotocols=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        # A client that stops reading is cut after this long (api/http/sendwatch.py): every
        # send (events, answers, the close itself) would otherwise wait for it forever.
        bound_sends(self.socket.scope, self.send_timeout)
        try:
            creds = offered_credentials(self.socket)
            if creds is not None:
                self.authenticate(creds)
            else:
                msg = await self.receive(timeout=AUTH_TIMEOUT, auth=True)
                if msg.get("type") != "auth":
                    raise Closing(CLOSE_AUTH, "unauthorized: the first message must be auth")
                if (extra := unknown_field(msg)) is not None:
                    raise Closing(
                        CLOSE_AUTH,
                        f"unauthorized: unknown field {extra[:32]!r} in the auth message",
                    )
                if "token" in msg and "api_key" in msg:
                    e = ambiguous_credentials()
                    raise Closing(CLOSE_AUTH, f"{e.code}: {e.message}")
                if isinstance(msg.get("token"), str):
                    self.authenticate({"authorization": f"Bearer {msg['token']}"})
                elif isinstance(msg.get("api_key"), str):
                    self.authenticate({"x-api-key": msg["api_key"]})
                else:
                    raise Closing(CLOSE_AUTH, "unauthorized: auth needs a token or an api_key")
            assert self.who is not None
            self.slot = self._take_slot(self.who)
            await self.send(
                {"type": "authenticated", "user": self.who.user, "admin": self.who.admin}
            )
            while True:
                await self.handle(await self.receive(timeout=None))
        except Closing as c:
            self.closing = self.closing or c
        except WebSocketDisconnect:
            return
        finally:
            if self.slot is not None:
                self.slot.release()
            for sub, task in self.subs.values():
                task.cancel()
                sub.close()
            for _, task in self.subs.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.closing is not None:
            with contextlib.suppress(Exception):
                await self.socket.close(self.closing.code, self.closing.reason)

    def _take_slot(self, who: Principal) -> Slot:
        """This connection's place among the live streams (api/events/stream_slots.py)."""
        try:
            return self.slots.take(who.user)
        except ApiError as e:
            code = CLOSE_TOO_MANY if e.status == 429 else CLOSE_SLOW
            raise Closing(code, f"{e.code}: {e.message}") from None

    def authenticate(self, creds: dict[str, str]) -> None:
        try:
            self.who = self.auth.authenticate(creds)
        except ApiError as e:
            raise Closing(CLOSE_AUTH, f"{e.code}: {e.message}") from None

    async def receive(self, timeout: float | None, auth: bool = False) -> dict[str, Any]:
        """The next client message as a JSON object; closes on anything else."""
        deadline = time.time() + timeout if timeout is not None else None
        if self.who is not None and self.who.expires_at is not None:
            deadline = min(deadline or self.who.expires_at, self.who.expires_at)
        recv = asyncio.ensure_future(self.socket.receive())
        stop = asyncio.ensure_future(self.closed.wait())
        # The server stopping ends this socket even with no subscription to be dropped
        # (it stayed open through the drain, then uvicorn cut it with 1012).
        shutdown = asyncio.ensure_future(self.fanout.stopping.wait())
        try:
            left = None if deadline is None else max(0.0, deadline - time.time())
            done, _ = await asyncio.wait(
                {recv, stop, shutdown}, timeout=left, return_when="FIRST_COMPLETED"
            )
        finally:
            stop.cancel()
            shutdown.cancel()
            if not recv.done():
                recv.cancel()
        if self.closing is not None:
            raise self.closing
        if self.fanout.closing:
            raise Closing(CLOSE_GOING_AWAY, "shutting_down: the server is shutting down")
        if recv not in done:
            if auth:
                raise Closing(CLOSE_AUTH, "unauthorized: no auth message in time")
            raise Closing(CLOSE_AUTH, "token_expired: the token has expired")
        event: dict[str, Any] = dict(recv.result())
        if event["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(detail="disconnected", code=event.get("code", 1000))
        text = event.get("text")
        if not isinstance(text, str):
            raise Closing(CLOSE_BINARY, "binary messages are not supported; send JSON text")
        if len(text.encode()) > self.max_bytes:
            raise Closing(CLOSE_TOO_BIG, f"message too big: limit {self.max_bytes} bytes")
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise Closing(CLOSE_NOT_JSON, "message is not JSON") from None
        if not isinstance(msg, dict):
            raise Closing(CLOSE_NOT_JSON, "message is not a JSON object")
        # A key given twice: orjson kept the last value, another reader may keep the first
        # (as HTTP bodies, api/http/strict.py). Refused by `handle`, or, in the auth
        # message, with the close.
        self.twice = duplicate_key_at(text.encode())
        if auth and self.twice is not None:
            raise Closing(
                CLOSE_AUTH, f"unauthorized: {self.twice[:32]!r} given twice in the auth message"
            )
        return msg

    # -- messages ------------------------------------------------------------------------------
    async def handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        sub_id = msg.get("id")
        if self.twice is not None:
            await self.error(sub_id, duplicate_key(self.twice[:64]))
            return
        if not isinstance(kind, str) or kind not in FIELDS or kind == "auth":
            await self.error(
                sub_id,
                ApiError(
                    400,
                    "unknown_message_type",
                    "type must be subscribe, unsubscribe or ping",
                    {"type": str(kind)[:64]},
                ),
            )
            return
        if (extra := unknown_field(msg)) is not None:
            await self.error(
                sub_id,
                ApiError(
                    400,
                    "unknown_field",
                    f"unknown field {extra[:64]!r} in a {kind} message",
                    {"field": extra[:64], "allowed": sorted(FIELDS[kind])},
                ),
            )
            return
        if kind == "ping":
            await self.send({"type": "pong", "id": sub_id})
            return
        if not isinstance(sub_id, str) or not 0 < len(sub_id) <= 64:
            await self.error(
                sub_id, ApiError(400, "invalid_id", "id must be a string of 1 to 64 characters")
            )
            return
        if kind == "unsubscribe":
            entry = self.subs.pop(sub_id, None)
            if entry is None:
                await self.error(
                    sub_id, ApiError(404, "unknown_subscription", "no such subscription")
                )
                return
            entry[1].cancel()
            entry[0].close()
            await self.send({"type": "unsubscribed", "id": sub_id})
            return
        await self.subscribe(sub_id, msg)

    async def subscribe(self, sub_id: str, msg: dict[str, Any]) -> None:
        assert self.who is not None
        if sub_id in self.subs:
            await self.error(
                sub_id, ApiError(409, "subscription_exists", "this id is already subscribed")
            )
            return
        if len(self.subs) >= self.max_subscriptions:
            await self.error(
                sub_id,
                ApiError(
                    429,
                    "too_many_subscriptions",
                    f"at most {self.max_subscriptions} subscriptions per connection",
                    {"limit": self.max_subscriptions},
                ),
            )
            raise Closing(CLOSE_POLICY, f"too_many_subscriptions: limit {self.max_subscriptions}")
        filters = msg.get("filters")
        if filters is None:  # absent or null: none (an empty list or string is no object)
            filters = {}
        try:
            if not isinstance(filters, dict):
                raise ApiError(400, "invalid_filter", "filters must be an object", {})
            unknown = sorted(set(filters) - set(FILTERS))
            if unknown:
                raise ApiError(
                    400,
                    "invalid_filter",
                    f"unknown filter {unknown[0]!r}",
                    {"filter": unknown[0], "allowed": list(FILTERS)},
                )
            selector = selector_for(self.who, filters)
            after = position_from(msg.get("from"))
            until = await caught_up_at(self.fanout.pool, after, "from")
            sub = self.fanout.subscribe(selector, after, "ws", until)
        except ApiError as e:
            await self.error(sub_id, e)
            return
        except Dropped as d:
            raise Closing(CLOSE_GOING_AWAY, f"{d.code}: {d.message}") from None
        await self.send({"type": "subscribed", "id": sub_id, "from": sub.cursor})
        # Caught up already (no `from`, or `from` at the head): said here rather than by
        # the pump, so it comes right after `subscribed`, before the answer to whatever
        # the client sends next.
        await self.tell_caught_up(sub_id, sub)
        self.subs[sub_id] = (sub, asyncio.create_task(self.pump(sub_id, sub)))

    async def tell_caught_up(self, sub_id: str, sub: Subscription) -> None:
        """`caught_up`, once per subscription, when the fan-out says it is so: `position`
        is the subscription's cursor, up to which every event matching its filters has
        been sent (resuming from it misses nothing)."""
        if sub.announce_caught_up():
            await self.send({"type": "caught_up", "id": sub_id, "position": sub.cursor})

    async def pump(self, sub_id: str, sub: Subscription) -> None:
        prefix = b'{"type":"event","subscription":' + orjson.dumps(sub_id) + b',"event":'
        try:
            while True:
                events = await sub.next(None)
                for ev in events:
                    await self.send(prefix + ev.json() + b"}")
                sub.delivered(events)
                # After the batch it was sent with: never before the last replayed event.
                # (The history read returns [] on reaching the head, so this is not held
                # back until the next live event.)
                await self.tell_caught_up(sub_id, sub)
        except Dropped as d:
            if d.code == "closed":
                return
            code = CLOSE_GOING_AWAY if d.code == "shutting_down" else CLOSE_SLOW
            self.close_with(code, f"{d.code}: subscription {sub_id} {d.message}")
        except WebSocketDisconnect:
            self.closed.set()
