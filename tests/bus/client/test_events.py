"""`cairn events` against a stream that is not Cairn's (bus/client/events.py): garbage
events, a page that is no stream. One line and exit 1, never a traceback, and never a
`--follow` that reconnects forever to something that will never stream."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bus.client import events
from bus.client.errors import ClientError


def _client(body: bytes, content_type: str = "text/event-stream") -> tuple[httpx.Client, list[Any]]:
    calls: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, headers={"Content-Type": content_type}, content=body)

    return httpx.Client(base_url="http://cairn", transport=httpx.MockTransport(handler)), calls


@pytest.mark.parametrize(
    "body",
    [
        b"id: 1\ndata: {not json\n\n",  # JSONDecodeError
        b"id: abc\ndata: {}\n\n",  # int('abc'): ValueError
        b"id: 1\ndata: [1, 2]\n\n",  # a list: AttributeError in the printer
    ],
)
@pytest.mark.parametrize("follow", [False, True])
def test_garbage_stops_with_one_line(body: bytes, follow: bool) -> None:
    client, calls = _client(b'id: 1\ndata: {"type": "A"}\n\n' + body)
    got: list[dict[str, Any]] = []
    with pytest.raises(ClientError) as e:
        events.stream(client, params={}, since=None, follow=follow, limit=None, emit=got.append)
    assert e.value.code == "bad_response" and e.value.exit_code == 1
    assert "not an event" in e.value.message
    assert got == [{"type": "A"}] and len(calls) == 1


@pytest.mark.parametrize("follow", [False, True])
def test_a_page_that_is_no_stream_is_said(follow: bool) -> None:
    # It was an SSEError, a TransportError: exit 7 "cannot reach", and with --follow a
    # reconnect every 2 s for ever.
    client, calls = _client(b"<html></html>", "text/html")
    with pytest.raises(ClientError) as e:
        events.stream(client, params={}, since=None, follow=follow, limit=None, emit=print)
    assert e.value.code == "bad_response" and "text/html" in e.value.message
    assert len(calls) == 1
