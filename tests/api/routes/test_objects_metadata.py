"""S3 user metadata on objects through the whole system: `X-Amz-Meta-<name>` headers on a PUT
become the object's metadata (names lowercased, repeated headers joined with ","), GET and
HEAD answer them as `x-amz-meta-<name>` headers (200 and 206, not 304), an overwrite
replaces them, bad metadata is 400 `invalid_metadata` before a byte of the body is read,
a signed PUT may carry them, a move keeps them, and metadata that cannot be a header
(set through PATCH /v1/files) is left out of the headers without breaking the answer."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.answers import assert_error, make_bucket, opath, user
from tests.api.routes.test_objects import object_events
from tests.api.tasks_helpers import finished, start
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


def amz_meta(r: httpx.Response) -> dict[str, str]:
    """The answer's x-amz-meta-* headers, by name after the prefix (repeats joined)."""
    out: dict[str, str] = {}
    for k, v in r.headers.multi_items():
        if k.lower().startswith("x-amz-meta-"):
            name = k.lower()[len("x-amz-meta-") :]
            out[name] = f"{out[name]},{v}" if name in out else v
    return out


async def test_put_metadata_round_trips_to_head_get_and_the_file_view(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "photos/cat.txt")
        headers = [
            ("X-Amz-Meta-Color", "blue"),
            ("x-amz-meta-Owner-Name", "Ann Smith"),
            ("X-AMZ-META-TAG", "a"),
            ("x-amz-meta-tag", "b"),  # repeated: joined with "," as S3 does
            ("X-Amz-Meta-Empty", ""),
            ("X-Amz-Meta-Spaced", "inner  space"),
            ("Content-Type", "text/plain"),
        ]
        r = await c.put(p, content=b"meow", headers=headers)
        assert r.status_code == 201, r.text
        want = {
            "color": "blue",
            "owner-name": "Ann Smith",
            "tag": "a,b",
            "empty": "",
            "spaced": "inner  space",
        }
        assert r.json()["metadata"] == want
        f = await c.get(f"/v1/files/{r.json()['id']}")
        assert f.status_code == 200 and f.json()["metadata"] == want

        h = await c.head(p)
        assert h.status_code == 200 and amz_meta(h) == want
        g = await c.get(p)
        assert g.status_code == 200 and g.content == b"meow" and amz_meta(g) == want
        rr = await c.get(p, headers={"Range": "bytes=1-2"})
        assert rr.status_code == 206 and rr.content == b"eo" and amz_meta(rr) == want
        # 304 carries no representation metadata (RFC 9110 §15.4.5), these included.
        nm = await c.get(p, headers={"If-None-Match": g.headers["etag"]})
        assert nm.status_code == 304 and amz_meta(nm) == {}
        # A browser on another origin may read them (CORS expose list).
        o = await c.get(p, headers={"Origin": "https://app.example"})
        exposed = {x.strip().lower() for x in o.headers["access-control-expose-headers"].split(",")}
        assert "*" in exposed and "etag" in exposed


async def test_an_overwrite_replaces_the_metadata(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "k")
        r = await c.put(p, content=b"1", headers={"X-Amz-Meta-A": "1", "X-Amz-Meta-B": "2"})
        assert r.status_code == 201 and r.json()["metadata"] == {"a": "1", "b": "2"}
        r = await c.put(p, content=b"2", headers={"X-Amz-Meta-B": "3"})
        assert r.status_code == 200 and r.json()["metadata"] == {"b": "3"}
        assert amz_meta(await c.head(p)) == {"b": "3"}
        # S3: a PUT without x-amz-meta-* headers leaves the new version with none.
        r = await c.put(p, content=b"3")
        assert r.status_code == 200 and r.json()["metadata"] == {}
        h = await c.head(p)
        assert h.status_code == 200 and amz_meta(h) == {}
        assert (await c.get(f"/v1/files/{r.json()['id']}")).json()["metadata"] == {}


async def test_bad_metadata_is_400_before_the_body_is_read(
    shared_system: System, object_body_reads: list[object]
) -> None:
    read = object_body_reads
    me = user()
    bad: list[dict[str, Any]] = [
        # Past 8 KiB of names and values (UTF-8 bytes), in several headers.
        {f"X-Amz-Meta-Part{i}": "v" * 1500 for i in range(6)},
        {"X-Amz-Meta-Name": "caf\u00e9".encode()},  # not ASCII: refused, not guessed
        {"X-Amz-Meta-": "no name"},
        {"X-Amz-Meta-" + "n" * 256: "name too long"},
    ]
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        usage = (await c.get(f"/v1/buckets/{b}")).json()["usage"]
        for headers in bad:
            r = await c.put(opath(b, "refused"), content=b"x" * 300_000, headers=headers)
            err = assert_error(r, 400, "invalid_metadata")
            assert err["details"]["max_bytes"] == 8192, err
        assert read == []  # not a byte of any body was read, so none was stored
        assert await object_events(shared_system.pool, b, "refused") == []
        assert_error(await c.get(opath(b, "refused")), 404, "object_not_found")
        held = await shared_system.pool.fetchval(
            "SELECT count(*) FROM api.quota_reservations WHERE owner = $1", me
        )
        assert held == 0
        assert (
            (await c.get(f"/v1/buckets/{b}")).json()["usage"]
            == usage
            == {
                "objects": 0,
                "bytes": 0,
            }
        )
        # Right at the limit is fine: 8 KiB of names and values.
        fits = {"X-Amz-Meta-Big": "v" * (8192 - len("big"))}
        r = await c.put(opath(b, "fits"), content=b"x", headers=fits)
        assert r.status_code == 201, r.text
        assert read != []


