"""The Date wrapper: a current Date on every HTTP answer, the app's own kept, once."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

from api.http.dates import current_date, with_date


async def answer(app_headers: list[tuple[bytes, bytes]], kind: str = "http") -> list[Any]:
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": app_headers})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    await with_date(app)({"type": kind}, receive, send)
    return sent


def dates(message: Any) -> list[bytes]:
    return [v for k, v in message["headers"] if k.lower() == b"date"]


async def test_an_answer_without_a_date_gets_this_seconds() -> None:
    before = int(time.time())
    start, body = await answer([(b"content-type", b"text/plain")])
    after = time.time()
    (value,) = dates(start)
    assert before <= parsedate_to_datetime(value.decode()).timestamp() <= after
    assert body == {"type": "http.response.body", "body": b"ok"}


async def test_the_apps_own_date_is_kept_and_not_doubled() -> None:
    mine = b"Fri, 06 Nov 2026 09:00:00 GMT"
    (start, _) = await answer([(b"Date", mine)])
    assert dates(start) == [mine]


async def test_websocket_handshakes_pass_through_untouched() -> None:
    (start, _) = await answer([], kind="websocket")
    assert dates(start) == []


def test_current_date_is_an_imf_fixdate_of_now() -> None:
    before = int(time.time())
    value = current_date().decode()
    assert value.endswith(" GMT") and len(value) == 29
    assert before <= parsedate_to_datetime(value).timestamp() <= time.time()
