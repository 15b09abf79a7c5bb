"""Hostile stored headers on an upload's creation (POST /v1/uploads `headers`, tus
Upload-Metadata keys): every value or name the rule refuses is 400 in the one error shape
and creates nothing; what is accepted goes out on GET, HEAD, 206 and 304 as one header
line each, never split into two, never added to by a partial upload's metadata."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import httpx
import pytest

from domain.files.headers import MAX_HEADER_BYTES
from domain.files.keys import object_file_id
from tests.api.answers import assert_error, make_bucket, opath, user
from tests.api.routes.test_objects_headers import raw_get
from tests.api.routes.test_objects_uploads import native_upload
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}
BODY = gzip.compress(b"hostile\n" * 100)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def uploads_of(s: System, owner: str) -> int:
    """The caller's uploads as the event store has them (no read model lag)."""
    return int(
        await s.pool.fetchval(
            "SELECT count(*) FROM eventstore.events"
            " WHERE event_type = 'UploadInitiated' AND owner = $1",
            owner,
        )
    )


BAD_VALUES = [
    "max-age=1\r\nSet-Cookie: a=1",  # response splitting
    "max-age=1\nX-Injected: 1",
    "max-age=1\rX: 1",
    "a\x00b",
    "a\tb",
    "a\x7fb",
    "a\x85b",  # C1 NEL
    "caf\u00e9",  # a byte over 0x7F as Latin-1 would be
    "a\u2028b",
    "x" * (MAX_HEADER_BYTES + 1),
]


@pytest.mark.parametrize("value", BAD_VALUES, ids=range(len(BAD_VALUES)))
async def test_a_native_value_the_rule_refuses_is_400_naming_it(
    shared_system: System, value: str
) -> None:
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        body = {"file_name": "f", "file_size": 1, "bucket": b, "key": "k"}
        r = await c.post("/v1/uploads", json={**body, "headers": {"Cache-Control": value}})
        if "\x00" in value:  # JSON text with a NUL is refused for every field, first
            assert_error(r, 400, "invalid_headers")
        else:
            err = assert_error(r, 400, "invalid_header")
            assert err["details"]["header"] == "cache-control"
    assert await uploads_of(shared_system, me) == 0


BAD_SHAPES: list[Any] = [
    {"": "x"},
    {"Content-Type": "text/html"},  # not one of the five (it has its own field)
    {"x-amz-meta-a": "1"},
    {"Cache-Control ": "no-store"},  # a name with a space
    {"Cache-Control\r\nX-Injected": "1"},
    {"EXPIRES": "0", "Expires": "1", "expires": "2"},
]


@pytest.mark.parametrize("headers", BAD_SHAPES, ids=range(len(BAD_SHAPES)))
async def test_a_native_name_outside_the_five_or_repeated_is_400(
    shared_system: System, headers: dict[str, str]
) -> None:
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        body = {"file_name": "f", "file_size": 1, "bucket": b, "key": "k", "headers": headers}
        err = assert_error(await c.post("/v1/uploads", json=body), 400, "invalid_header")
        assert len(err["details"]["header"]) <= 64  # (JSON: a CR in it is escaped)
    assert await uploads_of(shared_system, me) == 0


@pytest.mark.parametrize(
    "headers",
    [[], "no-store", {"cache-control": 1}, {"cache-control": None}, {"expires": ["0"]}],
    ids=["list", "string", "number", "null", "array"],
)
async def test_headers_that_are_no_object_of_strings_are_400(
    shared_system: System, headers: Any
) -> None:
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        body = {"file_name": "f", "file_size": 1, "bucket": b, "key": "k", "headers": headers}
        r = await c.post("/v1/uploads", json=body)
        assert r.status_code == 400, r.text
        assert set(r.json()) == {"error", "request_id"}
    assert await uploads_of(shared_system, me) == 0


