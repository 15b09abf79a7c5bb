"""Answers that are not Cairn's (bus/client/http.py): a redirect, or a web page at --url,
end the command with one line and exit 1, never a JSONDecodeError traceback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bus.client import commands
from bus.client.errors import USAGE, ClientError
from bus.client.http import open_client, retry_after, segment
from bus.run.cli import main

URL = "http://files.example"


def _serving(monkeypatch: pytest.MonkeyPatch, answer: httpx.Response) -> list[httpx.Request]:
    """Every client the commands open talks to `answer` instead of a server."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    def client(target: Any) -> httpx.Client:
        real = open_client(target)
        return httpx.Client(
            base_url=real.base_url, headers=real.headers, transport=httpx.MockTransport(handler)
        )

    monkeypatch.setattr(commands, "open_client", client)
    return seen


@pytest.mark.parametrize(
    ("answer", "line"),
    [
        # http:// answered by https:// (the most common redirect): not followed, said.
        (
            httpx.Response(301, headers={"Location": "https://files.example/v1/files"}),
            "cairn: error: redirected: http://files.example/v1/files?limit=100&offset=0"
            " answered 301, a redirect to https://files.example/v1/files: give that server"
            " with --url (HTTP 301)",
        ),
        # A web server (or a login page) at --url: 200 and HTML for every path.
        (
            httpx.Response(200, html="<html>welcome</html>"),
            "cairn: error: bad_response: http://files.example/v1/files?limit=100&offset=0"
            " answered text/html; charset=utf-8, not Cairn's JSON: is --url a Cairn server?"
            " (HTTP 200)",
        ),
    ],
)
def test_an_answer_that_is_not_cairns_is_one_line(
    answer: httpx.Response,
    line: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen = _serving(monkeypatch, answer)
    code = main(["ls", "--url", URL, "--token", "t"])
    err = capsys.readouterr().err
    assert (code, err) == (1, line + "\n")
    assert len(seen) == 1  # the redirect was not followed


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 1.0),
        ("5", 5.0),
        ("0", 0.0),
        ("abc", 1.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0),  # the date form: not worth a clock read
        # A broken or hostile server: Event.wait(inf) raised OverflowError (a traceback),
        # and 99999999 held an upload's chunk for three years, 20 times over.
        ("inf", 60.0),
        ("1e400", 60.0),
        ("99999999", 60.0),
        ("nan", 1.0),
        ("-3", 0.0),
    ],
)
def test_retry_after_is_a_bounded_wait(header: str | None, seconds: float) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    assert retry_after(httpx.Response(503, headers=headers)) == seconds


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("media", "media"),
        ("../uploads", "..%2Fuploads"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a?force=true", "a%3Fforce%3Dtrue"),
        ("a b#c", "a%20b%23c"),
    ],
)
def test_an_argument_is_one_path_segment(value: str, encoded: str) -> None:
    assert segment(value, "NAME") == encoded


def test_an_empty_argument_is_a_usage_error() -> None:
    with pytest.raises(ClientError) as e:
        segment("", "NAME")
    assert e.value.exit_code == USAGE and e.value.message == "NAME is empty"
