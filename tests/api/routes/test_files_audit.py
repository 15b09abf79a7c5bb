"""An adversarial pass over files and buckets (issue: audit of /v1/files and /v1/buckets):
bad list parameters, hostile names, other users' ids, and races between moves and
deletes. Each test names the hole it pins down."""

from __future__ import annotations

import pytest

from tests.api.routes.test_objects import assert_error, user
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_created_range_out_of_the_calendar_is_400(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        for name, value in [
            ("created_after", "0001-01-01T00:00:00+14:00"),
            ("created_before", "9999-12-31T23:59:59-14:00"),
            ("created_after", "not a date"),
            ("created_after", "2026-13-01"),
        ]:
            r = await c.get("/v1/files", params={name: value})
            assert_error(r, 400, "invalid_query")


async def test_list_paging_and_sort_are_validated(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        for params in [
            {"limit": "0"},
            {"limit": "-1"},
            {"limit": "1001"},
            {"limit": "abc"},
            {"offset": "-1"},
            {"offset": "99999999999999999999"},
            {"sort": "id"},
            {"sort": "name; DROP TABLE readmodel.files"},
            {"order": "sideways"},
            {"cursor": "x"},
        ]:
            r = await c.get("/v1/files", params=params)
            assert r.status_code == 400, (params, r.text)
            assert set(r.json()) == {"error", "request_id"}
