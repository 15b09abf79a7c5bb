"""Objects through the whole system: PUT (create, replace, conditions), GET/HEAD served
like files, DELETE, S3's key rules, 404 for buckets one may not see, the object in
GET /v1/files, bucket force-delete, racing PUTs, and a PUT cut off mid-body."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from api.routes import objects as objects_route
from domain.files.keys import object_file_id
from tests.api.answers import assert_error, bname, make_bucket, opath, user
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def object_events(pool: asyncpg.Pool, bucket: str, key: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT event_type FROM eventstore.events WHERE stream_id = $1 ORDER BY version",
        f"file-{object_file_id(bucket, key)}",
    )
    return [r["event_type"] for r in rows]


async def test_put_get_head_replace_delete(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        key = "photos/2026/a b ü.txt"
        r = await c.put(opath(b, key), content=b"hello", headers={"Content-Type": "text/plain"})
        assert r.status_code == 201, r.text
        first = r.json()
        sha = hashlib.sha256(b"hello").hexdigest()
        assert (first["bucket"], first["key"], first["size"], first["sha256"]) == (b, key, 5, sha)
        assert r.headers["etag"] == f'"{sha}"' and first["id"] == object_file_id(b, key)

        g = await c.get(opath(b, key))
        assert g.status_code == 200 and g.content == b"hello"
        assert g.headers["etag"] == f'"{sha}"' and g.headers["content-length"] == "5"
        assert g.headers["content-type"].startswith("text/plain")
        assert "last-modified" in g.headers and g.headers["accept-ranges"] == "bytes"
        h = await c.head(opath(b, key))
        assert h.status_code == 200 and h.content == b""
        assert {k: h.headers[k] for k in ("etag", "content-length", "content-type")} == {
            k: g.headers[k] for k in ("etag", "content-length", "content-type")
        }
        # Ranges and conditionals: the files serving code.
        rr = await c.get(opath(b, key), headers={"Range": "bytes=-3"})
        assert rr.status_code == 206 and rr.content == b"llo"
        nm = await c.get(opath(b, key), headers={"If-None-Match": f'"{sha}"'})
        assert nm.status_code == 304

        # Replace: one new event, same id, new bytes; 200 (not 201).
        r = await c.put(opath(b, key), content=b"world!")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == first["id"] and r.json()["size"] == 6
        assert (await c.get(opath(b, key))).content == b"world!"
        assert await object_events(shared_system.pool, b, key) == ["FileCreated", "FileReplaced"]

        # The object is a file: in GET /v1/files with its bucket and key, and by id.
        f = await c.get(f"/v1/files/{first['id']}")
        assert f.status_code == 200 and (f.json()["bucket"], f.json()["key"]) == (b, key)

        async def listed() -> bool:
            r = await c.get("/v1/files", params={"bucket": b})
            items = r.json()["items"]
            return [(i["key"], i["size"]) for i in items] == [(key, 6)]

        await wait_until(listed)

        d = await c.delete(opath(b, key))
        assert d.status_code == 204 and d.content == b""
        assert_error(await c.get(opath(b, key)), 404, "object_not_found")
        assert (await c.head(opath(b, key))).status_code == 404
        # Deleting again is answered the same; a key never written is 404.
        assert (await c.delete(opath(b, key))).status_code == 204
        assert_error(await c.delete(opath(b, "never")), 404, "object_not_found")

        # Written again after its delete: the same stream, a live object again.
        r = await c.put(opath(b, key), content=b"again")
        assert r.status_code == 201, r.text
        assert (await c.get(opath(b, key))).content == b"again"


async def test_put_is_one_command_round_trip(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        r = await c.put(opath(b, "four-k"), content=secrets.token_bytes(4096))
        assert r.status_code == 201
        assert await object_events(shared_system.pool, b, "four-k") == ["FileCreated"]
        rows = await shared_system.pool.fetch(
            "SELECT event_type FROM eventstore.events WHERE owner = $1 ORDER BY position", me
        )
        # The bucket's creation and the object: nothing else was written for the PUT.
        assert [r["event_type"] for r in rows] == ["BucketCreated", "FileCreated"]


async def test_key_rules(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        # `..` segments are ordinary key characters, stored and served under that key.
        for key in ("../../etc/passwd", "a/../b", "..", "dir/", " spaced key ", "ключ/文件"):
            r = await c.put(opath(b, key), content=key.encode())
            assert r.status_code == 201, (key, r.text)
            assert r.json()["key"] == key
            g = await c.get(opath(b, key))
            assert g.status_code == 200 and g.content == key.encode(), key
        assert (await c.get(opath(b, "a/b"))).status_code == 404  # not a normalised path

        longest = "k" * 1024
        assert (await c.put(opath(b, longest), content=b"x")).status_code == 201
        before = await shared_system.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE owner = $1", me
        )
        assert_error(await c.put(opath(b, "k" * 1025), content=b"x"), 400, "invalid_key")
        assert_error(await c.put(opath(b, "é" * 513), content=b"x"), 400, "invalid_key")
        assert_error(
            await c.put(f"/v1/buckets/{b}/objects/a%00b", content=b"x"), 400, "invalid_key"
        )
        assert_error(
            await c.put(f"/v1/buckets/{b}/objects/a%FFb", content=b"x"), 400, "invalid_key"
        )
        assert_error(await c.get(f"/v1/buckets/{b}/objects/a%C3"), 400, "invalid_key")
        r = await c.put(f"/v1/buckets/{b}/objects/", content=b"x")
        assert r.status_code in (400, 404, 405), r.text  # no key at all: never a 500
        after = await shared_system.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE owner = $1", me
        )
        assert after == before  # nothing recorded for refused keys


async def test_conditional_puts(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "cond")
        assert (await c.put(p, content=b"1", headers={"If-None-Match": "*"})).status_code == 201
        assert_error(
            await c.put(p, content=b"2", headers={"If-None-Match": "*"}), 412, "object_exists"
        )
        sha1 = hashlib.sha256(b"1").hexdigest()
        assert_error(
            await c.put(p, content=b"2", headers={"If-Match": f'"{"0" * 64}"'}),
            412,
            "etag_mismatch",
        )
        assert_error(
            await c.put(p, content=b"2", headers={"If-Match": "garbage"}), 400, "invalid_if_match"
        )
        assert_error(
            await c.put(p, content=b"2", headers={"If-None-Match": '"x"'}),
            400,
            "invalid_if_none_match",
        )
        assert (await c.get(p)).content == b"1"  # nothing above changed it
        r = await c.put(p, content=b"2", headers={"If-Match": f'"{sha1}"'})
        assert r.status_code == 200 and (await c.get(p)).content == b"2"
        assert_error(
            await c.put(opath(b, "absent"), content=b"x", headers={"If-Match": "*"}),
            412,
            "etag_mismatch",
        )


async def test_conditional_deletes(shared_system: System) -> None:
    # RFC 9110 §13.1.1: If-Match is evaluated before the method. Ignored, a delete meant
    # for the version the client saw removed a newer one another writer had just put.
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "cond")
        assert (await c.put(p, content=b"1")).status_code == 201
        assert (await c.put(p, content=b"2")).status_code == 200
        sha1, sha2 = hashlib.sha256(b"1").hexdigest(), hashlib.sha256(b"2").hexdigest()
        assert_error(await c.delete(p, headers={"If-Match": f'"{sha1}"'}), 412, "etag_mismatch")
        assert_error(await c.delete(p, headers={"If-Match": "garbage"}), 400, "invalid_if_match")
        assert (await c.get(p)).content == b"2"  # nothing above deleted it
        assert (await c.delete(p, headers={"If-Match": f'"{sha2}"'})).status_code == 204
        assert (await c.get(p)).status_code == 404
        for tag in (f'"{sha2}"', "*"):  # no live version: If-Match is false
            assert_error(await c.delete(p, headers={"If-Match": tag}), 412, "etag_mismatch")
        assert (await c.delete(p)).status_code == 204  # unconditional: still idempotent
        # The same object through its file: DELETE /v1/files/{id} checks it too.
        fid = (await c.put(p, content=b"3")).json()["id"]
        r = await c.delete(f"/v1/files/{fid}", headers={"If-Match": f'"{sha2}"'})
        assert_error(r, 412, "etag_mismatch")
        r = await c.delete(f"/v1/files/{fid}", headers={"If-Match": 'W/"x"'})
        assert_error(r, 400, "invalid_if_match")
        assert (await c.get(p)).content == b"3"
        sha3 = hashlib.sha256(b"3").hexdigest()
        r = await c.delete(f"/v1/files/{fid}", headers={"If-Match": f'"{sha3}"'})
        assert r.status_code == 200 and (await c.get(p)).status_code == 404


async def test_a_write_condition_sent_twice_is_one_list_and_refused(
    shared_system: System,
) -> None:
    """If-Match or If-None-Match as two header lines is one list (RFC 9110 §5.3: a proxy may
    join them into `"a", "b"`, which was already 400). Only the first line was read: a PUT
    or DELETE with the live ETag and then another one went ahead, and `If-None-Match: *`
    followed by a tag created only if absent while the joined form was refused."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "twice")
        fid = (await c.put(p, content=b"1")).json()["id"]
        live = f'"{hashlib.sha256(b"1").hexdigest()}"'
        other = f'"{"0" * 64}"'
        twice = [("If-Match", live), ("If-Match", other)]
        assert_error(await c.put(p, content=b"2", headers=twice), 400, "invalid_if_match")
        assert_error(
            await c.put(p, content=b"2", headers=[("If-Match", "*")] * 2), 400, "invalid_if_match"
        )
        r = await c.put(p, content=b"2", headers=[("If-None-Match", "*"), ("If-None-Match", other)])
        assert_error(r, 400, "invalid_if_none_match")
        r = await c.put(opath(b, "new"), content=b"2", headers=[("If-None-Match", "*")] * 2)
        assert_error(r, 400, "invalid_if_none_match")
        assert_error(await c.delete(p, headers=twice), 400, "invalid_if_match")
        assert_error(await c.delete(f"/v1/files/{fid}", headers=twice), 400, "invalid_if_match")
        # Nothing above wrote or deleted anything; the same conditions once do.
        assert (await c.get(p)).content == b"1"
        assert (await c.get(opath(b, "new"))).status_code == 404
        r = await c.put(p, content=b"2", headers={"If-Match": live})
        assert r.status_code == 200, r.text
        r = await c.put(opath(b, "new"), content=b"2", headers={"If-None-Match": "*"})
        assert r.status_code == 201, r.text


