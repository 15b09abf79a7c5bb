"""One HTTP client per command, and the mapping of Cairn's one error shape to ClientError."""

from __future__ import annotations

from typing import Any

import httpx

from bus.client.config import Target
from bus.client.errors import UNREACHABLE, ClientError, exit_code_for_status

# Connect quickly or say so; reads may be slow (a chunk PUT answers once it is durable).
TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=300.0, pool=300.0)


def open_client(target: Target) -> httpx.Client:
    headers = {"User-Agent": "cairn-cli"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    return httpx.Client(base_url=target.url, headers=headers, timeout=TIMEOUT)


def error_from(response: httpx.Response) -> ClientError:
    """The server's `{"error": {code, message, details}}`, or the status when it is not ours."""
    try:
        response.read()
        body = response.json()
        err = body["error"]
        code, message = str(err["code"]), str(err["message"])
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
    except (ValueError, KeyError, TypeError, httpx.HTTPError):
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


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON; an answer that is not (a web server or a proxy at --url, a
    login page) is said in one line, not a JSONDecodeError traceback."""
    try:
        return check(response).json()
    except ValueError:
        raise not_cairn(response) from None


def not_cairn(response: httpx.Response) -> ClientError:
    kind = response.headers.get("Content-Type") or "no Content-Type"
    return ClientError(
        f"{response.request.url} answered {kind}, not Cairn's JSON: is --url a Cairn server?",
        code="bad_response",
        status=response.status_code,
    )


def retry_after(response: httpx.Response) -> float:
    """The seconds a 429 or 503 asks the client to wait (Retry-After; 1 when it is missing
    or not a number of seconds)."""
    try:
        return float(response.headers.get("retry-after") or 1)
    except ValueError:
        return 1.0