async def test_a_raw_request_with_a_non_ascii_value_is_refused(shared_system: System) -> None:
    """Bytes past ASCII reach the server as they are (httptools takes obs-text): still 400,
    never stored as latin-1 mojibake."""
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        token = c.headers["authorization"]
    url = urlsplit(shared_system.url)
    p = opath(b, "raw")
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        f"PUT {p} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {token}\r\n".encode()
        + "X-Amz-Meta-City: Zürich\r\n".encode()
        + b"Content-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"invalid_metadata"' in answer
    assert await object_events(shared_system.pool, b, "raw") == []


async def test_a_signed_put_may_carry_metadata(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "signed.txt")
        r = await c.post(f"{p}/signed-url", json={"method": "PUT", "expires_in": 300})
        assert r.status_code == 200, r.text
        parts = urlsplit(r.json()["url"])
        signed = f"{parts.path}?{parts.query}"
        async with shared_system.client(None) as anon:
            # Bad metadata: refused before anything is stored, so the URL is still unused.
            bad = await anon.put(signed, content=b"x", headers={"X-Amz-Meta-": "v"})
            assert_error(bad, 400, "invalid_metadata")
            r = await anon.put(
                signed, content=b"via url", headers={"X-Amz-Meta-Source": "presigned"}
            )
            assert r.status_code == 201, r.text
            assert r.json()["metadata"] == {"source": "presigned"}
        h = await c.head(p)
        assert h.status_code == 200 and amz_meta(h) == {"source": "presigned"}


async def test_a_move_and_a_copy_keep_the_metadata(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b1, b2 = await make_bucket(c), await make_bucket(c)
        meta = {"X-Amz-Meta-Kind": "report", "X-Amz-Meta-Year": "2026"}
        want = {"kind": "report", "year": "2026"}
        oid = (await c.put(opath(b1, "a.txt"), content=b"data", headers=meta)).json()["id"]
        r = await c.patch(f"/v1/files/{oid}", json={"key": "b.txt"})
        assert r.status_code == 200 and r.json()["metadata"] == want, r.text
        assert amz_meta(await c.head(opath(b1, "b.txt"))) == want
        r = await c.patch(f"/v1/files/{r.json()['id']}", json={"bucket": b2})
        assert r.status_code == 200 and r.json()["metadata"] == want, r.text
        assert amz_meta(await c.get(opath(b2, "b.txt"))) == want
        moved = r.json()["id"]

        # The copy task: the copy is a file with the source's metadata.
        tid = await start(c, {"type": "copy", "params": {"files": [moved], "to": {"bucket": b1}}})
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t
        copy = t["results"][0]["result"]
        assert (await c.get(f"/v1/files/{copy}")).json()["metadata"] == want
        # The move task: the same, and the source is gone.
        b3 = await make_bucket(c)
        tid = await start(c, {"type": "move", "params": {"files": [copy], "to": {"bucket": b3}}})
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t.get("error")
        moved_file = t["results"][0]["result"]
        assert (await c.get(f"/v1/files/{moved_file}")).json()["metadata"] == want
        assert (await c.get(f"/v1/files/{copy}")).status_code == 404


async def test_metadata_that_cannot_be_a_header_does_not_break_reads(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "odd")
        oid = (await c.put(opath(b, "odd"), content=b"odd bytes")).json()["id"]
        metadata = {
            "fine": "plain value",
            "Mixed-Case": "sent lowercased",
            "unicode": "Zürich ✓",
            "newline": "two\r\nlines",
            "tab\tname": "x",
            "spaced name": "x",
            "ü-name": "x",
            "padded": " x ",  # a header would lose the spaces: left out, not altered
            "Twice": "1",
            "twice": "2",  # one header name for two keys: neither is sent
        }
        r = await c.patch(f"/v1/files/{oid}", json={"metadata": metadata})
        assert r.status_code == 200, r.text
        for got in (
            await c.get(p),
            await c.head(p),
            await c.get(p, headers={"Range": "bytes=0-2"}),
        ):
            assert got.status_code in (200, 206), got.text
            assert amz_meta(got) == {"fine": "plain value", "mixed-case": "sent lowercased"}
        assert (await c.get(p)).content == b"odd bytes"
        assert (await c.get(f"/v1/files/{oid}")).json()["metadata"] == metadata


async def test_the_openapi_document_describes_the_metadata_headers(shared_system: System) -> None:
    async with shared_system.client(None) as c:
        doc = (await c.get("/schema/openapi.json")).json()
    item = doc["paths"]["/v1/buckets/{name}/objects/{key}"]
    assert "X-Amz-Meta-<name>" in item["put"]["description"]
    assert "invalid_metadata" in item["put"]["description"]
    for method in ("get", "head"):
        assert "x-amz-meta-<name>" in item[method]["description"]
