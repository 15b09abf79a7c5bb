"""HEAD wherever GET is answered (api/http/head.py), through the whole system: the GET's
status and headers without its body, a 405 kept where GET is not allowed either, an event
stream's HEAD answered at once and its stream slot given back."""

from __future__ import annotations

import httpx
import pytest

from tests.api.answers import assert_error, make_bucket, opath, user
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


_SAME = ("content-length", "content-type", "etag", "accept-ranges", "last-modified")


def _same_head(get: httpx.Response, head: httpx.Response, names: tuple[str, ...] = _SAME) -> None:
    assert head.status_code == get.status_code, (get.status_code, head.status_code)
    assert head.content == b""
    for name in names:
        assert head.headers.get(name) == get.headers.get(name), name


async def test_an_objects_head_is_its_gets_head_signed_ranged_or_refused(
    shared_system: System,
) -> None:
    data = b"0123456789" * 1000
    async with shared_system.client(user()) as c, shared_system.client(None) as anon:
        b = await make_bucket(c)
        path = opath(b, "dir/a b.txt")
        put = await c.put(path, content=data, headers={"X-Amz-Meta-Color": "blue"})
        assert put.status_code == 201, put.text
        get, head = await c.get(path), await c.head(path)
        _same_head(get, head, (*_SAME, "x-amz-meta-color", "content-disposition"))
        assert head.headers["content-length"] == str(len(data))
        assert head.headers["accept-ranges"] == "bytes"
        # Range applies to GET only (RFC 9110 §14.2): HEAD describes the full 200.
        ranged = await c.get(path, headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == data[10:20]
        head = await c.head(path, headers={"Range": "bytes=10-19"})
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(data))
        # Conditionals answer alike.
        etag = put.json()["etag"]
        for headers, status in (({"If-None-Match": etag}, 304), ({"If-Match": '"x"'}, 412)):
            get, head = await c.get(path, headers=headers), await c.head(path, headers=headers)
            assert (get.status_code, head.status_code, head.content) == (status, status, b"")
        # With a signed GET URL (which also answers HEAD), without credentials.
        signed = await c.post(f"{path}/signed-url", json={"method": "GET", "expires_in": 60})
        url = signed.json()["url"]
        _same_head(await anon.get(url), await anon.head(url))
        # A PUT URL reads nothing: the same refusal, without its body.
        signed = await c.post(f"{path}/signed-url", json={"method": "PUT", "expires_in": 60})
        url = signed.json()["url"]
        get, head = await anon.get(url), await anon.head(url)
        assert_error(get, 403, "signed_url_wrong_method")
        _same_head(get, head, ("content-type",))
        # Errors: the GET's status and type, no body.
        for p in (opath(b, "missing"), opath("no-such-bucket-here", "k")):
            get, head = await c.get(p), await c.head(p)
            assert_error(get, 404, get.json()["error"]["code"])
            _same_head(get, head, ("content-type",))
        async with shared_system.client(user()) as other:  # someone else's: not there
            get, head = await other.get(path), await other.head(path)
            assert (get.status_code, head.status_code, head.content) == (404, 404, b"")
        # A file's content the same way.
        file_path = f"/v1/files/{put.json()['id']}/content"
        _same_head(await c.get(file_path), await c.head(file_path))


async def test_a_head_of_a_resource_stream_or_the_websocket_path_ends_at_once(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        up = await c.post("/v1/uploads", json={"file_name": "f.bin", "file_size": 10})
        assert up.status_code == 201, up.text
        events = f"/v1/uploads/{up.json()['id']}/events"
        for _ in range(3):  # each at once: no event needs to come
            r = await c.head(events, timeout=10)
            assert (r.status_code, r.content) == (200, b"")
            assert r.headers["content-type"].startswith("text/event-stream")
        # Someone else's upload: 404, as for GET.
        async with shared_system.client(user()) as other:
            get, head = await other.get(events), await other.head(events)
            assert (get.status_code, head.status_code, head.content) == (404, 404, b"")
        # The WebSocket path answers a plain GET as it does; HEAD the same, at once.
        get = await c.get("/v1/events/ws", timeout=10)
        head = await c.head("/v1/events/ws", timeout=10)
        assert get.status_code >= 400 and head.status_code == get.status_code
        assert head.content == b""
