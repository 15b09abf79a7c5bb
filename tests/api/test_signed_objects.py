"""Signed URLs for objects through the whole system: `POST /v1/buckets/{name}/objects/{key}/
signed-url` for GET, HEAD and PUT; a signed PUT uploads exactly that key, once (a replay
after a success is 412 `object_changed`), within the size in its signature; URLs for
another key, method or bucket owner are 403."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from tests.api.answers import make_bucket, opath, user
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


def error_code(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"}, body
    return str(body["error"]["code"])


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def sign(c: httpx.AsyncClient, bucket: str, key: str, **body: Any) -> dict[str, Any]:
    r = await c.post(f"{opath(bucket, key)}/signed-url", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_signed_get_and_head_of_an_object(shared_system: System) -> None:
    s = shared_system
    async with s.client(user()) as c:
        b = await make_bucket(c)
        key = "dir/../a b ü.txt"
        assert (await c.put(opath(b, key), content=b"hello object")).status_code == 201
        got = await sign(c, b, key, method="GET", expires_in=300)
        assert got["method"] == "GET" and "max_size" not in got
        # The `..` segment's dots encoded (clients would drop it), the name's dot not.
        assert urlsplit(got["url"]).path == f"/v1/buckets/{b}/objects/dir/%2E%2E/a%20b%20%C3%BC.txt"
        head_only = await sign(c, b, key, method="HEAD", expires_in=300)
        other_key = await sign(c, b, "other", method="GET", expires_in=300)
    async with s.client(None) as anon:
        assert error_code(await anon.get(opath(b, key)), 401) == "unauthorized"
        r = await anon.get(relative(got["url"]))
        assert r.status_code == 200 and r.content == b"hello object"
        r = await anon.get(relative(got["url"]), headers={"Range": "bytes=6-"})
        assert r.status_code == 206 and r.content == b"object"
        assert (await anon.head(relative(got["url"]))).status_code == 200
        assert (await anon.head(relative(head_only["url"]))).status_code == 200
        r = await anon.get(relative(head_only["url"]))
        assert error_code(r, 403) == "signed_url_wrong_method"
        # A GET URL is no PUT URL, and a URL for one key is nothing for another.
        r = await anon.put(relative(got["url"]), content=b"overwrite")
        assert error_code(r, 403) == "signed_url_wrong_method"
        q = urlsplit(other_key["url"]).query
        r = await anon.get(f"{opath(b, key)}?{q}")
        assert error_code(r, 403) == "signed_url_invalid"
        # A signed URL for a key not there yet: 404 once verified.
        r = await anon.get(relative(other_key["url"]))
        assert error_code(r, 404) == "object_not_found"


async def test_a_signed_put_uploads_that_key_once(shared_system: System) -> None:
    s = shared_system
    me = user()
    async with s.client(me) as c:
        b = await make_bucket(c)
        new = await sign(c, b, "new.bin", method="PUT", expires_in=300, max_size=100)
        assert new["max_size"] == 100
        assert (await c.put(opath(b, "old.bin"), content=b"version 1")).status_code == 201
        old = await sign(c, b, "old.bin", method="PUT", expires_in=300, max_size=100)
    async with s.client(None) as anon:
        # A new key: created by the URL, once.
        r = await anon.put(relative(new["url"]), content=b"from a stranger")
        assert r.status_code == 201, r.text
        created_id = r.json()["id"]
        r = await anon.put(relative(new["url"]), content=b"again")
        assert error_code(r, 412) == "object_changed"
        # An existing key: replaced by the URL, once.
        r = await anon.put(relative(old["url"]), content=b"version 2")
        assert r.status_code == 200, r.text
        r = await anon.put(relative(old["url"]), content=b"version 2")  # even the same bytes
        assert error_code(r, 412) == "object_changed"
        # Only that key: the URL's parameters on another key are 403.
        q = urlsplit(new["url"]).query
        assert error_code(await anon.put(f"{opath(b, 'x.bin')}?{q}", content=b"x"), 403) == (
            "signed_url_invalid"
        )
    async with s.client(me) as c:
        assert (await c.get(opath(b, "new.bin"))).content == b"from a stranger"
        assert (await c.get(opath(b, "old.bin"))).content == b"version 2"
        assert (await c.get(opath(b, "x.bin"))).status_code == 404
        # Written for the bucket's owner, like the owner's own PUT (a private bucket's
        # file is readable by its owner only).
        assert (await c.get(f"/v1/files/{created_id}")).json()["bucket"] == b
    async with s.client(user()) as stranger:
        assert (await stranger.get(f"/v1/files/{created_id}")).status_code == 404


async def test_a_signed_put_is_bounded_by_its_size(shared_system: System) -> None:
    s = shared_system
    async with s.client(user()) as c:
        b = await make_bucket(c)
        url = relative((await sign(c, b, "k", method="PUT", expires_in=300, max_size=10))["url"])
        # The limit is in the signature: raising it is tampering.
        q = dict(parse_qsl(urlsplit(url).query))
        bigger = f"{opath(b, 'k')}?{urlencode({**q, 'max_size': '1000'})}"
    async with s.client(None) as anon:
        assert error_code(await anon.put(bigger, content=b"x" * 11), 403) == "signed_url_invalid"
        # Declared too large: refused before the body is read.
        r = await anon.put(url, content=b"x" * 11)
        assert error_code(r, 413) == "object_too_large"

        # Not declared (chunked) and too large: refused while reading; nothing written.
        async def body() -> Any:
            for _ in range(3):
                yield b"x" * 5

        r = await anon.put(url, content=body())
        assert error_code(r, 413) == "object_too_large"
        # The URL is still unused: exactly the limit goes in.
        r = await anon.put(url, content=b"y" * 10)
        assert r.status_code == 201, r.text
    async with s.client(None) as anon:
        assert error_code(await anon.put(url, content=b"z"), 412) == "object_changed"


async def test_racing_uses_of_one_put_url_have_one_winner(shared_system: System) -> None:
    s = shared_system
    async with s.client(user()) as c:
        b = await make_bucket(c)
        url = relative((await sign(c, b, "race", method="PUT", expires_in=300, max_size=64))["url"])
    async with s.client(None) as anon:
        results = await asyncio.gather(
            *(anon.put(url, content=f"writer {i}".encode()) for i in range(6))
        )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [412] * 5, [r.text for r in results]


async def test_who_may_sign_an_object_url(shared_system: System) -> None:
    s = shared_system
    me = user()
    async with s.client(me) as c:
        pub = await make_bucket(c, public=True)
        assert (await c.put(opath(pub, "k"), content=b"v")).status_code == 201
        for bad, code in (
            ({"method": "DELETE", "expires_in": 60}, "validation_error"),
            ({"method": "GET", "expires_in": 60, "max_size": 5}, "invalid_max_size"),
            ({"method": "PUT", "expires_in": 60, "max_size": 1 << 60}, "invalid_max_size"),
            ({"method": "GET", "expires_in": 10**9}, "invalid_expires_in"),
            ({"method": "GET"}, "validation_error"),
        ):
            r = await c.post(f"{opath(pub, 'k')}/signed-url", json=bad)
            assert error_code(r, 400) == code, bad
        # POST on an object path is only for `/signed-url`.
        r = await c.post(opath(pub, "k"), json={"method": "GET", "expires_in": 60})
        assert error_code(r, 405) == "method_not_allowed"
        # A key that itself ends with /signed-url can be signed too.
        got = await sign(c, pub, "k/signed-url", method="GET", expires_in=60)
        assert urlsplit(got["url"]).path.endswith("/objects/k/signed-url")
    # Readers of a public bucket may not sign (404, as for any write); nor may anonymous.
    async with s.client(user()) as other:
        r = await other.post(
            f"{opath(pub, 'k')}/signed-url", json={"method": "GET", "expires_in": 60}
        )
        assert error_code(r, 404) == "bucket_not_found"
    async with s.client(None) as anon:
        r = await anon.post(
            f"{opath(pub, 'k')}/signed-url", json={"method": "GET", "expires_in": 60}
        )
        assert error_code(r, 401) == "unauthorized"
    async with s.client("root", admin=True) as admin:
        await sign(admin, pub, "k", method="PUT", expires_in=60)


async def test_a_bucket_name_taken_by_someone_else_voids_the_old_urls(
    shared_system: System,
) -> None:
    s = shared_system
    async with s.client(user()) as c:
        b = await make_bucket(c)
        assert (await c.put(opath(b, "k"), content=b"first owner")).status_code == 201
        url = relative((await sign(c, b, "k", method="GET", expires_in=300))["url"])
        assert (await c.delete(f"/v1/buckets/{b}?force=true")).status_code == 200
    async with s.client(user()) as c:
        assert (await c.post("/v1/buckets", json={"name": b})).status_code == 201
        assert (await c.put(opath(b, "k"), content=b"second owner")).status_code in (200, 201)
    async with s.client(None) as anon:
        assert error_code(await anon.get(url), 403) == "signed_url_invalid"


async def test_a_file_url_of_an_object_does_not_serve_the_next_owner_of_its_key(
    shared_system: System,
) -> None:
    # An object's file id comes from (bucket, key): whoever takes the bucket name next and
    # writes that key writes the same file. A file URL signed by the first owner must not
    # serve the second owner's private object.
    s = shared_system
    async with s.client(user()) as c:
        b = await make_bucket(c)
        fid = (await c.put(opath(b, "k"), content=b"first owner")).json()["id"]
        r = await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 300})
        assert r.status_code == 200, r.text
        url = relative(r.json()["url"])
        async with s.client(None) as anon:
            assert (await anon.get(url)).content == b"first owner"
        assert (await c.delete(f"/v1/buckets/{b}?force=true")).status_code == 200
    async with s.client(user()) as c:
        assert (await c.post("/v1/buckets", json={"name": b})).status_code == 201
        r = await c.put(opath(b, "k"), content=b"second owner")
        assert r.status_code in (200, 201) and r.json()["id"] == fid
    async with s.client(None) as anon:
        for method in ("GET", "HEAD"):
            r = await anon.request(method, url)
            assert r.status_code == 403 and b"second owner" not in r.content
        assert error_code(await anon.get(url), 403) == "signed_url_invalid"
