"""An object's stored headers (S3's system metadata: Cache-Control, Content-Disposition,
Content-Encoding, Content-Language, Expires) through the whole system: a PUT stores them,
GET and HEAD answer them as stored (200, 206; Cache-Control and Expires on 304), a gzip
object's bytes come back as stored (ranges too), an overwrite without them drops them,
CopyObject COPY and a move keep the source's and REPLACE takes the request's, bad ones are 400
`invalid_header` with nothing stored, a stored Content-Disposition gives way to
`?download=1`, and the listings (files and objects) show them."""

from __future__ import annotations

import asyncio
import gzip
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.api.answers import assert_error, make_bucket, opath, user
from tests.api.documented import assert_documented
from tests.api.routes.test_objects import object_events
from tests.api.tasks_helpers import upload
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

SENT = {
    "Cache-Control": "public, max-age=3600",
    "Content-Disposition": 'attachment; filename="report 2026.css"',
    "Content-Encoding": "gzip",
    "Content-Language": "en-GB",
    "Expires": "Wed, 21 Oct 2037 07:28:00 GMT",
}
STORED = {k.lower(): v for k, v in SENT.items()}
DEFAULT_CACHE = "private, max-age=0, must-revalidate"  # api/http/content.py


def served(r: httpx.Response) -> dict[str, str]:
    """The five as the answer carries them, by lower-case name."""
    return {k: r.headers[k] for k in STORED if k in r.headers}


async def raw_get(
    c: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, bytes]:
    """GET without httpx decoding the body (it would gunzip a gzip answer)."""
    async with c.stream("GET", path, headers=headers) as r:
        return r, b"".join([piece async for piece in r.aiter_raw()])


async def test_put_stores_the_five_and_get_head_answer_them(shared_system: System) -> None:
    text = b"body { color: red }\n" * 200
    data = gzip.compress(text)
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "site/app.css")
        r = await c.put(p, content=data, headers={**SENT, "Content-Type": "text/css"})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["headers"] == STORED and made["content_type"] == "text/css"
        assert made["size"] == len(data)  # the gzip bytes, not what they decode to

        h = await c.head(p)
        assert h.status_code == 200 and served(h) == STORED
        assert h.headers["content-length"] == str(len(data))

        g, body = await raw_get(c, p)
        assert g.status_code == 200 and served(g) == STORED
        assert body == data  # never decoded by Cairn
        assert g.headers["etag"] == made["etag"]
        # A client that honours Content-Encoding gets the text back.
        assert gzip.decompress(body) == text

        # A range is of the stored (gzip) bytes, as S3 answers it.
        rr, part = await raw_get(c, p, {"Range": "bytes=0-9"})
        assert rr.status_code == 206 and part == data[:10] and served(rr) == STORED
        assert rr.headers["content-range"] == f"bytes 0-9/{len(data)}"

        # 304: only Cache-Control and Expires (RFC 9110 §15.4.5).
        nm = await c.get(p, headers={"If-None-Match": made["etag"]})
        assert nm.status_code == 304
        assert served(nm) == {
            "cache-control": STORED["cache-control"],
            "expires": STORED["expires"],
        }
        # 412: none of them; the default cache policy of an error.
        pf = await c.get(p, headers={"If-Match": '"' + "0" * 64 + '"'})
        assert pf.status_code == 412 and "content-encoding" not in pf.headers

        # The file view of the same version serves them too (one serving path).
        fr, fbody = await raw_get(c, f"/v1/files/{made['id']}/content")
        assert fr.status_code == 200 and fbody == data and served(fr) == STORED


async def test_without_stored_headers_the_defaults_stay(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "plain.txt")
        r = await c.put(p, content=b"plain", headers={"Content-Type": "text/plain"})
        assert r.status_code == 201 and r.json()["headers"] == {}
        g = await c.get(p)
        assert g.headers["cache-control"] == DEFAULT_CACHE
        assert g.headers["content-disposition"] == 'inline; filename="plain.txt"'
        assert "content-encoding" not in g.headers and "expires" not in g.headers


