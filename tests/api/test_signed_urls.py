"""Signed URLs for files through the whole system: `POST /v1/files/{id}/signed-url` and the
URL it answers, served without auth with Range and conditionals as usual; expired, altered
and wrong-method URLs are 403 in the one error shape; the expiry bound; who may sign;
key rotation across a restart (CAIRN_SIGNING_OLD_KEYS)."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from api.bucket_access import file_resource
from api.http.signing import Signer
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.answers import user
from tests.system import System, isolated_system

pytestmark = pytest.mark.asyncio(loop_scope="session")

DATA = os.urandom(10_000)


async def upload(c: httpx.AsyncClient, data: bytes = DATA, bucket: str | None = None) -> str:
    body: dict[str, Any] = {"file_name": "f.bin", "file_size": len(data), "chunk_size": 4096}
    if bucket:
        body["bucket"] = bucket
    r = await c.post("/v1/uploads", json=body)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    for i in range(0, len(data), 4096):
        r = await c.put(f"/v1/uploads/{uid}/chunks/{i // 4096}", content=data[i : i + 4096])
        assert r.status_code == 201, r.text
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return str(r.json()["file_id"])


def error_code(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"}, body
    assert r.headers["x-request-id"] == body["request_id"]
    return str(body["error"]["code"])


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def with_params(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    for k, v in changes.items():
        if v is None:
            q.pop(k, None)
        else:
            q[k] = v
    return f"{parts.path}?{urlencode(q)}"


async def test_a_signed_url_serves_the_file_without_auth(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        fid = await upload(c)
        before = time.time()
        r = await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 600})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "GET"
    # Absolute, built from the Host the caller used; the path is the file's content.
    parts = urlsplit(body["url"])
    assert f"{parts.scheme}://{parts.netloc}" == shared_system.url
    assert parts.path == f"/v1/files/{fid}/content"
    expires_at = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert before + 600 - 1 <= expires_at <= time.time() + 600
    etag = f'"{hashlib.sha256(DATA).hexdigest()}"'
    async with shared_system.client(None) as anon:
        r = await anon.get(body["url"])
        assert r.status_code == 200 and r.content == DATA
        assert r.headers["etag"] == etag
        # Range, conditionals and HEAD as for an authenticated request.
        r = await anon.get(body["url"], headers={"Range": "bytes=-100"})
        assert r.status_code == 206 and r.content == DATA[-100:]
        r = await anon.get(body["url"], headers={"If-None-Match": etag})
        assert r.status_code == 304
        r = await anon.get(body["url"], headers={"If-Match": '"nope"'})
        assert error_code(r, 412) == "precondition_failed"
        r = await anon.head(body["url"])
        assert r.status_code == 200 and r.headers["content-length"] == str(len(DATA))
        # Without the signature, the same path is not public.
        assert error_code(await anon.get(f"/v1/files/{fid}/content"), 401) == "unauthorized"
        # The signature is judged alone: another user's valid token does not rescue a bad
        # one, nor is a good one refused because of who else is asking.
        other = {"Authorization": f"Bearer {shared_system.token(user())}"}
        assert (await anon.get(body["url"], headers=other)).content == DATA
        r = await anon.get(with_params(body["url"], expires="1"), headers=other)
        assert error_code(r, 403) == "signed_url_invalid"


async def test_bad_signed_urls_are_403_and_say_why(shared_system: System) -> None:
    me = user()
    s = shared_system
    async with s.client(me) as c:
        fid = await upload(c)
        other_fid = await upload(c, b"other bytes")
        head_url = (
            await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 60, "method": "HEAD"})
        ).json()["url"]
        url = (await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 60})).json()["url"]
    # A URL signed by the server's key that expired a second ago.
    signer = Signer(s.settings.resolved_signing_key())
    expired = signer.sign("GET", file_resource(fid, me), int(time.time()) - 1)
    sig = dict(parse_qsl(urlsplit(url).query))["signature"]
    async with s.client(None) as anon:
        assert (await anon.head(head_url)).status_code == 200
        cases = {
            "expired": (
                anon.get(f"/v1/files/{fid}/content?{urlencode(expired)}"),
                "signed_url_expired",
            ),
            "wrong method": (anon.get(head_url), "signed_url_wrong_method"),
            "edited signature": (
                anon.get(
                    with_params(url, signature=sig[:-2] + ("AA" if sig[-2:] != "AA" else "BA"))
                ),
                "signed_url_invalid",
            ),
            "edited expiry": (
                anon.get(with_params(url, expires=str(int(time.time()) + 9999))),
                "signed_url_invalid",
            ),
            "edited method": (anon.get(with_params(head_url, method="GET")), "signed_url_invalid"),
            "no signature": (anon.get(with_params(url, signature=None)), "signed_url_invalid"),
            "garbage": (anon.get(with_params(url, expires="soon", kid="💥")), "signed_url_invalid"),
            "another file": (
                anon.get(path_and_query(url).replace(fid, other_fid)),
                "signed_url_invalid",
            ),
            # A parameter given twice: the first used to win, whatever the second said.
            "repeated signature": (
                anon.get(path_and_query(url) + "&signature=AAAA"),
                "signed_url_invalid",
            ),
            "repeated expiry": (
                anon.get(path_and_query(url) + "&expires=99999999999"),
                "signed_url_invalid",
            ),
        }
        for what, (request, code) in cases.items():
            r = await request
            assert error_code(r, 403) == code, what


async def test_who_may_sign_and_for_how_long(shared_system: System) -> None:
    me, other = user(), user()
    s = shared_system
    async with s.client(me) as c:
        fid = await upload(c)
        bound = s.settings.signed_url_max_expiry
        r = await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": bound + 1})
        assert error_code(r, 400) == "invalid_expires_in"
        assert r.json()["error"]["details"]["max"] == bound
        assert (
            await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": bound})
        ).status_code == 200
        for bad in (
            {"expires_in": 0},
            {"expires_in": "60"},
            {"expires_in": 60, "method": "PUT"},
            {"expires_in": 60, "extra": 1},
            {},
        ):
            r = await c.post(f"/v1/files/{fid}/signed-url", json=bad)
            assert r.status_code == 400, (bad, r.text)
        missing = "00000000-0000-4000-8000-000000000000"
        r = await c.post(f"/v1/files/{missing}/signed-url", json={"expires_in": 60})
        assert error_code(r, 404) == "file_not_found"
    async with s.client(other) as c:
        r = await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 60})
        assert error_code(r, 404) == "file_not_found"
    async with s.client("root", admin=True) as c:
        r = await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 60})
        assert r.status_code == 200, r.text
    async with s.client(None) as anon:
        r = await anon.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 60})
        assert error_code(r, 401) == "unauthorized"
    # A deleted file's URL finds nothing.
    async with s.client(me) as c:
        r = await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 60})
        url = path_and_query(r.json()["url"])
        assert (await c.delete(f"/v1/files/{fid}")).status_code == 200
    async with s.client(None) as anon:
        assert error_code(await anon.get(url), 404) == "file_not_found"


async def test_forwarded_origin_is_used_only_behind_a_trusted_proxy(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    fwd = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "files.example.com"}
    async with isolated_system(pg_server.url, kafka_server.bootstrap, trust_proxy=True) as s:
        async with s.client("alice") as c:
            fid = await upload(c)
            r = await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 60}, headers=fwd)
            assert r.json()["url"].startswith(f"https://files.example.com/v1/files/{fid}/content?")
            # A forwarded host that is not a host is ignored, never pasted into the URL.
            bad = {"X-Forwarded-Host": "evil.example/x?y", "X-Forwarded-Proto": "javascript"}
            r = await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 60}, headers=bad)
            assert r.json()["url"].startswith(f"{s.url}/v1/files/{fid}/content?")


async def test_rotating_the_key_keeps_listed_old_urls_and_drops_the_rest(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    old_key, new_key = secrets.token_urlsafe(40), secrets.token_urlsafe(40)
    async with isolated_system(pg_server.url, kafka_server.bootstrap, signing_key=old_key) as s:
        async with s.client("alice") as c:
            fid = await upload(c)
            url = path_and_query(
                (await c.post(f"/v1/files/{fid}/signed-url", json={"expires_in": 600})).json()[
                    "url"
                ]
            )
            assert (await c.get(url)).status_code == 200
        # The same data (database, blobs) served with a new key, the old one still listed...
        await s.stop("api")
        s.settings = s.settings.__class__(
            **{**s.settings.__dict__, "signing_key": new_key, "signing_old_keys": (old_key,)}
        )
        s.start("api")
        await s.wait_api()
        async with s.client(None) as anon:
            assert (await anon.get(url)).content == DATA
        # ... and then without it: every URL the old key signed is refused.
        await s.stop("api")
        s.settings = s.settings.__class__(**{**s.settings.__dict__, "signing_old_keys": ()})
        s.start("api")
        await s.wait_api()
        async with s.client(None) as anon:
            assert error_code(await anon.get(url), 403) == "signed_url_invalid"
