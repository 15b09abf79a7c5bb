"""Serving GET and HEAD /v1/files/{id}/content through the whole system: ranges across
chunk boundaries, multipart/byteranges, conditionals, HEAD against GET for several stored
types, active content, 404 for others, and download counts reaching the read model."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.answers import user
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHUNK = 4096
DATA = os.urandom(5 * CHUNK + 123)  # six chunks, the last one short


async def upload(
    c: httpx.AsyncClient, data: bytes, name: str = "f.bin", content_type: str | None = None
) -> str:
    """Upload `data` in CHUNK-sized chunks and complete it; return the file id."""
    body: dict[str, Any] = {"file_name": name, "file_size": len(data), "chunk_size": CHUNK}
    if content_type is not None:
        body["content_type"] = content_type
    r = await c.post("/v1/uploads", json=body)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    for i in range(0, max(len(data), 1), CHUNK):
        if not data:
            break
        r = await c.put(f"/v1/uploads/{uid}/chunks/{i // CHUNK}", content=data[i : i + CHUNK])
        assert r.status_code == 201, r.text
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return str(r.json()["file_id"])


def parse_multipart(r: httpx.Response) -> list[tuple[str, str, bytes]]:
    """(Content-Type, Content-Range, bytes) of each part of a multipart/byteranges body."""
    ctype = r.headers["content-type"]
    assert ctype.startswith("multipart/byteranges; boundary=")
    boundary = ctype.split("boundary=", 1)[1].encode()
    body = r.content
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    inner = body[len(boundary) + 4 : -(len(boundary) + 8)]
    parts = []
    for raw in inner.split(b"\r\n--" + boundary + b"\r\n"):
        head, _, content = raw.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((fields["Content-Type"], fields["Content-Range"], content))
    return parts


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(shared_system: System) -> AsyncIterator[tuple[System, str, str]]:
    """(system, owner, file id) of DATA, uploaded once for the module."""
    me = user()
    async with shared_system.client(me) as c:
        fid = await upload(c, DATA)
    yield shared_system, me, fid


def url(fid: str) -> str:
    return f"/v1/files/{fid}/content"


async def test_full_download_with_every_header(served: tuple[System, str, str]) -> None:
    s, me, fid = served
    async with s.client(me) as c:
        r = await c.get(url(fid))
    assert r.status_code == 200 and r.content == DATA
    h = r.headers
    assert h["content-length"] == str(len(DATA))
    assert h["accept-ranges"] == "bytes"
    assert h["etag"] == f'"{hashlib.sha256(DATA).hexdigest()}"'
    assert h["last-modified"].endswith(" GMT")
    assert h["content-type"] == "application/octet-stream"
    assert h["content-disposition"] == 'inline; filename="f.bin"'
    assert h["x-content-type-options"] == "nosniff"
    assert "content-range" not in h


# Ranges chosen around the 4 KiB chunk boundaries: inside one chunk, across one boundary,
# across several, starting or ending exactly on one, suffix and open ranges, clamped ends.
N = len(DATA)
SINGLE = [
    ("bytes=0-0", 0, 1),
    ("bytes=10-99", 10, 100),
    ("bytes=4090-4105", 4090, 4106),
    ("bytes=4096-8191", 4096, 8192),
    ("bytes=4095-4096", 4095, 4097),
    ("bytes=100-20000", 100, 20001),
    ("bytes=-500", N - 500, N),
    ("bytes=-1", N - 1, N),
    ("bytes=-99999", 0, N),
    ("bytes=20000-", 20000, N),
    ("bytes=0-", 0, N),
    ("bytes=12000-999999999", 12000, N),
    ("bytes=0-10,5-4200", 0, 4201),  # coalesced into one: a single-part 206
]


@pytest.mark.parametrize(("header", "start", "end"), SINGLE)
async def test_single_ranges(
    served: tuple[System, str, str], header: str, start: int, end: int
) -> None:
    s, me, fid = served
    async with s.client(me) as c:
        r = await c.get(url(fid), headers={"Range": header})
    assert r.status_code == 206, r.text
    assert r.content == DATA[start:end]
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{N}"
    assert r.headers["content-length"] == str(end - start)
    assert r.headers["content-type"] == "application/octet-stream"


async def test_multiple_ranges_as_multipart(served: tuple[System, str, str]) -> None:
    s, me, fid = served
    async with s.client(me) as c:
        r = await c.get(url(fid), headers={"Range": "bytes=8000-8200, 0-9, -5"})
    assert r.status_code == 206
    assert r.headers["content-length"] == str(len(r.content))
    assert parse_multipart(r) == [
        ("application/octet-stream", f"bytes 8000-8200/{N}", DATA[8000:8201]),
        ("application/octet-stream", f"bytes 0-9/{N}", DATA[0:10]),
        ("application/octet-stream", f"bytes {N - 5}-{N - 1}/{N}", DATA[-5:]),
    ]


@pytest.mark.parametrize(
    "header", ["bytes=abc", "bytes=5-1", "items=0-1", "bytes=", "bytes 0-1", "bytes=0-1;2-3"]
)
async def test_malformed_range_is_ignored(served: tuple[System, str, str], header: str) -> None:
    s, me, fid = served
    async with s.client(me) as c:
        r = await c.get(url(fid), headers={"Range": header})
    assert r.status_code == 200 and r.content == DATA


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        (f"bytes={N}-", 416, "range_not_satisfiable"),
        ("bytes=-0", 416, "range_not_satisfiable"),
        ("bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(200)), 416, "too_many_ranges"),
        # 10,000 parts in under 32 KiB of header: refused as too many, not served.
        ("bytes=" + ",".join(["-1"] * 10_000), 416, "too_many_ranges"),
        # 10,000 distinct parts need ~90 KB: the server's header limit answers first.
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(10_000)), 431, "headers_too_large"),
    ],
)
async def test_unsatisfiable_and_absurd_ranges_are_4xx(
    served: tuple[System, str, str], header: str, status: int, code: str
) -> None:
    s, me, fid = served
    async with s.client(me) as c:
        r = await c.get(url(fid), headers={"Range": header})
    assert r.status_code == status, r.text[:300]
    if status == 416:
        assert r.headers["content-range"] == f"bytes */{N}"
    body = r.json()
    assert body["error"]["code"] == code and body["request_id"] == r.headers["x-request-id"]


async def test_conditionals(served: tuple[System, str, str]) -> None:
    s, me, fid = served
    async with s.client(me) as c:
        first = await c.get(url(fid))
        etag, lm = first.headers["etag"], first.headers["last-modified"]
        for method in ("GET", "HEAD"):
            r = await c.request(method, url(fid), headers={"If-None-Match": etag})
            assert r.status_code == 304 and r.content == b""
            assert r.headers["etag"] == etag and "content-length" not in r.headers
            r = await c.request(method, url(fid), headers={"If-Modified-Since": lm})
            assert r.status_code == 304
        r = await c.get(url(fid), headers={"If-None-Match": '"other", W/"x"'})
        assert r.status_code == 200 and r.content == DATA
        r = await c.get(url(fid), headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
        assert r.status_code == 200
        r = await c.get(url(fid), headers={"If-Match": etag, "Range": "bytes=0-3"})
        assert r.status_code == 206 and r.content == DATA[:4]
        for bad in ('"other"', "garbage", f"{etag[1:-1]}", f"W/{etag}"):
            r = await c.get(url(fid), headers={"If-Match": bad})
            assert r.status_code == 412, bad
            assert r.json()["error"]["code"] == "precondition_failed"
        r = await c.get(url(fid), headers={"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
        assert r.status_code == 412
        # If-Range: a matching validator keeps the range, a changed one gets everything.
        for validator, status in ((etag, 206), (lm, 206), ('"stale"', 200), ("junk", 200)):
            r = await c.get(url(fid), headers={"Range": "bytes=0-9", "If-Range": validator})
            assert r.status_code == status, validator
            assert r.content == (DATA[:10] if status == 206 else DATA)


TYPES = [
    ("application/octet-stream", "a.bin", b"\x00\x01binary", False),
    ("image/svg+xml", "a.svg", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', True),
    ("application/xhtml+xml", "a.xhtml", b"<html xmlns='http://www.w3.org/1999/xhtml'/>", True),
    ("text/html", "a.html", b"<script>alert(1)</script>", True),
    ("text/plain", "a.txt", b"just text", False),
    ("application/json", "a.json", b"{}", False),
    ("image/png", "a.png", b"\x89PNG\r\n\x1a\n", False),
    ("application/javascript", "a.js", b"alert(1)", True),
]


@pytest.mark.parametrize(("ctype", "name", "data", "active"), TYPES)
async def test_head_answers_what_get_would(
    shared_system: System, ctype: str, name: str, data: bytes, active: bool
) -> None:
    me = user()
    async with shared_system.client(me) as c:
        fid = await upload(c, data, name, ctype)
        for extra in ({}, {"If-None-Match": '"x"'}):
            get = await c.get(url(fid), headers=extra)
            head = await c.head(url(fid), headers=extra)
            assert get.status_code == head.status_code == 200
            assert get.content == data and head.content == b""
            strip = {"date", "x-request-id"}
            assert {k: v for k, v in get.headers.items() if k not in strip} == {
                k: v for k, v in head.headers.items() if k not in strip
            }
        assert get.headers["content-type"] == ctype
        assert get.headers["content-length"] == str(len(data))
        assert get.headers["x-content-type-options"] == "nosniff"
        csp = get.headers.get("content-security-policy", "")
        assert csp.startswith("sandbox") if active else csp == ""
        dl = await c.get(url(fid), params={"download": "1"})
        assert dl.headers["content-disposition"] == f'attachment; filename="{name}"'


async def test_head_ignores_range_as_rfc_9110_requires(served: tuple[System, str, str]) -> None:
    s, me, fid = served
    async with s.client(me) as c:
        r = await c.head(url(fid), headers={"Range": "bytes=0-9"})
    assert r.status_code == 200 and r.headers["content-length"] == str(N)


async def test_non_ascii_name_gets_rfc_8187_filename(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        fid = await upload(c, b"x", "résumé ü.txt", "text/plain")
        r = await c.get(url(fid), params={"download": "1"})
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"resume u.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%C3%BC.txt"
    )


async def test_empty_file(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        r = await c.post("/v1/uploads", json={"file_name": "e", "file_size": 0})
        assert r.status_code == 201, r.text
        done = await c.post(f"/v1/uploads/{r.json()['id']}/complete")
        assert done.status_code == 200, done.text
        fid = done.json()["file_id"]
        r = await c.get(url(fid))
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "0")
        r = await c.get(url(fid), headers={"Range": "bytes=0-"})
        assert r.status_code == 416 and r.headers["content-range"] == "bytes */0"
        r = await c.get(url(fid), headers={"Range": "bytes=-5"})
        assert r.status_code == 200 and r.content == b""


async def test_other_users_and_anonymous_get_404(served: tuple[System, str, str]) -> None:
    s, _, fid = served
    async with s.client(user()) as other, s.client(None) as anon:
        for method in ("GET", "HEAD"):
            r = await other.request(method, url(fid), headers={"Range": "bytes=0-1"})
            assert r.status_code == 404
            missing = await other.request(method, url(str(uuid.uuid4())))
            assert missing.status_code == 404
            assert (await anon.request(method, url(fid))).status_code == 401
        assert r.headers["content-length"] == missing.headers["content-length"]
    async with s.client("root", admin=True) as admin:
        assert (await admin.get(url(fid), headers={"Range": "bytes=0-1"})).content == DATA[:2]


async def test_cors_never_pairs_a_wildcard_with_credentials(
    served: tuple[System, str, str],
) -> None:
    s, me, fid = served
    async with s.client(me) as c:
        r = await c.get(url(fid), headers={"Origin": "https://evil.example"})
        pre = await c.options(
            url(fid),
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, range",
            },
        )
    for resp in (r, pre):
        assert resp.headers.get("access-control-allow-credentials") is None
        assert resp.headers.get("access-control-allow-origin") in (None, "*")
    assert "content-range" in r.headers["access-control-expose-headers"].lower()


# ---- download counts --------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def counting(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, download_flush_interval=0.2
    ) as s:
        yield s


async def test_downloads_reach_the_read_model(counting: System) -> None:
    me = user()
    async with counting.client(me) as c:
        fid = await upload(c, DATA)
        for _ in range(5):
            assert (await c.get(url(fid))).status_code == 200
        assert (await c.get(url(fid), headers={"Range": "bytes=0-99"})).status_code == 206
        # Not downloads: HEAD, 304, 412, 416.
        await c.head(url(fid))
        etag = (await c.head(url(fid))).headers["etag"]
        assert (await c.get(url(fid), headers={"If-None-Match": etag})).status_code == 304
        assert (await c.get(url(fid), headers={"If-Match": '"x"'})).status_code == 412
        assert (await c.get(url(fid), headers={"Range": f"bytes={N}-"})).status_code == 416

    async def counted() -> Any:
        row = await counting.pool.fetchrow(
            "SELECT downloads, bytes_sent FROM readmodel.file_downloads WHERE file_id = $1",
            uuid.UUID(fid),
        )
        return row if row and row["downloads"] >= 6 else None

    row = await wait_until(counted)
    assert (row["downloads"], row["bytes_sent"]) == (6, 5 * N + 100)
    # The file's metadata shows the flushed counts.
    async with counting.client(me) as c:
        info = (await c.get(f"/v1/files/{fid}")).json()
    assert info["downloads"] == 6 and info["bytes_sent"] == 5 * N + 100


async def test_no_write_per_download_and_a_graceful_stop_flushes(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, download_flush_interval=3600.0
    ) as s:
        me = user()
        async with s.client(me) as c:
            fid = await upload(c, DATA)
            for _ in range(3):
                assert (await c.get(url(fid), headers={"Range": "bytes=0-9"})).status_code == 206
        rows = "SELECT downloads, bytes_sent FROM readmodel.file_downloads WHERE file_id = $1"
        # Served, counted in memory, and not written: the next flush is an hour away.
        assert await s.pool.fetchrow(rows, uuid.UUID(fid)) is None
        await s.stop("api")  # a graceful stop flushes what the process holds
        row = await s.pool.fetchrow(rows, uuid.UUID(fid))
        assert (row["downloads"], row["bytes_sent"]) == (3, 30)


async def test_type_detected_when_the_client_gave_none(shared_system: System) -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(CHUNK * 2)  # the signature is in chunk 0 only
    async with shared_system.client(user()) as c:
        fid = await upload(c, png, "photo")
        assert (await c.get(f"/v1/files/{fid}")).json()["content_type"] == "image/png"
        r = await c.head(url(fid))
        assert r.headers["content-type"] == "image/png"
        assert "content-security-policy" not in r.headers
        page = await upload(c, b"<p>hi</p>", "page.html")
        r = await c.get(url(page))
        assert r.headers["content-type"] == "text/html"
        assert r.headers["content-security-policy"].startswith("sandbox")
        # A declared type is the client's word, and is kept.
        declared = await upload(c, png, "photo", "image/x-mine")
        assert (await c.head(url(declared))).headers["content-type"] == "image/x-mine"


@pytest.mark.parametrize("stored", ['text/plain; a="\\\r"', 'text/plain; a="\u4e2d"'])
async def test_a_stored_type_no_header_can_carry_is_served_as_octet_stream(
    shared_system: System, stored: str
) -> None:
    # The upload accepts any short string as the type; as a header this one was a dropped
    # connection (a CR: uvicorn refuses it) or a 500 (not Latin-1), for GET and ranges.
    async with shared_system.client(user()) as c:
        fid = await upload(c, b"hello world", "x.txt", stored)
        assert (await c.get(f"/v1/files/{fid}")).json()["content_type"] == stored
        r = await c.get(url(fid))
        assert r.status_code == 200 and r.content == b"hello world"
        assert r.headers["content-type"] == "application/octet-stream"
        r = await c.get(url(fid), headers={"Range": "bytes=0-1,3-4"})
        assert r.status_code == 206
        assert [p[0] for p in parse_multipart(r)] == ["application/octet-stream"] * 2


async def test_date_is_current_and_never_before_last_modified(shared_system: System) -> None:
    """A file read the moment it is stored: its Last-Modified is not after the answer's
    Date (RFC 9110 §8.8.2.1; uvicorn's once-a-second Date could lag it), and every answer,
    JSON too, carries one Date of the second it was sent."""
    me = user()
    async with shared_system.client(me) as c:
        for _ in range(3):
            fid = await upload(c, os.urandom(100))
            before = int(time.time())
            content = await c.get(url(fid))
            meta = await c.get(f"/v1/files/{fid}")
            after = time.time()
            for r in (content, meta):
                assert r.status_code == 200, r.text
                (date,) = r.headers.get_list("date")
                assert before <= parsedate_to_datetime(date).timestamp() <= after
            modified = parsedate_to_datetime(content.headers["last-modified"])
            assert modified <= parsedate_to_datetime(content.headers["date"])


BIG_CHUNK = 256 * 1024  # over SMALL_BODY (streamed) and CAIRN_BLOB_INLINE_BYTES (a file)


async def _lose_chunk(system: System, data: bytes, index: int) -> str:
    """Delete chunk `index` of `data` from the system's blob store (a lost disk); its sha256."""
    from bus.blobs.factory import open_blob_store

    sha = hashlib.sha256(data[index * BIG_CHUNK : (index + 1) * BIG_CHUNK]).hexdigest()
    store = open_blob_store(system.settings.blobs_url, system.settings)
    try:
        await store.delete(sha)
        assert not await store.exists(sha)
    finally:
        await store.close()
    return sha


async def test_a_lost_blob_is_a_named_500_or_a_logged_cut(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README "Operating": a file whose blob is gone answers 500 `blob_missing` naming it,
    with an error line; before, a streamed answer went out as 200 and stopped at once,
    with nothing in the log. A blob lost further in cuts the 200 short, logged the same."""
    import structlog
    from structlog.testing import capture_logs

    from api import errors

    monkeypatch.setattr(errors, "log", structlog.get_logger(errors.__name__))
    data = os.urandom(3 * BIG_CHUNK)
    async with shared_system.client(user()) as c:
        first_lost = await upload_in(c, data)
        last_lost = await upload_in(c, data[::-1])
        sha = await _lose_chunk(shared_system, data, 0)
        with capture_logs() as logs:
            r = await c.get(url(first_lost), headers={"X-Request-ID": "rid-lost-first"})
        assert r.status_code == 500, r.text
        assert r.json()["error"]["code"] == "blob_missing"
        assert r.json()["error"]["details"] == {"sha256": sha}
        (line,) = [e for e in logs if e["event"] == "blob missing from the store"]
        assert (line["sha256"], line["request_id"]) == (sha, "rid-lost-first")
        # The chunks still there still serve: a range reads only what it overlaps.
        r = await c.get(url(first_lost), headers={"Range": f"bytes={2 * BIG_CHUNK}-"})
        assert r.status_code == 206 and r.content == data[2 * BIG_CHUNK :]

        sha = await _lose_chunk(shared_system, data[::-1], 2)
        with capture_logs() as logs:
            async with c.stream(
                "GET", url(last_lost), headers={"X-Request-ID": "rid-lost-last"}
            ) as r:
                assert r.status_code == 200  # the first chunk went out before the loss
                with pytest.raises(httpx.HTTPError):
                    await r.aread()
        (line,) = [e for e in logs if e["event"] == "blob missing from the store"]
        assert (line["sha256"], line["request_id"]) == (sha, "rid-lost-last")


async def _rot_chunk(system: System, data: bytes, index: int, rotten: bytes) -> str:
    """Replace chunk `index` of `data` in the system's (local) blob store by `rotten`."""
    from bus.blobs.local import LocalBlobStore

    sha = hashlib.sha256(data[index * BIG_CHUNK : (index + 1) * BIG_CHUNK]).hexdigest()
    local = LocalBlobStore(Path(system.settings.blobs_url.removeprefix("file://")))
    local.path_of(sha).write_bytes(rotten)
    return sha


async def test_rotten_bytes_on_disk_are_a_named_500_never_a_200(shared_system: System) -> None:
    """A chunk whose bytes changed on disk (a flipped bit; a truncation) was served as a 200
    of the wrong bytes under the right ETag, or a bare 500 internal_error; now it is
    500 `blob_corrupt` naming it, as README "Operating" says."""
    data = os.urandom(2 * BIG_CHUNK)
    async with shared_system.client(user()) as c:
        flipped, truncated = await upload_in(c, data), await upload_in(c, data[::-1])
        chunk = bytearray(data[:BIG_CHUNK])
        chunk[BIG_CHUNK // 3] ^= 0x10
        sha = await _rot_chunk(shared_system, data, 0, bytes(chunk))
        r = await c.get(url(flipped))
        assert r.status_code == 500, r.text
        assert r.json()["error"] == {
            "code": "blob_corrupt",
            "message": r.json()["error"]["message"],
            "details": {"sha256": sha},
        }
        sha = await _rot_chunk(shared_system, data[::-1], 1, data[::-1][BIG_CHUNK:-10])
        r = await c.get(url(truncated), headers={"Range": f"bytes={BIG_CHUNK}-"})
        assert r.status_code == 500, r.text
        assert r.json()["error"]["code"] == "blob_corrupt"
        assert r.json()["error"]["details"] == {"sha256": sha}


async def upload_in(c: httpx.AsyncClient, data: bytes) -> str:
    """`upload` with BIG_CHUNK chunks; the file id."""
    r = await c.post(
        "/v1/uploads",
        json={"file_name": "big.bin", "file_size": len(data), "chunk_size": BIG_CHUNK},
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    for i in range(0, len(data), BIG_CHUNK):
        r = await c.put(
            f"/v1/uploads/{uid}/chunks/{i // BIG_CHUNK}", content=data[i : i + BIG_CHUNK]
        )
        assert r.status_code == 201, r.text
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return str(r.json()["file_id"])
