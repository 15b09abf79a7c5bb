"""CAIRN_S3_REDIRECT (api/http/presigned.py) on object GETs (api/routes/objects.py): a full
GET of an object that is one S3 object answers 307 to a presigned S3 URL, but only once the
caller may read it (owner, public bucket, valid signed GET URL); a refused read is refused
as always, never redirected.

The whole system on the local S3 server (tests/s3server.py: moto, which checks presigned
signatures), real Postgres and the real broker. The presigned URL is followed without
Cairn's credentials and must give the object's exact bytes and type.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.http.test_presigned import redirecting
from tests.s3server import S3Server
from tests.system import isolated_system


def _opath(bucket: str, key: str) -> str:
    return f"/v1/buckets/{bucket}/objects/{quote(key, safe='/')}"


def _relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def _follow(location: str, s3: S3Server) -> httpx.Response:
    """The presigned URL, straight from S3 without Cairn's token."""
    assert location.startswith(s3.endpoint), location
    assert "X-Amz-Expires=120" in location
    async with httpx.AsyncClient() as anonymous:
        return await anonymous.get(location)


async def test_object_get_redirects_to_s3_only_after_the_access_checks(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    s3_server: S3Server,
) -> None:
    store = f"pro{secrets.token_hex(5)}"
    s3_server.create_bucket(store)
    one = os.urandom(300_000)  # one piece: one S3 object
    many = os.urandom(3 * 1024 * 1024 + 11)  # several pieces: several S3 objects
    tiny = os.urandom(100)  # one piece, but under the threshold
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, **redirecting(s3_server, store)
    ) as system:
        private, public = f"pr-{secrets.token_hex(5)}", f"pu-{secrets.token_hex(5)}"
        async with system.client("owner") as c:
            for name, is_public in ((private, False), (public, True)):
                r = await c.post("/v1/buckets", json={"name": name, "public": is_public})
                assert r.status_code == 201, r.text
                for key, data in (("a/one.bin", one), ("many.bin", many), ("tiny.bin", tiny)):
                    # A passive type: active content is never handed to S3.
                    r = await c.put(
                        _opath(name, key),
                        content=data,
                        headers={"Content-Type": "audio/x-test", "X-Amz-Meta-Kind": "sample"},
                    )
                    assert r.status_code == 201, r.text

            # The owner: a full GET of a one-object object goes to S3.
            r = await c.get(_opath(private, "a/one.bin"), follow_redirects=False)
            assert r.status_code == 307, r.text
            assert r.headers["Cache-Control"] == "no-store"
            # The object's metadata is on the redirect (S3's answer has none of it).
            assert r.headers["x-amz-meta-kind"] == "sample"
            direct = await _follow(r.headers["Location"], s3_server)
            assert direct.status_code == 200 and direct.content == one
            assert direct.headers["Content-Type"].startswith("audio/x-test")

            # Ranges, HEAD and conditionals are answered by Cairn itself.
            r = await c.get(_opath(private, "a/one.bin"), headers={"Range": "bytes=5-9"})
            assert r.status_code == 206 and r.content == one[5:10]
            r = await c.head(_opath(private, "a/one.bin"))
            assert r.status_code == 200 and "Location" not in r.headers
            assert r.headers["x-amz-meta-kind"] == "sample"
            r = await c.get(
                _opath(private, "a/one.bin"), headers={"If-None-Match": r.headers["ETag"]}
            )
            assert r.status_code == 304 and "Location" not in r.headers

            # Several pieces, or under the threshold: streamed by Cairn.
            r = await c.get(_opath(private, "many.bin"), follow_redirects=False)
            assert r.status_code == 200 and r.content == many
            r = await c.get(_opath(private, "tiny.bin"), follow_redirects=False)
            assert r.status_code == 200 and r.content == tiny

            r = await c.post(
                f"{_opath(private, 'a/one.bin')}/signed-url",
                json={"method": "GET", "expires_in": 300},
            )
            assert r.status_code == 200, r.text
            signed = _relative(r.json()["url"])
            r = await c.post(
                f"{_opath(private, 'a/one.bin')}/signed-url",
                json={"method": "HEAD", "expires_in": 300},
            )
            assert r.status_code == 200, r.text
            head_only = _relative(r.json()["url"])
            r = await c.post(
                f"{_opath(private, 'a/one.bin')}/signed-url",
                json={"method": "GET", "expires_in": 30},
            )
            assert r.status_code == 200, r.text
            short = _relative(r.json()["url"])

        async with system.client(None) as anon:
            # A private bucket's object: 401 for an anonymous caller, never a redirect.
            r = await anon.get(_opath(private, "a/one.bin"), follow_redirects=False)
            assert r.status_code == 401, r.text
            assert "Location" not in r.headers
            # A public bucket's: anyone, redirected.
            r = await anon.get(_opath(public, "a/one.bin"), follow_redirects=False)
            assert r.status_code == 307, r.text
            assert (await _follow(r.headers["Location"], s3_server)).content == one

            # A valid signed GET URL: redirected.
            r = await anon.get(signed, follow_redirects=False)
            assert r.status_code == 307, r.text
            assert (await _follow(r.headers["Location"], s3_server)).content == one
            # A signed URL that ends before CAIRN_S3_REDIRECT_EXPIRES: the S3 URL it is
            # redirected to ends no later, so holding the link grants no more time.
            r = await anon.get(short, follow_redirects=False)
            assert r.status_code == 307, r.text
            lasts = int(dict(parse_qsl(urlsplit(r.headers["Location"]).query))["X-Amz-Expires"])
            assert 0 < lasts <= 30, lasts
            # A HEAD-only URL used for GET, or an altered signature: refused, not redirected.
            r = await anon.get(head_only, follow_redirects=False)
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "signed_url_wrong_method"
            path, query = signed.split("?", 1)
            params = dict(parse_qsl(query))
            params["signature"] = ("0" if params["signature"][0] != "0" else "1") + params[
                "signature"
            ][1:]
            r = await anon.get(f"{path}?{urlencode(params)}", follow_redirects=False)
            assert r.status_code == 403, r.text
            assert "Location" not in r.headers

        async with system.client("someone-else") as other:
            # Another user's private bucket: 404, never a redirect; a public one: redirected.
            r = await other.get(_opath(private, "a/one.bin"), follow_redirects=False)
            assert r.status_code == 404, r.text
            r = await other.get(_opath(public, "a/one.bin"), follow_redirects=False)
            assert r.status_code == 307, r.text


