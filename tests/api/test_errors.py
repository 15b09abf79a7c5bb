"""The one error path: a bug is a 500 in the error shape, logged with its request id and
traceback (the client's X-Request-ID finds the log line)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import structlog
from litestar import Litestar, get
from litestar.exceptions import InternalServerException
from litestar.testing import TestClient
from structlog.testing import capture_logs

from api import errors
from api.errors import handle_exception
from api.middleware import request_id_middleware
from bus.blobs.errors import BlobCorrupt, BlobNotFound, BlobStoreFull


def _explode_here() -> None:
    raise RuntimeError("a bug")


@get("/bug")
async def bug() -> None:
    _explode_here()


@get("/framework")
async def framework() -> None:
    raise InternalServerException("internal detail that must not leak")


def _app() -> Litestar:
    handlers: dict[Any, Any] = {Exception: handle_exception}
    return Litestar(
        route_handlers=[bug, framework],
        exception_handlers=handlers,
        middleware=[request_id_middleware],
    )


def test_every_500_is_logged_with_its_request_id_and_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fresh logger: the module's own was bound (and cached) to the processor list of
    # whichever structlog configuration was current when it first logged, which an earlier
    # test in this process may since have replaced; capture_logs edits the current list.
    monkeypatch.setattr(errors, "log", structlog.get_logger(errors.__name__))
    with TestClient(_app()) as client:
        for path, exc_type in (("/bug", RuntimeError), ("/framework", InternalServerException)):
            with capture_logs() as logs:
                r = client.get(path, headers={"X-Request-ID": f"rid-{path[1:]}"})
            assert r.status_code == 500
            body = r.json()
            assert body == {
                "error": {
                    "code": "internal_error",
                    "message": "internal server error",
                    "details": {},
                },
                "request_id": f"rid-{path[1:]}",
            }
            (line,) = [e for e in logs if e["event"] == "unhandled error"]
            assert line["request_id"] == f"rid-{path[1:]}" and line["path"] == path
            assert isinstance(line["exc_info"], exc_type)
            rendered = structlog.processors.format_exc_info(None, "error", dict(line))
            assert "Traceback" in rendered["exception"]
            if exc_type is RuntimeError:
                assert "_explode_here" in rendered["exception"]


@get("/missing")
async def missing() -> None:
    raise BlobNotFound("ab" * 32)


@get("/corrupt")
async def corrupt() -> None:
    raise BlobCorrupt("ab" * 32, "cd" * 32)


@pytest.mark.parametrize(
    ("path", "code", "message", "event"),
    [
        (
            "/missing",
            "blob_missing",
            "stored bytes of this file are missing",
            "blob missing from the store",
        ),
        (
            "/corrupt",
            "blob_corrupt",
            "stored bytes failed verification",
            "blob corrupt in the store",
        ),
    ],
)
def test_stored_bytes_that_cannot_be_served_are_a_named_500_and_logged(
    monkeypatch: pytest.MonkeyPatch, path: str, code: str, message: str, event: str
) -> None:
    monkeypatch.setattr(errors, "log", structlog.get_logger(errors.__name__))
    app = Litestar(
        route_handlers=[missing, corrupt],
        exception_handlers={Exception: handle_exception},
        middleware=[request_id_middleware],
    )
    with TestClient(app) as client, capture_logs() as logs:
        r = client.get(path, headers={"X-Request-ID": "rid-blob"})
    assert r.status_code == 500
    assert r.json() == {
        "error": {"code": code, "message": message, "details": {"sha256": "ab" * 32}},
        "request_id": "rid-blob",
    }
    (line,) = [e for e in logs if e["event"] == event]
    assert line["log_level"] == "error" and line["path"] == path


@get("/full")
async def full() -> None:
    raise BlobStoreFull("no space left for blobs under /data: No space left on device", 30)


def test_a_full_blob_store_is_a_507_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full under a put: said so, not a bare 500 internal_error."""
    monkeypatch.setattr(errors, "log", structlog.get_logger(errors.__name__))
    app = Litestar(
        route_handlers=[full],
        exception_handlers={Exception: handle_exception},
        middleware=[request_id_middleware],
    )
    with TestClient(app) as client, capture_logs() as logs:
        r = client.get("/full", headers={"X-Request-ID": "rid-full"})
    assert r.status_code == 507
    assert r.headers["Retry-After"] == "30"
    assert r.json()["error"]["code"] == "insufficient_storage"
    (line,) = [e for e in logs if e["event"] == "blob store full"]
    assert line["log_level"] == "error" and "No space left" in line["error"]


@get("/db-refused")
async def db_refused() -> None:
    # A real connection refused, raised up through asyncpg's connect (a closed port).
    await asyncpg.connect("postgresql://nobody@127.0.0.1:9/none", timeout=5)


@get("/db-restarting")
async def db_restarting() -> None:
    raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")


@get("/db-bad-argument")
async def db_bad_argument() -> None:
    raise asyncpg.exceptions.DataError("invalid input for query argument $1")


def test_the_database_unreachable_is_a_503_with_retry_after_not_a_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL restarting or down comes back by itself (the supervisor restarts it):
    clients are told to retry. A bad argument to a query stays a bug (500)."""
    monkeypatch.setattr(errors, "log", structlog.get_logger(errors.__name__))
    app = Litestar(
        route_handlers=[db_refused, db_restarting, db_bad_argument],
        exception_handlers={Exception: handle_exception},
        middleware=[request_id_middleware],
    )
    with TestClient(app) as client, capture_logs() as logs:
        for path in ("/db-refused", "/db-restarting"):
            r = client.get(path)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["Retry-After"] == "2"
            assert r.json()["error"]["code"] == "database_unavailable"
        r = client.get("/db-bad-argument")
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert [e["log_level"] for e in logs if e["event"] == "database unavailable"] == [
        "warning",
        "warning",
    ]
