"""One answer for a bad value of any listing's query parameter: 400 `invalid_query` naming
the parameter in `details.field` (api/errors.py), with, for a parameter that takes a fixed
set, the message `<field> must be one of ...` and the values in `details.allowed`.

The lists' enum parameters (`status`, `type`, `sort`, `order`) take any ASCII case
(`order=DESC` was 400 while `status=completed` passed) and refuse anything else, an empty
value or a non-ASCII look-alike included. The uploads' and fetches' `status` answered
`invalid_status`, the event streams' filters `invalid_filter`, a bucket's objects'
`prefix` `invalid_prefix`: every listing below now answers the same."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from api.events.filters import FILTERS
from domain.fetches.state import FetchStatus
from domain.registry import EVENTS, STREAM_PREFIXES
from domain.tasks import TYPES
from domain.uploads.state import UploadStatus
from projections import fetch_queries, queries, task_queries
from tests.api.answers import assert_error, user
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")

CODE = "invalid_query"
ORDERS = ("asc", "desc")
# Every paged listing and its enum parameters with their values.
LISTINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "/v1/uploads": {
        "status": tuple(UploadStatus),
        "sort": queries.UPLOAD_SORTS,
        "order": ORDERS,
    },
    "/v1/files": {
        "sort": queries.FILE_SORTS,
        "order": ORDERS,
    },
    "/v1/tasks": {
        "type": TYPES,
        "status": task_queries.STATUSES,
        "sort": task_queries.TASK_SORTS,
        "order": ORDERS,
    },
    "/v1/fetches": {
        "status": tuple(FetchStatus),
        "sort": fetch_queries.SORTS,
        "order": ORDERS,
    },
}
ENUM_NAMES = {"status", "type", "sort", "order"}
# The event streams' filters that take a fixed set: exact names, not in any case.
EVENT_FILTERS: dict[str, tuple[str, ...]] = {
    "aggregate": tuple(sorted(set(STREAM_PREFIXES.values()))),
    "type": tuple(sorted(EVENTS)),
}


def assert_unknown(
    r: httpx.Response | dict[str, Any],
    field: str,
    value: str,
    allowed: tuple[str, ...],
    *,
    any_case: bool,
) -> None:
    """`r` (an HTTP answer, or a WebSocket message's `error`) is the one answer to a value
    outside `allowed`."""
    err = assert_error(r, 400, CODE) if isinstance(r, httpx.Response) else r
    assert err["code"] == CODE, err
    suffix = " (in any case)" if any_case else ""
    assert err["message"] == f"{field} must be one of {', '.join(allowed)}{suffix}", err
    assert err["details"] == {"field": field, "value": value[:64], "allowed": list(allowed)}, err


async def test_the_table_covers_every_listings_enum_parameters(shared_system: System) -> None:
    """A new listing (or a new enum parameter) is walked below, not forgotten."""
    async with shared_system.client(None) as c:
        doc = (await c.get("/schema/openapi.json")).json()
    found = {
        (path, p["name"])
        for path, item in doc["paths"].items()
        if "get" in item and "/events" not in path  # the event streams: below
        for p in item["get"].get("parameters", [])
        if p.get("in") == "query" and p["name"] in ENUM_NAMES
    }
    assert found == {(path, name) for path, params in LISTINGS.items() for name in params}
    filters = {p["name"] for p in doc["paths"]["/v1/events"]["get"]["parameters"]}
    assert set(EVENT_FILTERS) <= filters and set(FILTERS) <= filters


async def test_every_enum_parameter_takes_any_ascii_case_and_refuses_the_rest(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        for path, params in LISTINGS.items():
            for name, values in params.items():
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
                    "x" * 100,
                ):
                    if bad.lower() in {v.lower() for v in values}:
                        continue  # no look-alike of this value
                    r = await c.get(path, params={name: bad})
                    assert_unknown(r, name, bad, values, any_case=True)


async def test_the_event_streams_answer_an_unknown_filter_value_the_same(
    shared_system: System,
) -> None:
    """`GET /v1/events`, one upload's events and a WebSocket subscription: the same code,
    message and details as the listings (only without "in any case": event types and
    aggregates are exact names)."""
    async with shared_system.client(user()) as c:
        r = await c.post("/v1/uploads", json={"file_name": "f", "file_size": 10})
        assert r.status_code == 201, r.text
        one_upload = f"/v1/uploads/{r.json()['id']}/events"
        for name, values in EVENT_FILTERS.items():
            for bad in ("nope", values[0].upper(), values[0] + "\x00"):
                r = await c.get("/v1/events", params={name: bad})
                assert_unknown(r, name, bad, values, any_case=False)
        r = await c.get(one_upload, params={"type": "UploadExploded"})
        assert_unknown(r, "type", "UploadExploded", EVENT_FILTERS["type"], any_case=False)
        # A value of no fixed set: the same code, naming the filter.
        err = assert_error(await c.get("/v1/events", params={"stream": "nope"}), 400, CODE)
        assert err["details"] == {"field": "stream", "value": "nope"}, err
    url = shared_system.url.replace("http://", "ws://") + "/v1/events/ws"
    protos = ["cairn.events.v1", f"bearer.{shared_system.token(user())}"]
    async with connect(url, subprotocols=protos) as ws:
        assert json.loads(await ws.recv())["type"] == "authenticated"
        for name, values in EVENT_FILTERS.items():
            await ws.send(json.dumps({"type": "subscribe", "id": name, "filters": {name: "nope"}}))
            msg = json.loads(await ws.recv())
            assert (msg["type"], msg["id"]) == ("error", name), msg
            assert_unknown(msg["error"], name, "nope", values, any_case=False)


async def test_a_bucket_listing_answers_a_bad_value_the_same(shared_system: System) -> None:
    """The objects listing has no enum, but a `prefix`, `delimiter` or `start_after` no key
    could hold answered `invalid_prefix` and the like: now the one code, naming it."""
    async with shared_system.client(user()) as c:
        name = f"qe-{user()[2:]}"
        assert (await c.post("/v1/buckets", json={"name": name})).status_code == 201
        for field in ("prefix", "delimiter", "start_after"):
            r = await c.get(f"/v1/buckets/{name}/objects", params={field: "a\x00"})
            err = assert_error(r, 400, CODE)
            assert err["details"] == {"field": field, "value": "a\x00"}, err
            assert err["message"].startswith(f"{field}: "), err