async def test_stored_headers_s3_cannot_send_keep_the_object_at_cairn(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    s3_server: S3Server,
) -> None:
    """A presigned URL carries the type and the disposition only: an object with a stored
    Content-Disposition is still redirected (S3 answers that disposition), one with a
    stored Content-Encoding (or Cache-Control, ...) is served by Cairn with it."""
    store = f"pro{secrets.token_hex(5)}"
    s3_server.create_bucket(store)
    one = os.urandom(300_000)  # one piece: one S3 object
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, **redirecting(s3_server, store)
    ) as system:
        bucket = f"hd-{secrets.token_hex(5)}"
        async with system.client("owner") as c:
            assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
            named = 'attachment; filename="named.bin"'
            for key, headers in (
                ("disposed.bin", {"Content-Disposition": named}),
                ("encoded.bin", {"Content-Encoding": "br", "Cache-Control": "max-age=9"}),
            ):
                r = await c.put(
                    _opath(bucket, key),
                    content=one,
                    headers={"Content-Type": "audio/x-test", **headers},
                )
                assert r.status_code == 201, r.text

            r = await c.get(_opath(bucket, "disposed.bin"), follow_redirects=False)
            assert r.status_code == 307, r.text
            direct = await _follow(r.headers["Location"], s3_server)
            assert direct.status_code == 200 and direct.content == one
            assert direct.headers["Content-Disposition"] == named

            async with c.stream("GET", _opath(bucket, "encoded.bin")) as r:
                body = b"".join([piece async for piece in r.aiter_raw()])
            assert r.status_code == 200 and body == one  # never decoded, never redirected
            assert r.headers["Content-Encoding"] == "br"
            assert r.headers["Cache-Control"] == "max-age=9"