async def test_if_unmodified_since_on_writes(shared_system: System) -> None:
    # RFC 9110 §13.1.4: without If-Match, If-Unmodified-Since is evaluated before a write;
    # it was ignored, so a client's "only if unchanged since I read it" replaced anyway.
    past = "Mon, 01 Jan 2001 00:00:00 GMT"
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "ius")
        # No object, no modification date: the condition does not apply (§13.1.4).
        assert (await c.put(p, content=b"1", headers={"If-Unmodified-Since": past})).is_success
        r = await c.put(p, content=b"2", headers={"If-Unmodified-Since": past})
        assert_error(r, 412, "precondition_failed")
        r = await c.delete(p, headers={"If-Unmodified-Since": past})
        assert_error(r, 412, "precondition_failed")
        assert (await c.get(p)).content == b"1"
        lm = (await c.head(p)).headers["last-modified"]
        ok = await c.put(p, content=b"2", headers={"If-Unmodified-Since": lm})
        assert ok.status_code == 200 and (await c.get(p)).content == b"2"
        sha2 = hashlib.sha256(b"2").hexdigest()
        # If-Match wins over it (§13.2.2), and a date that is not one is ignored.
        r = await c.put(
            p, content=b"3", headers={"If-Match": f'"{sha2}"', "If-Unmodified-Since": past}
        )
        assert r.status_code == 200
        r = await c.put(p, content=b"4", headers={"If-Unmodified-Since": "yesterday"})
        assert r.status_code == 200
        r = await c.delete(p, headers={"If-Unmodified-Since": future})
        assert r.status_code == 204 and (await c.get(p)).status_code == 404


