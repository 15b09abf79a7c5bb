"""`cairn events` (bus/client/events.py): against a stream that is not Cairn's (garbage
events, a page that is no stream: one line and exit 1, never a traceback, and never a
`--follow` that reconnects forever to something that will never stream), and against a
real server: without `--follow` it prints what is there and stops."""

from __future__ import annotations

import asyncio
import json
import secrets
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


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_follow_rides_out_a_state_that_passes(status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server's own 503 events_busy (Retry-After: 5) ended `cairn events --follow`
    # (and `tasks --wait`, `fetch --follow`) with exit 1 instead of trying again.
    answers = [
        httpx.Response(
            status,
            headers={"Retry-After": "5"},
            json={"error": {"code": "events_busy", "message": "try again soon"}},
        ),
        httpx.Response(
            200,
            headers={"Content-Type": "text/event-stream"},
            content=b'id: 7\ndata: {"type": "A"}\n\n',
        ),
    ]
    client = httpx.Client(
        base_url="http://cairn", transport=httpx.MockTransport(lambda r: answers.pop(0))
    )
    slept: list[float] = []
    monkeypatch.setattr(events.time, "sleep", slept.append)
    got: list[dict[str, Any]] = []
    n = events.stream(client, params={}, since=None, follow=True, limit=1, emit=got.append)
    assert (n, got) == (1, [{"type": "A"}])
    assert slept == [0.0, 5.0]  # none first, then as the answer asked


def test_without_follow_a_503_is_the_error() -> None:
    busy = httpx.Response(503, json={"error": {"code": "events_busy", "message": "m"}})
    client = httpx.Client(base_url="http://cairn", transport=httpx.MockTransport(lambda r: busy))
    with pytest.raises(ClientError) as e:
        events.stream(client, params={}, since=None, follow=False, limit=None, emit=print)
    assert (e.value.code, e.value.status) == ("events_busy", 503)


async def test_without_follow_it_prints_what_is_there_and_stops(cli_for: Any) -> None:
    """Like `tail` without `-f`: the server's `caught_up` ends it, on a live server that
    would stream for ever; `--follow` goes on with what comes next."""
    cli = cli_for(f"tail-{secrets.token_hex(4)}")
    names = [f"tail-{secrets.token_hex(4)}" for _ in range(3)]
    for name in names[:2]:
        assert (await cli("buckets", "create", name)).code == 0

    async def events(*args: str) -> list[dict[str, Any]]:
        done = await asyncio.wait_for(cli("events", "--json", "--type", "BucketCreated", *args), 60)
        assert done.code == 0, done.err
        return [json.loads(line) for line in done.out.splitlines()]

    everything = await events("--since", "0")
    assert [e["stream_id"] for e in everything] == [f"bucket-{n}" for n in names[:2]]
    last = str(everything[-1]["position"])
    assert await events() == []  # nothing new
    assert await events("--since", last) == []
    assert [e["stream_id"] for e in await events("--since", "0", "--limit", "1")] == [
        f"bucket-{names[0]}"
    ]

    follow = await cli.start(
        "events", "--follow", "--json", "--type", "BucketCreated", "--since", last
    )
    try:
        assert (await cli("buckets", "create", names[2])).code == 0
        assert follow.stdout is not None
        line = await asyncio.wait_for(follow.stdout.readline(), 60)
        assert json.loads(line)["stream_id"] == f"bucket-{names[2]}"
        assert follow.returncode is None  # still following
    finally:
        done = await cli.interrupt(follow)
    assert done.code == 130, done.err
