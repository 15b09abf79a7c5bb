"""CAIRN_S3_REDIRECT (api/http/presigned.py): a full GET of a file that is one S3 object
answers 307 to a presigned S3 URL; everything else is served by Cairn as before.

The whole system on the local S3 server (tests/s3server.py: moto, which checks presigned
signatures and expiry), real Postgres and the real broker. The presigned URL is followed
without Cairn's credentials and must give the file's exact bytes, type and name.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.http.content import Representation, plan
from api.http.presigned import redirect_location, single_object
from bus.blobs.s3 import S3BlobStore, S3Options
from bus.config.settings import Settings
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.s3server import S3Server
from tests.system import isolated_system

CHUNK = 5 * 1024 * 1024
NOW = datetime(2026, 11, 6, 9, 0, 0, tzinfo=UTC)


def redirecting(s3_server: S3Server, bucket: str) -> dict[str, Any]:
    """The settings of a system whose blobs are in `bucket` on the local S3 server and which
    redirects full GETs of one-object content of 4096 bytes or more there (presigned URLs
    valid 120 s)."""
    return {
        "blob_store": f"s3://{bucket}/cairn",
        "s3_endpoint": s3_server.endpoint,
        "s3_redirect": True,
        "s3_redirect_min_bytes": 4096,
        "s3_redirect_expires": 120,
    }


async def _upload(c: httpx.AsyncClient, name: str, data: bytes, chunk: int) -> str:
    r = await c.post(
        "/v1/uploads",
        json={
            "file_name": name,
            "file_size": len(data),
            "chunk_size": chunk,
            "content_type": "text/plain",
        },
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    for i in range(0, max(len(data), 1), chunk):
        r = await c.put(f"/v1/uploads/{uid}/chunks/{i // chunk}", content=data[i : i + chunk])
        assert r.status_code in (200, 201), r.text
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return str(r.json()["file_id"])


async def test_full_get_of_a_one_object_file_redirects_to_s3_and_the_rest_is_served_here(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    bucket = f"pre{secrets.token_hex(5)}"
    s3_server.create_bucket(bucket)
    single = os.urandom(CHUNK + 777)  # one chunk holds all of it
    multi = os.urandom(2 * CHUNK + 5)  # three chunks: three objects
    small = os.urandom(1000)  # one chunk, but under the threshold
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, **redirecting(s3_server, bucket)
    ) as system:
        async with system.client() as c:
            one = await _upload(c, "one file.txt", single, len(single))
            many = await _upload(c, "many.txt", multi, CHUNK)
            tiny = await _upload(c, "tiny.txt", small, len(small))

            r = await c.get(f"/v1/files/{one}/content", follow_redirects=False)
            assert r.status_code == 307, r.text
            assert r.headers["Cache-Control"] == "no-store"
            location = r.headers["Location"]
            assert location.startswith(s3_server.endpoint)
            assert "X-Amz-Expires=120" in location
            # Straight from S3, without Cairn's token.
            async with httpx.AsyncClient() as anonymous:
                direct = await anonymous.get(location)
            assert direct.status_code == 200
            assert hashlib.sha256(direct.content).digest() == hashlib.sha256(single).digest()
            assert direct.headers["Content-Type"].startswith("text/plain")
            assert "one%20file.txt" in direct.headers["Content-Disposition"] or (
                "one file.txt" in direct.headers["Content-Disposition"]
            )

            # A range, HEAD and a conditional are answered by Cairn itself.
            r = await c.get(f"/v1/files/{one}/content", headers={"Range": "bytes=10-19"})
            assert r.status_code == 206 and r.content == single[10:20]
            r = await c.head(f"/v1/files/{one}/content")
            assert r.status_code == 200 and "Location" not in r.headers
            etag = (await c.head(f"/v1/files/{one}/content")).headers["ETag"]
            r = await c.get(f"/v1/files/{one}/content", headers={"If-None-Match": etag})
            assert r.status_code == 304

            # Several objects, or under the threshold: streamed by Cairn.
            r = await c.get(f"/v1/files/{many}/content", follow_redirects=False)
            assert r.status_code == 200 and r.content == multi
            r = await c.get(f"/v1/files/{tiny}/content", follow_redirects=False)
            assert r.status_code == 200 and r.content == small

            # The one object gone from the bucket (lost, deleted behind Cairn's back): no
            # redirect to S3's 404 but the answer a streamed read gives, naming the blob.
            behind = S3BlobStore(
                S3Options(bucket, "cairn/", s3_server.endpoint, spool_dir=tmp_path / "spool")
            )
            try:
                await behind.delete(hashlib.sha256(single).hexdigest())
            finally:
                await behind.close()
            r = await c.get(f"/v1/files/{one}/content", follow_redirects=False)
            assert r.status_code == 500, r.text
            assert "Location" not in r.headers
            assert r.json()["error"]["code"] == "blob_missing"


class _Presigning:
    async def presigned_get(self, sha256: str, **kw: object) -> str:
        return f"https://s3.example/{sha256}"


class _NotPresigning:
    pass


@pytest.mark.parametrize(
    ("redirect", "store", "manifest", "size", "want"),
    [
        (True, _Presigning(), [("a" * 64, 10_000)], 10_000, "https://s3.example/" + "a" * 64),
        (False, _Presigning(), [("a" * 64, 10_000)], 10_000, None),  # the default: off
        (True, _NotPresigning(), [("a" * 64, 10_000)], 10_000, None),  # the local store
        (True, _Presigning(), [("a" * 64, 5_000), ("b" * 64, 5_000)], 10_000, None),
        (True, _Presigning(), [("a" * 64, 100)], 100, None),  # under the threshold
    ],
)
async def test_redirect_location_only_for_one_large_object_on_a_presigning_store(
    redirect: bool, store: object, manifest: Sequence[tuple[str, int]], size: int, want: str | None
) -> None:
    s = Settings.from_env(
        {"CAIRN_S3_REDIRECT_MIN_BYTES": "1K", **({"CAIRN_S3_REDIRECT": "1"} if redirect else {})}
    )
    assert await redirect_location(s, store, manifest, size, {}) == want


@pytest.mark.parametrize(
    ("content_type", "redirected"),
    [("text/html", False), ("image/svg+xml", False), ("text/plain", True), ("image/png", True)],
)
async def test_active_content_is_never_handed_to_s3(content_type: str, redirected: bool) -> None:
    # S3 would serve it inline without the sandbox (CSP) and nosniff Cairn sends with it:
    # HTML or SVG running in the S3 endpoint's origin (Cairn's own, behind one proxy).
    s = Settings.from_env({"CAIRN_S3_REDIRECT_MIN_BYTES": "1K", "CAIRN_S3_REDIRECT": "1"})
    headers = plan(
        "GET", {}, Representation(10_000, "a" * 64, NOW, content_type, "f"), now=NOW
    ).headers
    location = await redirect_location(s, _Presigning(), [("a" * 64, 10_000)], 10_000, headers)
    assert (location is not None) is redirected


def test_single_object_needs_one_chunk_as_long_as_the_file() -> None:
    assert single_object([("a" * 64, 5)], 5) == "a" * 64
    assert single_object([("a" * 64, 5)], 6) is None
    assert single_object([], 0) is None


class _Recording:
    def __init__(self) -> None:
        self.expires: list[int] = []

    async def presigned_get(self, sha256: str, *, expires: int, **kw: object) -> str:
        self.expires.append(expires)
        return f"https://s3.example/{sha256}?X-Amz-Expires={expires}"


@pytest.mark.parametrize(
    ("granted_for", "want"), [(None, 300), (10_000, 300), (42, 42), (1, 1), (0, None), (-5, None)]
)
async def test_a_redirect_never_outlives_the_signed_url_that_let_the_get_in(
    granted_for: int | None, want: int | None
) -> None:
    s = Settings.from_env({"CAIRN_S3_REDIRECT": "1", "CAIRN_S3_REDIRECT_MIN_BYTES": "1"})
    store = _Recording()
    got = await redirect_location(s, store, [("a" * 64, 10)], 10, {}, granted_for=granted_for)
    assert store.expires == ([] if want is None else [want])
    assert (got is None) == (want is None)
