"""`cairn events --follow` (bus/client/events.py) across reconnects, against scripted
streams (httpx's mock transport): a stream cut before its first event resumes from the
position the server's first message names, so nothing that came meanwhile is lost."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bus.client import events

EVENT = b'id: 8\nevent: BucketCreated\ndata: {"type": "BucketCreated", "position": 8}\n\n'


def test_a_stream_cut_before_any_event_resumes_from_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events.time, "sleep", lambda _s: None)
    bodies = [b"retry: 2000\nid: 7\n: cairn events after position 7\n\n", EVENT]
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        return httpx.Response(
            200, content=bodies[len(asked) - 1], headers={"content-type": "text/event-stream"}
        )

    got: list[dict[str, Any]] = []
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://cairn") as c:
        n = events.stream(c, params={}, since=None, follow=True, limit=1, emit=got.append)
    # The first connection asked for new events only; the reconnect resumed after 7, the
    # position the first stream started at (before, it asked for new events again).
    assert asked == [None, "7"]
    assert n == 1 and got == [{"type": "BucketCreated", "position": 8}]
