"""One rule for every listing's enum query parameters (`status`, `type`, `sort`, `order`):
any ASCII case names the value (`order=DESC` was 400 while `status=completed` passed), and
anything else, an empty value or a non-ASCII look-alike included, is 400 naming the
parameter in `details.field` with the allowed values in `details.allowed`."""

from __future__ import annotations

import pytest

from domain.fetches.state import FetchStatus
from domain.tasks import TYPES
from domain.uploads.state import UploadStatus
from projections import fetch_queries, queries, task_queries
from tests.api.answers import assert_error, user
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")

ORDERS = ("asc", "desc")
# Every listing, its enum parameters, their values, and the code of a refused value.
LISTINGS: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "/v1/uploads": {
        "status": (tuple(UploadStatus), "invalid_status"),
        "sort": (queries.UPLOAD_SORTS, "invalid_query"),
        "order": (ORDERS, "invalid_query"),
    },
    "/v1/files": {
        "sort": (queries.FILE_SORTS, "invalid_query"),
        "order": (ORDERS, "invalid_query"),
    },
    "/v1/tasks": {
        "type": (TYPES, "invalid_query"),
        "status": (task_queries.STATUSES, "invalid_query"),
        "sort": (task_queries.TASK_SORTS, "invalid_query"),
        "order": (ORDERS, "invalid_query"),
    },
    "/v1/fetches": {
        "status": (tuple(FetchStatus), "invalid_status"),
        "sort": (fetch_queries.SORTS, "invalid_query"),
        "order": (ORDERS, "invalid_query"),
    },
}
ENUM_NAMES = {"status", "type", "sort", "order"}


async def test_the_table_covers_every_listings_enum_parameters(shared_system: System) -> None:
    """A new listing (or a new enum parameter) is walked below, not forgotten."""
    async with shared_system.client(None) as c:
        doc = (await c.get("/schema/openapi.json")).json()
    found = {
        (path, p["name"])
        for path, item in doc["paths"].items()
        if "get" in item and "/events" not in path  # event type names are not an enum
        for p in item["get"].get("parameters", [])
        if p.get("in") == "query" and p["name"] in ENUM_NAMES
    }
    assert found == {(path, name) for path, params in LISTINGS.items() for name in params}


async def test_every_enum_parameter_takes_any_ascii_case_and_refuses_the_rest(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        for path, params in LISTINGS.items():
            for name, (values, code) in params.items():
                for value in values:
                    for spelled in {value.lower(), value.upper(), value.lower().capitalize()}:
                        r = await c.get(path, params={name: spelled})
                        assert r.status_code == 200, (path, name, spelled, r.text)
                for bad in (
                    "nope",
                    "",
                    " asc",
                    values[0] + "\x00",
                    values[0].replace("i", "\u0131").replace("I", "\u0131"),
                ):
                    if bad.lower() in {v.lower() for v in values}:
                        continue  # no look-alike of this value
                    err = assert_error(await c.get(path, params={name: bad}), 400, code)
                    assert err["details"]["field"] == name, (path, name, bad, err)
                    assert err["details"]["allowed"] == list(values), (path, name, bad, err)
