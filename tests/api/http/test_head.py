"""HEAD wherever GET is answered (api/http/head.py), through the whole system: the GET's
status and headers without its body, a 405 kept where GET is not allowed either, an event
stream's HEAD answered at once and its stream slot given back."""

from __future__ import annotations

import pytest

from tests.api.answers import assert_error, make_bucket, user
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_get_only_path_answers_head_as_its_get(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        bucket = await make_bucket(c)
        for path in (
            f"/v1/buckets/{bucket}",
            "/v1/buckets",
            "/v1/files?limit=1",
            "/v1/uploads/stats",
            "/schema/openapi.json",
            "/console/",
            "/health",
        ):
            got, head = await c.get(path), await c.head(path)
            assert got.status_code == 200, (path, got.text)
            assert head.status_code == 200 and head.content == b"", path
            for name in ("content-type", "content-length", "x-total-count"):
                assert head.headers.get(name) == got.headers.get(name), (path, name)
        # What GET refuses, HEAD refuses the same way (without the body that says why).
        for path, status in (("/v1/buckets/no-such-bucket-here", 404), ("/v1/files?limit=0", 400)):
            got, head = await c.get(path), await c.head(path)
            assert (got.status_code, head.status_code, head.content) == (status, status, b"")
        # Someone else's bucket is not there, for HEAD too.
        async with shared_system.client(user()) as other:
            assert (await other.head(f"/v1/buckets/{bucket}")).status_code == 404
        # No GET, no HEAD: the 405 stays, with what is allowed.
        r = await c.head("/v1/admin/cleanup")
        assert r.status_code == 405 and "GET" not in r.headers["allow"]
        assert_error(await c.get("/v1/admin/cleanup"), 405, "method_not_allowed")


async def test_a_head_of_an_event_stream_ends_and_gives_its_slot_back(
    shared_system: System,
) -> None:
    per_user = shared_system.settings.events_max_streams_per_user
    async with shared_system.client(user()) as c:
        for _ in range(per_user):
            r = await c.head("/v1/events", timeout=10)  # at once: no event needs to come
            assert r.status_code == 200 and r.content == b""
            assert r.headers["content-type"].startswith("text/event-stream")

        async def a_stream_opens() -> bool:
            # Were the HEADs' streams still open, every slot would stay taken (429).
            async with c.stream("GET", "/v1/events") as s:
                return s.status_code == 200

        assert await wait_until(a_stream_opens, timeout=20)
