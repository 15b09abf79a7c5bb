"""A declared body digest on an object PUT (S3's `Content-MD5`, `x-amz-checksum-sha256`)
through the whole system: a matching body makes the object, a damaged one is 400
`checksum_mismatch` and leaves the key as it was (no event, nothing counted), and a digest
that cannot be checked is 400 `invalid_checksum` before a byte of the body is read."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.api.answers import assert_error, make_bucket, opath, user
from tests.api.routes.test_objects import object_events
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def md5_of(data: bytes) -> str:
    return b64(hashlib.md5(data).digest())


def sha256_of(data: bytes) -> str:
    return b64(hashlib.sha256(data).digest())


async def test_a_matching_digest_makes_the_object(shared_system: System) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several pieces, several reads
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        for headers in (
            {"Content-MD5": md5_of(data)},
            {"x-amz-checksum-sha256": sha256_of(data)},
            {"Content-MD5": md5_of(data), "x-amz-checksum-sha256": sha256_of(data)},
        ):
            r = await c.put(opath(b, "k"), content=data, headers=headers)
            assert r.status_code in (200, 201), r.text
            assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
        got = await c.get(opath(b, "k"))
        assert got.status_code == 200 and got.content == data


async def test_a_damaged_body_is_refused_and_the_key_keeps_what_it_held(
    shared_system: System,
) -> None:
    old, new = os.urandom(70_000), os.urandom(2 * 1024 * 1024)
    damaged = bytes([new[0] ^ 1]) + new[1:]  # what the client meant is `new`
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        assert (await c.put(opath(b, "k"), content=old)).status_code == 201
        events = await object_events(shared_system.pool, b, "k")

        async def usage() -> Any:  # the bucket's usage is a read model: a bounded lag
            return (await c.get(f"/v1/buckets/{b}")).json()["usage"]

        counted = {"objects": 1, "bytes": len(old)}

        async def settled() -> bool:
            return await usage() == counted

        await wait_until(settled)
        for header, declared, actual in (
            ("content-md5", md5_of(new), md5_of(damaged)),
            ("x-amz-checksum-sha256", sha256_of(new), sha256_of(damaged)),
        ):
            r = await c.put(opath(b, "k"), content=damaged, headers={header: declared})
            err = assert_error(r, 400, "checksum_mismatch")
            assert err["details"] == {"header": header, "declared": declared, "actual": actual}
        # Nothing happened to the key: no event, the old bytes, the same usage; a new key
        # refused likewise does not exist.
        r = await c.put(opath(b, "new"), content=damaged, headers={"Content-MD5": md5_of(new)})
        assert_error(r, 400, "checksum_mismatch")
        assert await object_events(shared_system.pool, b, "k") == events
        assert await object_events(shared_system.pool, b, "new") == []
        assert (await c.get(opath(b, "k"))).content == old
        assert_error(await c.get(opath(b, "new")), 404, "object_not_found")
        assert await usage() == counted


async def test_a_digest_that_cannot_be_checked_is_400_before_the_body_is_read(
    shared_system: System, object_body_reads: list[object]
) -> None:
    read = object_body_reads
    data = b"x" * 300_000
    bad: list[list[tuple[str, str]]] = [
        [("Content-MD5", "not base64!")],
        [("Content-MD5", b64(b"short"))],  # base64, but not 16 bytes
        [("Content-MD5", hashlib.md5(data).hexdigest())],  # hex, as S3 does not take it
        [("x-amz-checksum-sha256", md5_of(data))],  # an MD5's length
        [("x-amz-checksum-crc32", "AAAAAA==")],  # an algorithm Cairn does not compute
        [("x-amz-trailer", "x-amz-checksum-sha256")],  # a digest after the body: unchecked
        [("Content-MD5", md5_of(data)), ("Content-MD5", md5_of(data))],  # twice
    ]
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        for headers in bad:
            r = await c.put(opath(b, "refused"), content=data, headers=headers)
            err = assert_error(r, 400, "invalid_checksum")
            assert err["details"]["header"] == headers[0][0].lower(), err
        # S3's aws-chunked framing (SigV4 streaming, trailing checksums) is not decoded:
        # stored, it would become part of the object's bytes.
        r = await c.put(
            opath(b, "refused"),
            content=data,
            headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "9"},
        )
        assert assert_error(r, 415, "unsupported_media_type")["details"] == {
            "header": "content-encoding"
        }
        assert read == []  # not a byte of any body was read, so none was stored
        assert await object_events(shared_system.pool, b, "refused") == []
        # S3's word for how a checksum travels is not a checksum: no refusal.
        r = await c.put(
            opath(b, "fine"), content=data, headers={"x-amz-checksum-algorithm": "SHA256"}
        )
        assert r.status_code == 201, r.text


async def test_the_openapi_document_names_the_digest_headers(shared_system: System) -> None:
    async with shared_system.client(None) as c:
        doc = (await c.get("/schema/openapi.json")).json()
    put = doc["paths"]["/v1/buckets/{name}/objects/{key}"]["put"]
    headers = {p["name"]: p for p in put["parameters"] if p["in"] == "header"}
    assert "checksum_mismatch" in headers["Content-MD5"]["description"]
    assert "invalid_checksum" in headers["x-amz-checksum-sha256"]["description"]


async def test_a_digest_of_an_empty_or_a_chunked_body_and_two_that_disagree(
    shared_system: System,
) -> None:
    data = os.urandom(700_000)  # reads of both sizes: MD5 on the loop and in a thread

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: Transfer-Encoding
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        r = await c.put(opath(b, "empty"), content=b"", headers={"Content-MD5": md5_of(b"")})
        assert r.status_code == 201 and r.json()["size"] == 0, r.text
        r = await c.put(opath(b, "empty2"), content=b"", headers={"Content-MD5": md5_of(b"x")})
        assert_error(r, 400, "checksum_mismatch")
        both = {"content-md5": md5_of(data), "x-amz-checksum-sha256": sha256_of(data)}
        r = await c.put(opath(b, "chunked"), content=chunked(), headers=both)
        assert r.status_code == 201, r.text
        assert (await c.get(opath(b, "chunked"))).content == data
        # Each header is checked on its own: one right does not excuse the other.
        for header, wrong in (
            ("x-amz-checksum-sha256", sha256_of(b"other")),
            ("content-md5", md5_of(b"other")),
        ):
            r = await c.put(opath(b, "bad"), content=chunked(), headers={**both, header: wrong})
            err = assert_error(r, 400, "checksum_mismatch")
            assert err["details"]["header"] == header
        assert await object_events(shared_system.pool, b, "empty2") == []
        assert await object_events(shared_system.pool, b, "bad") == []


async def test_a_body_cut_off_with_a_digest_leaves_nothing(shared_system: System) -> None:
    """A PUT that declares its MD5 and ends early (the MD5 hashed in a worker thread at the
    time): no object, the old version served, and nothing of it held against later PUTs."""
    me = user()
    old, part = b"old bytes", os.urandom(1024 * 1024)
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        assert (await c.put(opath(b, "k"), content=old)).status_code == 201
        token = c.headers["authorization"]
    url = urlsplit(shared_system.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            f"PUT {opath(b, 'k')} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {token}\r\n"
            f"Content-MD5: {md5_of(part * 4)}\r\nContent-Length: {4 * len(part)}\r\n\r\n"
        ).encode()
        + part
    )
    await writer.drain()
    writer.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
    await reader.read()  # the server answers (or just closes); either way the PUT is over
    writer.close()
    async with shared_system.client(me) as c:
        assert (await c.get(opath(b, "k"))).content == old
        assert await object_events(shared_system.pool, b, "k") == ["FileCreated"]
        r = await c.put(opath(b, "k"), content=part, headers={"Content-MD5": md5_of(part)})
        assert r.status_code == 200, r.text