async def test_an_overwrite_without_them_drops_them(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "k.txt")
        r = await c.put(p, content=b"one", headers={"Cache-Control": "max-age=5"})
        assert r.status_code == 201 and r.json()["headers"] == {"cache-control": "max-age=5"}
        assert (await c.head(p)).headers["cache-control"] == "max-age=5"
        r = await c.put(p, content=b"two")
        assert r.status_code == 200 and r.json()["headers"] == {}
        h = await c.head(p)
        assert h.headers["cache-control"] == DEFAULT_CACHE and served(h) == {
            "cache-control": DEFAULT_CACHE,
            "content-disposition": 'inline; filename="k.txt"',
        }


async def test_the_file_json_shows_them_as_the_object_json_does(shared_system: System) -> None:
    """GET /v1/files/{id} (read from the file's stream) shows the version's stored headers
    as the object's own answer does; a PATCH of its metadata keeps them (answer and GET),
    an overwrite without them leaves {}; a plain file has {}. Documented in the schema."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        r = await c.put(opath(b, "f.css"), content=b"x", headers=SENT)
        assert r.status_code == 201, r.text
        fid = r.json()["id"]
        g = await c.get(f"/v1/files/{fid}")
        assert g.status_code == 200 and g.json()["headers"] == STORED == r.json()["headers"]
        await assert_documented(c, "GET", "/v1/files/{file_id}", g)

        pr = await c.patch(f"/v1/files/{fid}", json={"metadata": {"k": "v"}})
        assert pr.status_code == 200 and pr.json()["headers"] == STORED, pr.text
        await assert_documented(c, "PATCH", "/v1/files/{file_id}", pr)
        assert (await c.get(f"/v1/files/{fid}")).json()["headers"] == STORED

        assert (await c.put(opath(b, "f.css"), content=b"y")).status_code == 200
        assert (await c.get(f"/v1/files/{fid}")).json()["headers"] == {}

        plain = await upload(c, b"plain")
        assert (await c.get(f"/v1/files/{plain}")).json()["headers"] == {}


async def test_a_stored_disposition_gives_way_to_download(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "docs/report.pdf")
        stored = 'inline; filename="Q1 report.pdf"'
        r = await c.put(p, content=b"%PDF-1.4", headers={"Content-Disposition": stored})
        assert r.status_code == 201, r.text
        assert (await c.get(p)).headers["content-disposition"] == stored
        assert (await c.head(p)).headers["content-disposition"] == stored
        d = await c.get(f"{p}?download=1")
        assert d.status_code == 200
        assert d.headers["content-disposition"] == 'attachment; filename="report.pdf"'


async def test_copy_and_move_keep_them_and_replace_takes_the_request_s(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        a, b = await make_bucket(c), await make_bucket(c)
        src = {"x-amz-copy-source": f"/{a}/{quote('src.css')}"}
        r = await c.put(opath(a, "src.css"), content=gzip.compress(b"x"), headers=SENT)
        assert r.status_code == 201, r.text

        r = await c.put(opath(b, "copied.css"), headers=src)
        assert r.status_code == 201 and r.json()["headers"] == STORED, r.text
        assert served(await c.head(opath(b, "copied.css"))) == STORED
        copied_id = r.json()["id"]

        replace = {**src, "x-amz-metadata-directive": "REPLACE"}
        r = await c.put(opath(b, "replaced.css"), headers={**replace, "Cache-Control": "no-cache"})
        assert r.status_code == 201 and r.json()["headers"] == {"cache-control": "no-cache"}
        h = await c.head(opath(b, "replaced.css"))
        assert h.headers["cache-control"] == "no-cache" and "content-encoding" not in h.headers
        # REPLACE without any: the copy has none.
        r = await c.put(opath(b, "bare.css"), headers=replace)
        assert r.status_code == 201 and r.json()["headers"] == {}

        # A move (PATCH key) keeps them, as it keeps the metadata.
        moved = await c.patch(f"/v1/files/{copied_id}", json={"key": "moved.css"})
        assert moved.status_code == 200, moved.text
        assert served(await c.head(opath(b, "moved.css"))) == STORED

        # With COPY they would be ignored (S3 drops them silently): refused, nothing made.
        bad = await c.put(opath(b, "ignored.css"), headers={**src, "Cache-Control": "no-cache"})
        assert_error(bad, 400, "invalid_copy_source")
        assert await object_events(shared_system.pool, b, "ignored.css") == []


async def test_bad_headers_are_400_and_nothing_is_stored(
    shared_system: System, object_body_reads: list[object]
) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        bad = [
            ({"Cache-Control": "x" * 1025}, "cache-control", 1024),
            ({"Content-Language": "en\tde"}, "content-language", 1024),  # a control char
            ({"Expires": "a", "expires": "b"}, "expires", 1024),
            ({"Content-Type": "text/" + "x" * 252}, "content-type", 256),
        ]
        for headers, header, most in bad:
            r = await c.put(opath(b, "refused"), content=b"x" * 1000, headers=headers)
            err = assert_error(r, 400, "invalid_header")
            assert err["details"] == {"header": header, "max_bytes": most}, err
        assert object_body_reads == []  # refused before a byte of any body was read
        assert await object_events(shared_system.pool, b, "refused") == []
        # Right at the bounds is fine.
        fits = {"Cache-Control": "x" * 1024, "Content-Type": "text/" + "x" * 251}
        r = await c.put(opath(b, "fits"), content=b"x", headers=fits)
        assert r.status_code == 201 and r.json()["headers"] == {"cache-control": "x" * 1024}


async def test_raw_control_bytes_never_become_a_stored_header(shared_system: System) -> None:
    """Bytes an HTTP client library will not send (a bare CR, a NUL, obs-fold's CRLF,
    non-ASCII), written on the socket: 400 (from Cairn, or from the HTTP parser before
    it), and no object."""
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        token = c.headers["authorization"]
    url = urlsplit(shared_system.url)
    lines = [
        b"Cache-Control: max-age=1\rX-Injected: 1\r\n",
        b"Content-Encoding: gz\x00ip\r\n",
        b"Content-Language: en\r\n de\r\n",  # obs-fold: a CRLF inside the value
        "Content-Disposition: inline; filename=ü.txt\r\n".encode(),
        b"Expires: " + b"9" * 1025 + b"\r\n",
    ]
    for i, line in enumerate(lines):
        key = f"raw{i}"
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(
            f"PUT {opath(b, key)} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {token}\r\n".encode()
            + line
            + b"Content-Length: 3\r\nConnection: close\r\n\r\nabc"
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400"), (line, answer[:300])
        assert await object_events(shared_system.pool, b, key) == [], line


async def test_the_listings_show_them_replace_copies_too_and_a_rebuild_keeps_them(
    shared_system: System,
) -> None:
    """GET /v1/files and ListObjectsV2 items have `headers` (read from readmodel.files, so
    after the projector's bounded lag), as the object's own answer does; a REPLACE copy's
    items have the request's; a rebuild of the files projection gives the same. Both
    answers match their documented shapes."""
    sent = {"Cache-Control": "public, max-age=600", "Content-Encoding": "gzip"}
    stored = {k.lower(): v for k, v in sent.items()}
    async with (
        shared_system.client(user()) as c,
        shared_system.client("lh-root", admin=True) as admin,
    ):
        b = await make_bucket(c)
        r = await c.put(opath(b, "app.js"), content=gzip.compress(b"x"), headers=sent)
        assert r.status_code == 201 and r.json()["headers"] == stored, r.text
        assert (await c.put(opath(b, "plain.txt"), content=b"p")).status_code == 201
        replace = {
            "x-amz-copy-source": f"/{b}/app.js",
            "x-amz-metadata-directive": "REPLACE",
            "Cache-Control": "no-store",
        }
        r = await c.put(opath(b, "copy.js"), headers=replace)
        assert r.status_code == 201 and r.json()["headers"] == {"cache-control": "no-store"}
        want = {"app.js": stored, "copy.js": {"cache-control": "no-store"}, "plain.txt": {}}

        async def listed() -> tuple[httpx.Response, httpx.Response] | None:
            objs = await c.get(f"/v1/buckets/{b}/objects")
            fs = await c.get("/v1/files", params={"bucket": b})
            assert objs.status_code == fs.status_code == 200, (objs.text, fs.text)
            by_key = {i["key"]: i.get("headers") for i in objs.json()["items"]}
            by_file = {i["key"]: i.get("headers") for i in fs.json()["items"]}
            return (objs, fs) if by_key == by_file == want else None

        objs, fs = await wait_until(listed)
        await assert_documented(c, "GET", "/v1/buckets/{name}/objects", objs)
        await assert_documented(c, "GET", "/v1/files", fs)

        rb = await admin.post("/v1/admin/projections/files/rebuild")
        assert rb.status_code == 200 and rb.json()["events_skipped"] == 0, rb.text
        assert await listed() is not None  # committed by the rebuild: no lag to wait out
