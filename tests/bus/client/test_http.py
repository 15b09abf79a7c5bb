"""Answers that are not Cairn's (bus/client/http.py): a redirect, or a web page at --url,
end the command with one line and exit 1, never a JSONDecodeError traceback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bus.client import buckets, commands, fetches, jobs, tasks
from bus.client.errors import USAGE, ClientError
from bus.client.http import open_client, retry_after, segment
from bus.run.cli import main

URL = "http://files.example"


def _serving(
    monkeypatch: pytest.MonkeyPatch, answer: httpx.Response, modules: tuple[Any, ...] = (commands,)
) -> list[httpx.Request]:
    """Every client the commands (of `modules`) open talks to `answer` instead of a server."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    def client(target: Any) -> httpx.Client:
        real = open_client(target)
        return httpx.Client(
            base_url=real.base_url, headers=real.headers, transport=httpx.MockTransport(handler)
        )

    for module in modules:
        monkeypatch.setattr(module, "open_client", client)
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


def test_a_segment_is_one_path_segment_whatever_it_holds() -> None:
    assert segment("media-1") == "media-1"
    assert segment("a b/ü?x=1#f") == "a%20b%2F%C3%BC%3Fx%3D1%23f"
    assert (segment("."), segment(".."), segment("..."), segment("a..")) == (
        "%2E",
        "%2E%2E",
        "...",
        "a..",
    )


FILE = "0b6c1f2e-1111-4222-8333-444455556666"


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        # A query in a bucket's name: not the bucket b-1 (which this deleted), nor a query.
        (["buckets", "rm", "b-1?force=true"], b"/v1/buckets/b-1%3Fforce%3Dtrue"),
        (["buckets", "show", "b-1?x=1"], b"/v1/buckets/b-1%3Fx%3D1"),
        # Dot segments: not another resource (this was DELETE /v1/files/FILE).
        (["buckets", "rm", f"../files/{FILE}"], f"/v1/buckets/..%2Ffiles%2F{FILE}".encode()),
        (["buckets", "rm", ".."], b"/v1/buckets/%2E%2E"),
        (["buckets", "show", "."], b"/v1/buckets/%2E"),
        (["rm", "../x"], b"/v1/buckets/%2E%2E/objects/x"),
        (["rm", "./../k"], b"/v1/buckets/%2E/objects/%2E%2E/k"),
        (["rm", "b-1/a b/../ü"], b"/v1/buckets/b-1/objects/a%20b/%2E%2E/%C3%BC"),
        (["rm", "b-1//k"], b"/v1/buckets/b-1/objects//k"),  # the key `/k`
        (["rm", "b-1/k?x#y"], b"/v1/buckets/b-1/objects/k%3Fx%23y"),
        (["cp", "b-1/k", "../x"], b"/v1/buckets/%2E%2E/objects/x"),
        (["tasks", "show", f"../files/{FILE}"], f"/v1/tasks/..%2Ffiles%2F{FILE}".encode()),
        (["tasks", "cancel", "x?y=1"], b"/v1/tasks/x%3Fy%3D1/cancel"),
        (["fetches", "retry", ".."], b"/v1/fetches/%2E%2E/retry"),
        (["fetches", "show", "a/b"], b"/v1/fetches/a%2Fb"),
    ],
)
def test_an_argument_in_a_path_names_what_it_names(
    argv: list[str], path: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _recorded(monkeypatch)
    assert main([*argv, "--url", URL, "--token", "t"]) == 3  # not found
    assert [r.url.raw_path for r in seen] == [path]


def test_an_object_ref_with_a_leading_slash_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _recorded(monkeypatch)
    for argv in (["rm", "/b-1/k"], ["cp", "/b-1/k", "b-2/"], ["cp", "b-1/k", "/b-2"]):
        assert main([*argv, "--url", URL, "--token", "t"]) == 2, argv
    assert seen == []


def _recorded(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Every request the commands send, answered 404 in Cairn's error shape."""
    answer = httpx.Response(
        404, json={"error": {"code": "not_found", "message": "no", "details": {}}}
    )
    return _serving(monkeypatch, answer, (commands, buckets, fetches, jobs, tasks))


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
    assert segment("") == ""  # a part of a key may be empty (the key `a//b`)