async def test_a_lone_surrogate_in_json_is_400_not_500(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        for field in ('"headers": {"cache-control": "a\\ud800"}', '"key": "k\\ud800"'):
            raw = f'{{"file_name": "f", "file_size": 1, "bucket": "{b}", "key": "k", {field}}}'
            r = await c.post(
                "/v1/uploads", content=raw, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 400, r.text
            assert set(r.json()) == {"error", "request_id"}
    assert await uploads_of(shared_system, me) == 0


async def test_the_longest_value_is_kept_and_an_empty_one_is_not_stored(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        longest = "x" * MAX_HEADER_BYTES
        sent = {"Content-Language": longest, "Cache-Control": ""}
        r = await native_upload(c, b"x", bucket=b, key="k", headers=sent)
        assert r.status_code == 200, r.text
        f = (await c.get(f"/v1/files/{object_file_id(b, 'k')}")).json()
        assert f["headers"] == {"content-language": longest}


def tus_meta(**kv: bytes | None) -> str:
    return ",".join(k if v is None else f"{k} {b64(v)}" for k, v in kv.items())


TUS_REFUSALS = {
    "crlf": ("cache-control " + b64(b"a\r\nSet-Cookie: x=1"), "invalid_header"),
    "nul": ("expires " + b64(b"a\x00"), "invalid_header"),
    "non-ascii": ("content-language " + b64("fran\u00e7ais".encode()), "invalid_header"),
    "over-long": ("content-disposition " + b64(b"x" * (MAX_HEADER_BYTES + 1)), "invalid_header"),
    "twice-in-two-cases": (
        f"cache-control {b64(b'no-store')},Cache-Control {b64(b'no-cache')}",
        "invalid_header",
    ),
    "twice-same-case": (
        f"cache-control {b64(b'no-store')},cache-control {b64(b'no-cache')}",
        "invalid_metadata",
    ),
    "invalid-base64": ("cache-control no-store!", "invalid_metadata"),
    "base64-of-no-utf8": ("cache-control " + b64(b"\xff\xfe"), "invalid_metadata"),
}


@pytest.mark.parametrize("case", list(TUS_REFUSALS))
async def test_a_tus_creation_with_a_bad_stored_header_is_400_and_creates_nothing(
    shared_system: System, case: str
) -> None:
    me = user()
    extra, code = TUS_REFUSALS[case]
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        md = tus_meta(filename=b"a", bucket=b.encode(), key=b"k") + "," + extra
        r = await c.post(
            "/v1/tus", headers={**OCTETS, "Upload-Length": "1", "Upload-Metadata": md}, content=b"x"
        )
        assert_error(r, 400, code)
        assert "location" not in r.headers
    assert await uploads_of(shared_system, me) == 0


async def test_a_tus_key_without_a_value_is_no_stored_header(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        md = tus_meta(bucket=b.encode(), key=b"k", **{"cache-control": None, "Expires": None})
        r = await c.post(
            "/v1/tus", headers={**OCTETS, "Upload-Length": "1", "Upload-Metadata": md}, content=b"x"
        )
        assert r.status_code == 201, r.text
        f = (await c.get(f"/v1/files/{object_file_id(b, 'k')}")).json()
        assert f["headers"] == {} and f["metadata"] == {}


async def test_a_final_upload_has_its_own_headers_never_its_partials(
    shared_system: System,
) -> None:
    """The final's creation names the object and its headers; a partial's metadata (even
    naming the same key with other headers) never reaches the object."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        urls = []
        half = len(BODY) // 2
        for piece in (BODY[:half], BODY[half:]):
            md = tus_meta(
                bucket=b.encode(),
                key=b"k",
                **{"cache-control": b"no-store", "content-disposition": b"attachment"},
            )
            r = await c.post(
                "/v1/tus",
                headers={
                    **OCTETS,
                    "Upload-Concat": "partial",
                    "Upload-Length": str(len(piece)),
                    "Upload-Metadata": md,
                },
                content=piece,
            )
            assert r.status_code in (201, 400), r.text
            if r.status_code == 400:  # refusing them is as good as ignoring them
                assert set(r.json()) == {"error", "request_id"}
                r = await c.post(
                    "/v1/tus",
                    headers={
                        **OCTETS,
                        "Upload-Concat": "partial",
                        "Upload-Length": str(len(piece)),
                    },
                    content=piece,
                )
                assert r.status_code == 201, r.text
            urls.append(r.headers["location"])
        md = tus_meta(bucket=b.encode(), key=b"k", **{"content-encoding": b"gzip"})
        r = await c.post(
            "/v1/tus",
            headers={**TUS, "Upload-Concat": "final;" + " ".join(urls), "Upload-Metadata": md},
        )
        assert r.status_code == 201, r.text
        f = (await c.get(f"/v1/files/{object_file_id(b, 'k')}")).json()
        assert f["headers"] == {"content-encoding": "gzip"}
        got, raw = await raw_get(c, opath(b, "k"))
        assert raw == BODY and "no-store" not in got.headers.get("cache-control", "")
        assert (
            "content-disposition" not in got.headers
            or "attachment" not in (got.headers["content-disposition"])
        )


FIVE = {
    "Cache-Control": "public, max-age=60",
    "Content-Disposition": 'attachment; filename="a\\"b.txt"',
    "Content-Encoding": "gzip",
    "Content-Language": "en, fr",
    "Expires": "Thu, 01 Dec 2044 16:00:00 GMT",
}


def lines_of(r: httpx.Response, name: str) -> list[str]:
    return [v.decode() for k, v in r.headers.raw if k.decode().lower() == name.lower()]


async def test_get_head_206_and_304_answer_each_stored_header_once(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        r = await native_upload(c, BODY, bucket=b, key="k", headers=FIVE)
        assert r.status_code == 200, r.text
        p = opath(b, "k")
        got, _ = await raw_get(c, p)
        assert got.status_code == 200
        for name, value in FIVE.items():
            assert lines_of(got, name) == [value], name
        etag = got.headers["etag"]
        head = await c.head(p)
        for name, value in FIVE.items():
            assert lines_of(head, name) == [value], name
        part, raw = await raw_get(c, p, {"Range": "bytes=0-9"})
        assert part.status_code == 206 and raw == BODY[:10]
        for name, value in FIVE.items():
            assert lines_of(part, name) == [value], name
        nm, _ = await raw_get(c, p, {"If-None-Match": etag})
        assert nm.status_code == 304
        assert lines_of(nm, "Cache-Control") == [FIVE["Cache-Control"]]
        assert lines_of(nm, "Expires") == [FIVE["Expires"]]
        for name in ("Content-Disposition", "Content-Encoding", "Content-Language"):
            assert lines_of(nm, name) == [], name
        bad, _ = await raw_get(c, p, {"Range": "bytes=99999-"})
        assert bad.status_code == 416
        for name, value in FIVE.items():
            assert value not in lines_of(bad, name), name
