"""S3's CopyObject (`x-amz-copy-source` on an object PUT) through the whole system: the
content shared, metadata copied or replaced, the source read as a GET reads it, the
destination's conditions and the source's, and what is refused rather than ignored."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote

import pytest

from tests.api.answers import assert_error, make_bucket, opath, user
from tests.api.routes.test_objects import object_events
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


def source(bucket: str, key: str) -> dict[str, str]:
    return {"x-amz-copy-source": f"/{bucket}/{quote(key)}"}


async def test_a_copy_shares_the_content_and_copies_or_replaces_the_metadata(
    shared_system: System,
) -> None:
    data = os.urandom(300_000)
    async with shared_system.client(user()) as c:
        a, b = await make_bucket(c), await make_bucket(c)
        put = await c.put(
            opath(a, "dir/src ü.bin"),
            content=data,
            headers={"Content-Type": "application/x-thing", "X-Amz-Meta-Color": "blue"},
        )
        assert put.status_code == 201, put.text
        original = put.json()

        r = await c.put(opath(b, "copy.bin"), headers=source(a, "dir/src ü.bin"))
        assert r.status_code == 201, r.text
        made = r.json()
        assert (made["bucket"], made["key"], made["sha256"], made["size"]) == (
            b,
            "copy.bin",
            original["sha256"],
            len(data),
        )
        assert made["content_type"] == "application/x-thing"
        assert made["metadata"] == {"color": "blue"} and made["id"] != original["id"]
        got = await c.get(opath(b, "copy.bin"))
        assert got.content == data and got.headers["x-amz-meta-color"] == "blue"

        # REPLACE: the request's metadata and type; onto an existing key, a replacement.
        r = await c.put(
            opath(b, "copy.bin"),
            headers={
                **source(a, "dir/src ü.bin"),
                "x-amz-metadata-directive": "REPLACE",
                "X-Amz-Meta-Shape": "round",
                "Content-Type": "text/plain",
            },
        )
        assert r.status_code == 200, r.text
        assert (r.json()["metadata"], r.json()["content_type"]) == (
            {"shape": "round"},
            "text/plain",
        )
        # Onto itself, only to change the metadata (REPLACE); the bytes stay.
        r = await c.put(
            opath(a, "dir/src ü.bin"),
            headers={**source(a, "dir/src ü.bin"), "x-amz-metadata-directive": "replace"},
        )
        assert r.status_code == 200 and r.json()["metadata"] == {}, r.text
        assert (await c.get(opath(a, "dir/src ü.bin"))).content == data


async def test_the_source_is_read_as_a_get_reads_it(shared_system: System) -> None:
    async with shared_system.client(user()) as owner, shared_system.client(user()) as other:
        private, public = await make_bucket(owner), await make_bucket(owner, public=True)
        for b in (private, public):
            assert (await owner.put(opath(b, "k"), content=b"bytes")).status_code == 201
        mine = await make_bucket(other)
        # Another user's private bucket is not there; a public one may be copied from.
        r = await other.put(opath(mine, "x"), headers=source(private, "k"))
        assert_error(r, 404, "bucket_not_found")
        r = await other.put(opath(mine, "x"), headers=source(public, "k"))
        assert r.status_code == 201, r.text
        assert (await other.get(opath(mine, "x"))).content == b"bytes"
        # ... but never into another user's bucket.
        r = await other.put(opath(public, "y"), headers=source(public, "k"))
        assert_error(r, 404, "bucket_not_found")
        r = await owner.put(opath(private, "x"), headers=source(private, "missing"))
        assert_error(r, 404, "object_not_found")
        assert await object_events(shared_system.pool, private, "x") == []


async def test_conditions_of_the_source_and_of_the_destination(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        src = (await c.put(opath(b, "src"), content=b"one")).json()
        assert (await c.put(opath(b, "dst"), content=b"two")).status_code == 201
        for headers in (
            {"x-amz-copy-source-if-match": '"' + "0" * 64 + '"'},
            {"x-amz-copy-source-if-none-match": src["etag"]},
        ):
            r = await c.put(opath(b, "new"), headers={**source(b, "src"), **headers})
            assert_error(r, 412, "precondition_failed")
        r = await c.put(opath(b, "dst"), headers={**source(b, "src"), "If-None-Match": "*"})
        assert_error(r, 412, "object_exists")
        r = await c.put(opath(b, "dst"), headers={**source(b, "src"), "If-Match": src["etag"]})
        assert_error(r, 412, "etag_mismatch")
        assert (await c.get(opath(b, "dst"))).content == b"two"
        assert await object_events(shared_system.pool, b, "new") == []
        r = await c.put(
            opath(b, "new"),
            headers={**source(b, "src"), "x-amz-copy-source-if-match": src["etag"]},
        )
        assert r.status_code == 201 and (await c.get(opath(b, "new"))).content == b"one"


async def test_what_a_copy_cannot_do_is_refused_not_ignored(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        assert (await c.put(opath(b, "src"), content=b"one")).status_code == 201
        src = ("x-amz-copy-source", f"/{b}/src")
        cases: list[tuple[str, list[tuple[str, str]], bytes]] = [
            ("dst", [src, src], b""),  # twice
            ("dst", [src], b"a body as well"),
            ("dst", [("x-amz-copy-source", f"/{b}/src?versionId=3")], b""),
            ("dst", [("x-amz-copy-source", "/not a bucket/k")], b""),
            ("dst", [("x-amz-copy-source", f"/{b}")], b""),
            ("dst", [("x-amz-copy-source", f"/{b}/%FF")], b""),
            ("dst", [src, ("x-amz-metadata-directive", "MERGE")], b""),
            ("dst", [src, ("X-Amz-Meta-A", "1")], b""),  # COPY would drop it
            ("dst", [src, ("x-amz-copy-source-if-modified-since", "x")], b""),
            ("dst", [src, ("x-amz-copy-source-if-match", 'W/"weak"')], b""),
            ("dst", [("x-amz-metadata-directive", "REPLACE")], b"no source named"),
            ("src", [src], b""),  # onto itself, changing nothing
        ]
        for key, headers, body in cases:
            r = await c.put(opath(b, key), content=body, headers=headers)
            assert_error(r, 400, "invalid_copy_source")
        assert await object_events(shared_system.pool, b, "dst") == []
        # A signed PUT URL uploads a body; it does not copy.
        signed = await c.post(
            f"{opath(b, 'dst')}/signed-url", json={"method": "PUT", "expires_in": 60}
        )
        url = signed.json()["url"]
        async with shared_system.client(None) as anon:
            r = await anon.put(url, headers=source(b, "src"))
            assert_error(r, 400, "invalid_copy_source")


async def test_no_spelling_of_a_source_reaches_another_users_private_object(
    shared_system: System,
) -> None:
    """`..`, `%2e%2e`, `%2F`, `//` are characters of a key in the bucket named first:
    nothing spelled in the source reaches a bucket the caller may not read, and every
    refusal is a 404 (the bucket, or the key in the caller's own) or a 400, never a 403."""
    async with shared_system.client(user()) as victim, shared_system.client(user()) as me:
        theirs = await make_bucket(victim)
        assert (await victim.put(opath(theirs, "secret"), content=b"theirs")).status_code == 201
        mine = await make_bucket(me)
        for spelled, status, code in (
            (f"/{theirs}/secret", 404, "bucket_not_found"),
            (f"/{mine}/../{theirs}/secret", 404, "object_not_found"),
            (f"/{mine}/%2e%2e/{theirs}/secret", 404, "object_not_found"),
            (f"/{mine}%2F..%2F{theirs}/secret", 404, "object_not_found"),
            (f"/{theirs}%2Fsecret", 404, "bucket_not_found"),
            (f"//{theirs}//secret", 404, "bucket_not_found"),
            (f"/{mine}//{theirs}/secret", 404, "object_not_found"),
            (f"/{theirs.upper()}/secret", 400, "invalid_copy_source"),
        ):
            r = await me.put(opath(mine, "got"), headers={"x-amz-copy-source": spelled})
            assert_error(r, status, code)
        assert await object_events(shared_system.pool, mine, "got") == []
        # Only the key `..` of the caller's own bucket is what `/mine/../…` names.
        assert (
            await me.put(opath(mine, f"../{theirs}/secret"), content=b"mine")
        ).status_code == 201
        r = await me.put(
            opath(mine, "got"), headers={"x-amz-copy-source": f"/{mine}/%2E%2E/{theirs}/secret"}
        )
        assert r.status_code == 201 and (await me.get(opath(mine, "got"))).content == b"mine"


async def test_a_digest_on_a_copy_is_refused_and_a_raw_utf8_source_is_the_key_meant(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        assert (await c.put(opath(b, "ü/€.txt"), content=b"one")).status_code == 201
        # A copy has no body: a digest of one cannot be checked, so it is not ignored.
        for header, value in (
            ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),  # the MD5 of no bytes
            ("x-amz-checksum-sha256", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
        ):
            r = await c.put(opath(b, "dst"), headers={**source(b, "ü/€.txt"), header: value})
            err = assert_error(r, 400, "invalid_copy_source")
            assert err["details"] == {"header": header.lower()}
        # A source that is not UTF-8 once decoded, and an unencoded `?`: no copy.
        for raw in (f"/{b}/%FF".encode(), f"/{b}/\u00fc/\u20ac.txt?".encode()):
            r = await c.put(opath(b, "dst"), headers=[("x-amz-copy-source", raw)])
            assert_error(r, 400, "invalid_copy_source")
        assert await object_events(shared_system.pool, b, "dst") == []
        # The key sent as raw UTF-8 bytes (not percent-encoded) is ü/€.txt, not the
        # characters its bytes are in latin-1.
        r = await c.put(opath(b, "dst"), headers=[("x-amz-copy-source", f"/{b}/ü/€.txt".encode())])
        assert r.status_code == 201, r.text
        assert (await c.get(opath(b, "dst"))).content == b"one"


async def test_a_copy_racing_the_deletion_of_its_source(shared_system: System) -> None:
    """Either the copy read the source first (201, and the copy keeps the bytes after the
    source is gone: its chunks are referenced by the copy) or it found none (404): never a
    500, never an object without its bytes."""
    data = os.urandom(200_000)
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        outcomes = set()
        for i in range(6):
            assert (await c.put(opath(b, f"src{i}"), content=data)).status_code in (200, 201)
            copied, deleted = await asyncio.gather(
                c.put(opath(b, f"dst{i}"), headers=source(b, f"src{i}")),
                c.delete(opath(b, f"src{i}")),
            )
            assert deleted.status_code == 204, deleted.text
            if copied.status_code == 201:
                got = await c.get(opath(b, f"dst{i}"))
                assert got.status_code == 200 and got.content == data
            else:
                assert_error(copied, 404, "object_not_found")
                assert await object_events(shared_system.pool, b, f"dst{i}") == []
            outcomes.add(copied.status_code)
            assert_error(await c.get(opath(b, f"src{i}")), 404, "object_not_found")
        assert outcomes <= {201, 404}