async def test_racing_puts_one_winner(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        p = opath(b, "race")
        bodies = [f"body-{i}".encode() * 100 for i in range(8)]
        rs = await asyncio.gather(
            *(c.put(p, content=x, headers={"If-None-Match": "*"}) for x in bodies)
        )
        assert sorted(r.status_code for r in rs) == [201] + [412] * 7
        winner = next(r for r in rs if r.status_code == 201).json()
        assert (await c.get(p)).content == bodies[[r.status_code for r in rs].index(201)]

        # Unconditional racers: all succeed one after another; the last applied wins, and
        # the aggregate, GET and the read model agree on it.
        rs = await asyncio.gather(*(c.put(p, content=x) for x in bodies))
        assert all(r.status_code == 200 for r in rs)
        served = (await c.get(p)).content
        assert served in bodies
        sha = hashlib.sha256(served).hexdigest()

        async def read_model_agrees() -> bool:
            row = await shared_system.pool.fetchrow(
                "SELECT sha256, last_version FROM readmodel.files WHERE id = $1::uuid",
                winner["id"],
            )
            return row is not None and row["sha256"] == sha and row["last_version"] == 9

        await wait_until(read_model_agrees)


async def test_buckets_one_may_not_see_or_write(shared_system: System) -> None:
    owner, other = user(), user()
    async with shared_system.client(owner) as c, shared_system.client(other) as o:
        private = await make_bucket(c)
        public = await make_bucket(c, public=True)
        for b in (private, public):
            assert (await c.put(opath(b, "k"), content=b"v")).status_code == 201
        missing = bname()
        for b in (private, missing):
            assert_error(await o.get(opath(b, "k")), 404, "bucket_not_found")
            assert (await o.head(opath(b, "k"))).status_code == 404
            assert_error(await o.delete(opath(b, "k")), 404, "bucket_not_found")
            assert_error(await o.put(opath(b, "k"), content=b"x"), 404, "bucket_not_found")
        # A public bucket: anyone signed in reads, only its owner writes.
        assert (await o.get(opath(public, "k"))).content == b"v"
        assert_error(await o.put(opath(public, "k"), content=b"x"), 404, "bucket_not_found")
        assert_error(await o.delete(opath(public, "k")), 404, "bucket_not_found")
        assert (await c.get(opath(public, "k"))).content == b"v"
        assert_error(await c.get(opath(private, "nope")), 404, "object_not_found")
        # Anonymous: a public bucket's objects and listing, nothing else (401, never 403).
        async with shared_system.client(None) as anon:
            assert (await anon.get(opath(public, "k"))).content == b"v"
            assert (await anon.head(opath(public, "k"))).status_code == 200
            assert (await anon.get(f"/v1/buckets/{public}/objects")).status_code == 200
            for b in (private, missing):
                assert_error(await anon.get(opath(b, "k")), 401, "unauthorized")
                assert_error(await anon.get(f"/v1/buckets/{b}/objects"), 401, "unauthorized")
            assert_error(await anon.put(opath(public, "k"), content=b"x"), 401, "unauthorized")
            assert_error(await anon.delete(opath(public, "k")), 401, "unauthorized")
        # An admin may write someone's bucket; the object stays the bucket owner's.
        async with shared_system.client("root", admin=True) as a:
            r = await a.put(opath(private, "by-admin"), content=b"a")
            assert r.status_code == 201, r.text
        f = await c.get(f"/v1/files/{r.json()['id']}")
        assert f.status_code == 200 and f.json()["key"] == "by-admin"


async def test_force_delete_of_a_bucket_deletes_its_objects(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        ids = [(await c.put(opath(b, f"d/{i}"), content=b"x")).json()["id"] for i in range(3)]

        async def projected() -> bool:
            n = await shared_system.pool.fetchval(
                "SELECT count(*) FROM readmodel.files WHERE id = ANY($1::uuid[])"
                " AND deleted_at IS NULL",
                ids,
            )
            return bool(n == 3)

        await wait_until(projected)
        assert_error(await c.delete(f"/v1/buckets/{b}"), 409, "bucket_not_empty")
        r = await c.delete(f"/v1/buckets/{b}", params={"force": "true"})
        assert r.status_code == 200 and r.json()["objects_deleted"] == 3
        for i in range(3):
            assert await object_events(shared_system.pool, b, f"d/{i}") == [
                "FileCreated",
                "FileDeleted",
            ]


async def test_a_cut_off_put_leaves_the_old_version(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        b = await make_bucket(c)
        p = opath(b, "keep")
        assert (await c.put(p, content=b"old")).status_code == 201
        token = c.headers["authorization"]
    url = urlsplit(shared_system.url)
    # A raw request that promises 1 MB and sends 10 bytes, then closes the connection.
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            f"PUT {p} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {token}\r\n"
            "Content-Length: 1000000\r\n\r\n0123456789"
        ).encode()
    )
    await writer.drain()
    writer.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
    await reader.read()  # the server answers (or just closes); either way the PUT is over
    writer.close()
    async with shared_system.client(me) as c:
        assert (await c.get(p)).content == b"old"
    assert await object_events(shared_system.pool, b, "keep") == ["FileCreated"]


async def test_a_put_whose_bucket_is_deleted_meanwhile_writes_nothing(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    reading, finish = asyncio.Event(), asyncio.Event()
    ingest = objects_route.ingest

    async def noted_ingest(*args: Any, **kw: Any) -> Any:
        reading.set()  # the bucket was checked; the body is being read
        return await ingest(*args, **kw)

    monkeypatch.setattr(objects_route, "ingest", noted_ingest)

    async def body() -> Any:
        yield b"first part, "
        await finish.wait()
        yield b"and the rest"

    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        put = asyncio.create_task(c.put(opath(b, "late"), content=body()))
        await reading.wait()
        assert (await c.delete(f"/v1/buckets/{b}")).status_code == 200
        finish.set()
        # Like S3's NoSuchBucket: no object is left in a bucket that is gone.
        assert_error(await put, 404, "bucket_not_found")
    assert await object_events(shared_system.pool, b, "late") == []


async def test_the_type_is_detected_when_not_given(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
        r = await c.put(opath(b, "pictures/noext"), content=png)
        assert r.status_code == 201 and r.json()["content_type"] == "image/png", r.text
        r = await c.put(opath(b, "notes"), content="héllo".encode())
        assert r.json()["content_type"].startswith("text/plain"), r.text
        r = await c.put(opath(b, "given"), content=png, headers={"Content-Type": "image/x-mine"})
        assert r.json()["content_type"] == "image/x-mine"
        assert (await c.head(opath(b, "pictures/noext"))).headers["content-type"] == "image/png"
