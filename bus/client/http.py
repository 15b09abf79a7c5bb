"""One HTTP client per command, and the mapping of Cairn's one error shape to ClientError."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

import httpx

from bus.client.config import Target
from bus.client.errors import UNREACHABLE, USAGE, ClientError, exit_code_for_status

# What parsing JSON that is not JSON raises: ValueError, or RecursionError for arrays or
# objects nested deeper than the parser goes ("[[[[..." from a broken or hostile server).
BAD_JSON = (ValueError, RecursionError)

# Connect quickly or say so; reads may be slow (a chunk PUT answers once it is durable).
TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=300.0, pool=300.0)


def open_client(target: Target) -> httpx.Client:
    headers = {"User-Agent": "cairn-cli"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    return httpx.Client(base_url=target.url, headers=headers, timeout=TIMEOUT)


def segment(value: str, what: str | None = None) -> str:
    """A command's argument (a bucket name, an id, a part of a key) as exactly one URL path
    segment: percent-encoded, `/`, `?` and `#` included, and a `.` or `..` segment's dots
    too (httpx, like every client, drops such segments before sending: RFC 3986 §5.2.4).
    Put into a path as it was typed, an argument made another request than the one named:
    `cairn buckets rm "b?x"` deleted the bucket `b`, `cairn buckets rm ../files/ID` the
    file ID, `cairn tasks cancel ../fetches/ID` cancelled a fetch, and `cairn buckets show
    ""` asked for the listing and printed an empty record with exit 0. So an argument named
    `what` (a whole name or id, not a part of a key, which may be empty) that is empty is a
    usage error (exit 2)."""
    if what is not None and not value:
        raise ClientError(f"{what} is empty", code="usage", exit_code=USAGE)
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if value in (".", "..") else encoded


def error_from(response: httpx.Response) -> ClientError:
    """The server's `{"error": {code, message, details}}`, or the status when it is not ours."""
    try:
        response.read()
        body = response.json()
        err = body["error"]
        code, message = str(err["code"]), str(err["message"])
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
    except (*BAD_JSON, KeyError, TypeError, httpx.HTTPError):
        code, message, details = f"http_{response.status_code}", response.reason_phrase, {}
    return ClientError(
        message,
        code=code,
        status=response.status_code,
        exit_code=exit_code_for_status(response.status_code),
        details=details,
    )


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_from(response)
    if 300 <= response.status_code < 400:
        # Not followed: the token would go along (httpx drops it only for another host),
        # and a redirect is most often http:// answered by https://, a --url to correct.
        raise ClientError(
            f"{response.request.url} answered {response.status_code}, a redirect to"
            f" {response.headers.get('Location', '?')}: give that server with --url",
            code="redirected",
            status=response.status_code,
        )
    return response


def unreachable(url: str, e: Exception) -> ClientError:
    return ClientError(
        f"cannot reach {url}: {e.__class__.__name__}: {e}",
        code="unreachable",
        exit_code=UNREACHABLE,
    )


# What a field of an answer may be: a type, or several (NONE among them: null allowed).
Kind = type | tuple[type, ...]
NONE = type(None)
NUMBER = (int, float)


def json_of(response: httpx.Response, **fields: Kind) -> Any:
    """The answer's JSON object, holding at least `fields` of their types (`id=str`,
    `items=list`, `size=int`, `next_cursor=(str, NONE)`).

    An answer that is not JSON (a web server or a proxy at --url, a login page), not an
    object, or without a field the command reads (or of another type) is said in one line
    (bad_response), not a JSONDecodeError, KeyError or TypeError traceback."""
    try:
        body = check(response).json()
    except BAD_JSON:
        raise not_cairn(response) from None
    return shaped(body, str(response.request.url), **fields)


def shaped(body: Any, where: str, **fields: Kind) -> dict[str, Any]:
    """`body` if it is a JSON object with `fields` of their types (see json_of)."""
    if not isinstance(body, dict):
        raise bad_shape(where, f"a JSON {_json_kind(body)} where Cairn sends an object")
    for name, kind in fields.items():
        value = body.get(name, _MISSING)
        if value is _MISSING:
            raise bad_shape(where, f"without {name!r}")
        if not _is(value, kind):
            raise bad_shape(where, f"{name!r} as a JSON {_json_kind(value)}")
    return body


_MISSING = object()


def _is(value: Any, kind: Kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):  # JSON true/false is never a number
        return bool in kinds
    return isinstance(value, kinds)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def bad_shape(where: str, what: str) -> ClientError:
    """An answer that is JSON, but not shaped as Cairn's (another server, another version)."""
    return ClientError(
        f"{where} answered {what}: is --url a Cairn server (of a version this cairn knows)?",
        code="bad_response",
    )


def unexpected(e: Exception) -> ClientError:
    """What is left of a wrong-shaped answer once a command read past what json_of
    checked (a field inside an item, say): one line naming what broke, never a
    traceback (bus/client/commands.py `run`, and per file in uploads)."""
    return ClientError(
        f"an answer is not shaped as Cairn's ({e.__class__.__name__}: {e}): is --url a"
        " Cairn server (of a version this cairn knows)?",
        code="bad_response",
    )


# What reading a wrong-shaped answer raises (see `unexpected`): a number too large for what
# it is used for (a size of 10**400 bytes shown as KiB) is one too, and so is JSON nested
# past the parser's depth (RecursionError, where a parse is not BAD_JSON-guarded).
SHAPE_ERRORS = (
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    RecursionError,
)


def next_cursor(page: dict[str, Any], where: str, before: str | None) -> str | None:
    """A page's cursor to the next one (None: the last page); the same cursor again would
    ask for the same page for ever."""
    cursor = shaped(page, where, next_cursor=(str, NONE))["next_cursor"]
    if cursor and cursor == before:
        raise bad_shape(where, "the same next_cursor twice")
    return cursor or None


def not_cairn(response: httpx.Response) -> ClientError:
    kind = response.headers.get("Content-Type") or "no Content-Type"
    return ClientError(
        f"{response.request.url} answered {kind}, not Cairn's JSON: is --url a Cairn server?",
        code="bad_response",
        status=response.status_code,
    )


# The longest a Retry-After is waited: a server's answer, so it bounds a wait, no more.
RETRY_AFTER_MAX = 60.0


def retry_after(response: httpx.Response) -> float:
    """The seconds a 429 or 503 asks the client to wait (Retry-After; 1 when it is missing
    or not a number of seconds), within 0 and RETRY_AFTER_MAX: `inf` raised OverflowError
    in Event.wait, and a year's worth held the command for a year."""
    try:
        seconds = float(response.headers.get("retry-after") or 1)
    except ValueError:
        return 1.0
    if math.isnan(seconds):
        return 1.0
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)
