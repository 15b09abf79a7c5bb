"""The permission matrix, against the real system: every caller (owner, another user, an
admin, anonymous, a valid signed URL, an expired one, an altered one, one for another
method) by every place a file can be (a public bucket, a private bucket, no bucket) by every
verb (GET, HEAD, PUT, DELETE, list, signed-url, and the metadata GET), with the exact
status each must get. The rules (README, "Access and signed URLs"; api/bucket_access.py):

- owner and admin: everything;
- another user: reads of public-bucket files, 404 for everything else (as if missing);
- anonymous: reads of public-bucket files, 401 for everything else;
- a signed URL: exactly its method on exactly its file's content; expired, altered or
  another method: 403, whatever the bucket; its parameters on any other route grant
  nothing (400 `unknown_query_parameter`: those routes take no such parameters).

Writes (PUT = PATCH of the file's metadata, DELETE) use a fresh file per case, and a
refused write is checked to have changed nothing.

The same for objects (`/v1/buckets/{name}/objects/{key}`) in a public and a private bucket:
PUT is the object PUT (a signed PUT URL replaces the object once), list is the bucket's
ListObjectsV2 (readable like the objects), DELETE answers 204.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import pytest_asyncio

from api.bucket_access import file_resource, object_resource
from api.http.signing import Signer
from tests.api.answers import user
from tests.system import System, wait_until

OBJECT_SCOPES = ("public", "private")

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACTORS = ("owner", "other", "admin", "anonymous", "signed", "expired", "tampered", "wrong_method")
SCOPES = ("public", "private", "none")
VERBS = ("GET", "HEAD", "meta", "PUT", "DELETE", "list", "signed-url")
READS = ("GET", "HEAD", "meta")
SIGNED = ("signed", "expired", "tampered", "wrong_method")
DATA = b"matrix bytes " * 100


def expected(scope: str, verb: str, actor: str) -> int:
    """The status `actor` gets for `verb` on the file in `scope`."""
    if actor in SIGNED:
        if verb not in ("GET", "HEAD"):
            return 400  # signature parameters mean nothing on this route
        return 200 if actor == "signed" else 403
    if actor in ("owner", "admin"):
        return 200
    public_read = scope == "public" and verb in READS
    if actor == "other":
        # `list` is the caller's own files: 200, without the other's file (checked below).
        return 200 if public_read or verb == "list" else 404
    return 200 if public_read else 401  # anonymous


CASES = [
    pytest.param(scope, verb, actor, id=f"{scope}-{verb}-{actor}")
    for scope in SCOPES
    for verb in VERBS
    for actor in ACTORS
]


@dataclass
class World:
    system: System
    owner: str
    other: str
    admin: str
    buckets: dict[str, str | None]  # scope -> bucket name
    files: dict[str, str]  # scope -> a file id for the non-destructive verbs
    signer: Signer


async def upload(c: httpx.AsyncClient, bucket: str | None) -> str:
    body: dict[str, Any] = {"file_name": "m.bin", "file_size": len(DATA)}
    if bucket:
        body["bucket"] = bucket
    r = await c.post("/v1/uploads", json=body)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=DATA)).status_code == 201
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return str(r.json()["file_id"])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(shared_system: System) -> World:
    owner, other = user(), user()
    buckets: dict[str, str | None] = {"none": None}
    files = {}
    async with shared_system.client(owner) as c:
        for scope in ("public", "private"):
            name = f"pm-{scope}-{secrets.token_hex(4)}"
            r = await c.post("/v1/buckets", json={"name": name, "public": scope == "public"})
            assert r.status_code == 201, r.text
            buckets[scope] = name
        for scope in SCOPES:
            files[scope] = await upload(c, buckets[scope])
    return World(
        shared_system,
        owner,
        other,
        f"adm-{secrets.token_hex(4)}",
        buckets,
        files,
        Signer(shared_system.settings.resolved_signing_key()),
    )


async def signature(w: World, file_id: str, verb: str, actor: str) -> dict[str, str]:
    """The signed-URL query parameters `actor` presents for `verb` on `file_id`."""
    if actor == "signed":
        # Issued by the API itself, for the method of the verb (GET for the rest).
        method = "HEAD" if verb == "HEAD" else "GET"
        async with w.system.client(w.owner) as c:
            r = await c.post(
                f"/v1/files/{file_id}/signed-url", json={"expires_in": 300, "method": method}
            )
        assert r.status_code == 200, r.text
        return dict(parse_qsl(urlsplit(r.json()["url"]).query))
    now = int(time.time())
    resource = file_resource(file_id, w.owner)
    if actor == "expired":
        return w.signer.sign("GET", resource, now - 1)
    if actor == "tampered":
        params = w.signer.sign("GET", resource, now + 300)
        return {**params, "expires": str(now + 10**6)}
    # wrong_method: a HEAD-only URL used for GET; a PUT URL used for HEAD.
    if verb == "HEAD":
        return w.signer.sign("PUT", resource, now + 300, max_size=10, version="none")
    return w.signer.sign("HEAD", resource, now + 300)


def credentials(w: World, actor: str) -> dict[str, str]:
    if actor == "owner":
        return {"Authorization": f"Bearer {w.system.token(w.owner)}"}
    if actor == "other":
        return {"Authorization": f"Bearer {w.system.token(w.other)}"}
    if actor == "admin":
        return {"Authorization": f"Bearer {w.system.token(w.admin, admin=True)}"}
    return {}


async def still_there(w: World, file_id: str, name: str = "m.bin") -> bool:
    async with w.system.client(w.owner) as c:
        r = await c.get(f"/v1/files/{file_id}")
    return r.status_code == 200 and r.json()["name"] == name


def assert_answer(r: httpx.Response, want: int, verb: str, actor: str, not_found: str) -> None:
    """The status the matrix wants; a refusal in the one error shape with its code (a
    signature's own 403, `not_found` for a 404); an allowed read with the bytes."""
    assert r.status_code == want, (r.status_code, r.text[:300])
    if want >= 400 and verb != "HEAD":
        body = r.json()
        assert set(body) == {"error", "request_id"}, body
        if want == 403:
            code = {"expired": "signed_url_expired", "wrong_method": "signed_url_wrong_method"}
            assert body["error"]["code"] == code.get(actor, "signed_url_invalid"), body
        if want == 404:
            assert body["error"]["code"] == not_found, body
    if want == 200 and verb == "GET":
        assert r.content == DATA
    if want == 200 and verb == "HEAD":
        assert r.content == b"" and r.headers["content-length"] == str(len(DATA))


@pytest.mark.parametrize(("scope", "verb", "actor"), CASES)
async def test_permission(world: World, scope: str, verb: str, actor: str) -> None:
    w = world
    writes = verb in ("PUT", "DELETE")
    if writes:
        async with w.system.client(w.owner) as c:
            file_id = await upload(c, w.buckets[scope])
    else:
        file_id = w.files[scope]
    query = ""
    if actor in SIGNED:
        query = "?" + urlencode(await signature(w, file_id, verb, actor))
    headers = credentials(w, actor)
    want = expected(scope, verb, actor)
    async with httpx.AsyncClient(base_url=w.system.url, headers=headers, timeout=60) as c:
        if verb in ("GET", "HEAD"):
            r = await c.request(verb, f"/v1/files/{file_id}/content{query}")
        elif verb == "meta":
            r = await c.get(f"/v1/files/{file_id}{query}")
        elif verb == "PUT":
            r = await c.patch(f"/v1/files/{file_id}{query}", json={"name": "renamed.bin"})
        elif verb == "DELETE":
            r = await c.delete(f"/v1/files/{file_id}{query}")
        elif verb == "signed-url":
            r = await c.post(f"/v1/files/{file_id}/signed-url{query}", json={"expires_in": 60})
        else:  # list: the caller's files in that bucket (all of them for `none`)
            params = {"bucket": w.buckets[scope]} if w.buckets[scope] else {}
            if want == 200 and actor == "owner":
                # The listing is a read model: wait until the file is in it.
                async def listed() -> bool:
                    r = await c.get("/v1/files", params={**params, "limit": 1000})
                    return file_id in {f["id"] for f in r.json()["items"]}

                await wait_until(listed)
            r = await c.get(
                f"/v1/files{query}", params={**params, "limit": 1000} if not query else None
            )

    assert_answer(r, want, verb, actor, not_found="file_not_found")
    if want == 200 and verb == "meta":
        assert r.json()["id"] == file_id and r.json()["bucket"] == (w.buckets[scope] or "default")
    if verb == "list" and want == 200:
        ids = {f["id"] for f in r.json()["items"]}
        assert (file_id in ids) == (actor == "owner"), ids  # only ever your own files
    if writes:
        # A refused write changed nothing; an allowed one did what it said.
        if want != 200:
            assert await still_there(w, file_id)
        elif verb == "PUT":
            assert await still_there(w, file_id, "renamed.bin")
        else:
            assert not await still_there(w, file_id)


# ---- objects -------------------------------------------------------------------------


def expected_object(scope: str, verb: str, actor: str) -> int:
    """The status `actor` gets for `verb` on an object of the bucket in `scope`."""
    ok = 204 if verb == "DELETE" else 200
    if actor in SIGNED:
        if verb not in ("GET", "HEAD", "PUT"):
            return 400  # signature parameters mean nothing on this route
        return 200 if actor == "signed" else 403
    if actor in ("owner", "admin"):
        return ok
    if scope == "public" and verb in ("GET", "HEAD", "list"):
        return 200
    return 404 if actor == "other" else 401


OBJECT_CASES = [
    pytest.param(scope, verb, actor, id=f"object-{scope}-{verb}-{actor}")
    for scope in OBJECT_SCOPES
    for verb in ("GET", "HEAD", "PUT", "DELETE", "list", "signed-url")
    for actor in ACTORS
]


def opath(bucket: str, key: str) -> str:
    return f"/v1/buckets/{bucket}/objects/{key}"


async def object_signature(
    w: World, bucket: str, key: str, verb: str, actor: str
) -> dict[str, str]:
    """The signed-URL query parameters `actor` presents for `verb` on the object."""
    if actor == "signed":
        method = verb if verb in ("HEAD", "PUT") else "GET"
        body: dict[str, Any] = {"method": method, "expires_in": 300}
        async with w.system.client(w.owner) as c:
            r = await c.post(f"{opath(bucket, key)}/signed-url", json=body)
        assert r.status_code == 200, r.text
        return dict(parse_qsl(urlsplit(r.json()["url"]).query))
    now = int(time.time())
    resource = object_resource(bucket, key, w.owner)
    put = {"max_size": 1000, "version": "none"}
    if actor == "expired":
        return w.signer.sign("GET", resource, now - 1)
    if actor == "tampered":
        return {**w.signer.sign("GET", resource, now + 300), "expires": str(now + 10**6)}
    # wrong_method: a HEAD-only URL used for GET, a PUT URL for HEAD, a GET URL for PUT.
    if verb == "HEAD":
        return w.signer.sign("PUT", resource, now + 300, **put)  # type: ignore[arg-type]
    return w.signer.sign("GET" if verb == "PUT" else "HEAD", resource, now + 300)


async def object_body(w: World, bucket: str, key: str) -> bytes | None:
    async with w.system.client(w.owner) as c:
        r = await c.get(opath(bucket, key))
    return r.content if r.status_code == 200 else None


@pytest.mark.parametrize(("scope", "verb", "actor"), OBJECT_CASES)
async def test_object_permission(world: World, scope: str, verb: str, actor: str) -> None:
    w = world
    bucket = w.buckets[scope]
    assert bucket is not None
    key = f"m/{verb}-{actor}-{secrets.token_hex(3)}.bin"
    async with w.system.client(w.owner) as c:
        assert (await c.put(opath(bucket, key), content=DATA)).status_code == 201
    query = ""
    if actor in SIGNED:
        query = "?" + urlencode(await object_signature(w, bucket, key, verb, actor))
    want = expected_object(scope, verb, actor)
    headers = credentials(w, actor)
    async with httpx.AsyncClient(base_url=w.system.url, headers=headers, timeout=60) as c:
        if verb in ("GET", "HEAD", "DELETE"):
            r = await c.request(verb, f"{opath(bucket, key)}{query}")
        elif verb == "PUT":
            r = await c.put(f"{opath(bucket, key)}{query}", content=b"replaced")
        elif verb == "signed-url":
            body = {"method": "GET", "expires_in": 60}
            r = await c.post(f"{opath(bucket, key)}/signed-url{query}", json=body)
        else:  # list
            if want == 200:
                # The listing is a read model: wait until the object is in it.
                async def listed() -> bool:
                    r = await c.get(f"/v1/buckets/{bucket}/objects", params={"prefix": key})
                    return r.status_code == 200 and len(r.json()["items"]) == 1

                await wait_until(listed)
            r = await c.get(f"/v1/buckets/{bucket}/objects{query or '?prefix=' + key}")

    assert_answer(r, want, verb, actor, not_found="bucket_not_found")
    if want == 200 and verb == "list":
        assert [o["key"] for o in r.json()["items"]] == [key]
    if verb in ("PUT", "DELETE"):
        after = await object_body(w, bucket, key)
        if want >= 400:
            assert after == DATA  # a refused write changed nothing
        else:
            assert after == (b"replaced" if verb == "PUT" else None)
