"""Tasks and bucket objects, end to end: extract into a bucket makes each member the object
`prefix + member path` (read back through the objects API), refusing a taken key unless
`overwrite`; compress of a bucket + prefix archives objects under their keys, so compress
then extract gives back the same keys and bytes."""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Any

import httpx
import pytest

from domain.files.keys import object_file_id
from domain.tasks.ids import item_file_id
from handlers.tasks import fileops
from tests.api.answers import user
from tests.api.tasks_helpers import bucket, count_events, finished, start, upload
from tests.archives import zip_of
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONTENT = {
    "a.txt": b"hello " * 5000,
    "dir/ünï.bin": bytes(range(256)) * 700,
    "dir/sub/empty": b"",
}


def a_zip(content: dict[str, bytes]) -> bytes:
    return zip_of(content, zipfile.ZIP_DEFLATED)


async def extract(c: httpx.AsyncClient, archive: str, **params: Any) -> dict[str, Any]:
    tid = await start(c, {"type": "extract", "params": {"file": archive, **params}})
    return await finished(c, tid)


async def objects(c: httpx.AsyncClient, b: str, keys: list[str]) -> dict[str, bytes]:
    out = {}
    for key in keys:
        r = await c.get(f"/v1/buckets/{b}/objects/{key}")
        assert r.status_code == 200, (key, r.text)
        out[key] = r.content
    return out


async def test_extract_into_a_bucket_makes_objects_keyed_by_path(
    small_chunks_system: System,
) -> None:
    async with small_chunks_system.client(user()) as c:
        b = await bucket(c)
        archive = await upload(c, a_zip(CONTENT), "a.zip")
        t = await extract(c, archive, output={"bucket": b, "prefix": "in/"})
        assert t["status"] == "COMPLETED", t["error"]
        keys = [f"in/{p}" for p in CONTENT]
        assert [r["key"] for r in t["results"]] == keys
        assert [r["result"] for r in t["results"]] == [object_file_id(b, k) for k in keys]
        assert await objects(c, b, keys) == dict(zip(keys, CONTENT.values(), strict=True))
        meta = (await c.get(f"/v1/files/{object_file_id(b, 'in/a.txt')}")).json()
        assert meta["metadata"]["archive_path"] == "a.txt"
        assert meta["content_type"] == "text/plain"

        # The keys are taken now: again without overwrite fails before writing anything.
        async def listed() -> bool:
            r = await c.get(f"/v1/buckets/{b}/objects", params={"prefix": "in/"})
            return (
                r.status_code == 200
                and len(r.json().get("contents", r.json().get("items", []))) == 3
            )

        await wait_until(listed)
        changed = a_zip({p: b"v2 " + d for p, d in CONTENT.items()})
        archive2 = await upload(c, changed, "b.zip")
        t = await extract(c, archive2, output={"bucket": b, "prefix": "in/"})
        assert t["status"] == "FAILED" and t["error"]["code"] == "target_exists", t
        assert t["error"]["details"]["names"] == sorted(keys)
        streams = [f"file-{object_file_id(b, k)}" for k in keys]
        assert await count_events(small_chunks_system.pool, "FileReplaced", streams) == 0
        assert (await objects(c, b, ["in/a.txt"]))["in/a.txt"] == CONTENT["a.txt"]

        t = await extract(c, archive2, output={"bucket": b, "prefix": "in/"}, overwrite=True)
        assert t["status"] == "COMPLETED", t["error"]
        assert all(r["replaced"] == [r["result"]] for r in t["results"])
        got = await objects(c, b, keys)
        assert got == {f"in/{p}": b"v2 " + d for p, d in CONTENT.items()}
        assert await count_events(small_chunks_system.pool, "FileReplaced", streams) == 3


async def test_a_tar_of_dot_keys_its_objects_without_the_dot(small_chunks_system: System) -> None:
    """`tar -C dir -czf a.tgz .` names its members `./a.txt`, `./d/b.txt`: their keys are
    `in/a.txt`, `in/d/b.txt` (they were `in/./a.txt`), and `./a.txt` next to `a.txt` is
    one key twice (refused)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        top = tarfile.TarInfo(".")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        for name, data in (("./a b.txt", b"a"), ("./d/./é.txt", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    async with small_chunks_system.client(user()) as c:
        b = await bucket(c)
        t = await extract(
            c, await upload(c, buf.getvalue(), "dot.tgz"), output={"bucket": b, "prefix": "in/"}
        )
        assert t["status"] == "COMPLETED", t["error"]
        assert [(r["source"], r["key"]) for r in t["results"]] == [
            ("a b.txt", "in/a b.txt"),
            ("d/é.txt", "in/d/é.txt"),
        ]
        assert await objects(c, b, ["in/a b.txt", "in/d/é.txt"]) == {
            "in/a b.txt": b"a",
            "in/d/é.txt": b"",
        }
        twice = a_zip({"./x.txt": b"1", "x.txt": b"2"})
        t = await extract(c, await upload(c, twice, "t.zip"), output={"bucket": b})
        assert t["status"] == "FAILED" and t["error"]["code"] == "duplicate_member", t


async def test_compress_objects_by_prefix_then_extract_round_trips_keys(
    small_chunks_system: System,
) -> None:
    async with small_chunks_system.client(user()) as c:
        b = await bucket(c)
        for path, data in CONTENT.items():
            r = await c.put(f"/v1/buckets/{b}/objects/src/{path}", content=data)
            assert r.status_code in (200, 201), r.text
        r = await c.put(f"/v1/buckets/{b}/objects/other/x.txt", content=b"not this one")
        assert r.status_code in (200, 201), r.text

        async def projected() -> bool:
            r = await c.get("/v1/files", params={"bucket": b})
            return bool(r.json()["total"] == 4)

        await wait_until(projected)
        for fmt in ("zip", "tar.gz"):
            tid = await start(
                c,
                {
                    "type": "compress",
                    "params": {
                        "bucket": b,
                        "prefix": "src/",
                        "format": fmt,
                        "output": {"file_name": f"objs.{fmt}"},
                    },
                },
            )
            t = await finished(c, tid)
            assert t["status"] == "COMPLETED", t["error"]
            assert sorted(r["result"] for r in t["results"]) == sorted(f"src/{p}" for p in CONTENT)
            back = await extract(
                c, t["result_file_ids"][0], output={"bucket": b, "prefix": f"{fmt}/"}
            )
            assert back["status"] == "COMPLETED", back["error"]
            keys = [f"{fmt}/src/{p}" for p in CONTENT]
            assert sorted(r["key"] for r in back["results"]) == sorted(keys)
            got = await objects(c, b, keys)
            assert got == {f"{fmt}/src/{p}": d for p, d in CONTENT.items()}


async def test_bad_output_prefix_and_unsafe_members_into_a_bucket(
    small_chunks_system: System,
) -> None:
    async with small_chunks_system.client(user()) as c:
        b = await bucket(c)
        archive = await upload(c, a_zip({"ok.txt": b"x"}), "ok.zip")
        r = await c.post(
            "/v1/tasks",
            json={"type": "extract", "params": {"file": archive, "output": {"prefix": "a/"}}},
        )
        assert (
            r.status_code == 400 and r.json()["error"]["details"]["field"] == "params.output.prefix"
        )
        slip = await upload(c, zip_of({"ok.txt": b"fine", "../evil.txt": b"escape"}), "slip.zip")
        t = await extract(c, slip, output={"bucket": b, "prefix": "p/"})
        assert t["status"] == "FAILED" and t["error"]["code"] == "unsafe_member", t
        made = [f"file-{object_file_id(b, k)}" for k in ("p/ok.txt", "p/../evil.txt")]
        assert await count_events(small_chunks_system.pool, "FileCreated", made) == 0


async def test_a_member_twice_in_the_archive_is_refused_before_anything_is_written(
    small_chunks_system: System,
) -> None:
    # Before, the first was written, then the second met it as a taken key: the task
    # failed half-way with target_exists naming its own object.
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("first.txt", b"1")
        z.writestr("same", b"a")
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.writestr("same", b"b")  # zipfile warns, and writes it
    async with small_chunks_system.client(user()) as c:
        b = await bucket(c)
        archive = await upload(c, buf.getvalue(), "dup.zip")
        t = await extract(c, archive, output={"bucket": b, "prefix": "d/"})
        assert t["status"] == "FAILED" and t["error"]["code"] == "duplicate_member", t
        assert t["error"]["details"]["member"] == "same" and t["results"] == []
        made = [f"file-{object_file_id(b, k)}" for k in ("d/first.txt", "d/same")]
        assert await count_events(small_chunks_system.pool, "FileCreated", made) == 0


async def test_a_task_queued_for_a_bucket_does_not_write_into_its_next_owners(
    small_chunks_system: System,
) -> None:
    # Bucket names are global: alice's bucket deleted while her tasks waited, and made
    # again by bob. Before, her extract (overwrite) replaced bob's object with her bytes,
    # and her copy and compress put her files into his bucket.
    alice, bob = user(), user()
    async with small_chunks_system.client(alice) as a, small_chunks_system.client(bob) as b:
        name = await bucket(a)
        archive = await upload(a, a_zip({"a.txt": b"alice"}), "a.zip")
        f = await upload(a, b"alice's file", "f.txt")
        await small_chunks_system.stop("tasks")  # queue up first
        try:
            tasks = [
                await start(
                    a,
                    {
                        "type": "extract",
                        "params": {"file": archive, "output": {"bucket": name}, "overwrite": True},
                    },
                ),
                await start(a, {"type": "copy", "params": {"files": [f], "to": {"bucket": name}}}),
                await start(
                    a,
                    {
                        "type": "compress",
                        "params": {"files": [f], "output": {"file_name": "x.zip", "bucket": name}},
                    },
                ),
            ]
            assert (await a.delete(f"/v1/buckets/{name}")).status_code in (200, 204)
            assert (await b.post("/v1/buckets", json={"name": name})).status_code == 201
            r = await b.put(f"/v1/buckets/{name}/objects/a.txt", content=b"bob")
            assert r.status_code == 201, r.text
        finally:
            small_chunks_system.start("tasks")
        for tid in tasks:
            t = await finished(a, tid)
            assert t["status"] == "FAILED", t
            assert t["error"]["code"] == "bucket_not_found", t["error"]
            assert t["error"]["details"] == {"bucket": name}
        assert (await b.get(f"/v1/buckets/{name}/objects/a.txt")).content == b"bob"
        made = (await a.get("/v1/files", params={"bucket": name})).json()
        assert made.get("items", made.get("files")) == [], made


async def test_a_bucket_deleted_mid_run_stops_the_task_writing_into_it(
    small_chunks_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The destination was checked once, when the run began: a bucket force-deleted while
    a copy ran had the files after the delete copied into a name that was gone (the
    delete had removed only what existed when it listed). The run's safe points ask
    again, one before each batch of files (here a batch of one): it fails with
    bucket_not_found, and nothing after the next check is written."""
    async with small_chunks_system.client(user()) as a:
        name = await bucket(a)
        files = [await upload(a, f"file {i}".encode(), f"f{i}.txt") for i in range(3)]
        real_load = fileops.load_files
        deleted: list[int] = []

        async def delete_at_the_second(run: Any, file_ids: list[str]) -> Any:
            if files[1] in file_ids and not deleted:
                r = await a.delete(f"/v1/buckets/{name}", params={"force": "true"})
                deleted.append(r.status_code)
            return await real_load(run, file_ids)

        monkeypatch.setattr(fileops, "COPY_BATCH", 1)
        monkeypatch.setattr(fileops, "load_files", delete_at_the_second)
        tid = await start(a, {"type": "copy", "params": {"files": files, "to": {"bucket": name}}})
        t = await finished(a, tid)
        assert deleted == [200]
        assert t["status"] == "FAILED", t
        assert t["error"]["code"] == "bucket_not_found" and t["error"]["details"] == {
            "bucket": name
        }
        # The first copy was made before the delete (and deleted by it); the third, after
        # the next safe point, never.
        assert (
            await count_events(
                small_chunks_system.pool, "FileCreated", [f"file-{item_file_id(tid, 0)}"]
            )
            == 1
        )
        assert (
            await count_events(
                small_chunks_system.pool, "FileCreated", [f"file-{item_file_id(tid, 2)}"]
            )
            == 0
        )


async def test_keys_that_climb_out_are_archived_under_safe_names(
    small_chunks_system: System,
) -> None:
    # A key is any string (`..` and `/` are ordinary characters in it). Before, compress
    # wrote `../../evil.txt`, `/abs.txt` and `a\..\..\win.txt` into the archive as they were:
    # a zip-slip for whoever extracted it (Cairn's own extract refused the archive).
    keys = {
        "%2E%2E/%2E%2E/evil.txt": "evil.txt",
        "%2Fabs.txt": "abs.txt",
        "a%5C%2E%2E%5C%2E%2E%5Cwin.txt": "a/win.txt",
        "ok/%2E/fine.txt": "ok/fine.txt",
    }
    async with small_chunks_system.client(user()) as c:
        b = await bucket(c)
        for i, quoted in enumerate(keys):
            r = await c.put(f"/v1/buckets/{b}/objects/{quoted}", content=b"%d" % i)
            assert r.status_code == 201, (quoted, r.text)

        async def listed() -> bool:
            r = await c.get(f"/v1/buckets/{b}/objects")
            return len(r.json().get("contents", r.json().get("items", []))) == len(keys)

        await wait_until(listed)
        tid = await start(
            c,
            {
                "type": "compress",
                "params": {"bucket": b, "prefix": "", "output": {"file_name": "k.zip"}},
            },
        )
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t["error"]
        assert sorted(r["result"] for r in t["results"]) == sorted(keys.values())
        data = (await c.get(f"/v1/files/{t['result_file_ids'][0]}/content")).content
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert sorted(z.namelist()) == sorted(keys.values())
        back = await bucket(c)
        t = await extract(c, t["result_file_ids"][0], output={"bucket": back})
        assert t["status"] == "COMPLETED", t["error"]


async def put_objects(c: httpx.AsyncClient, b: str, content: dict[str, bytes]) -> list[str]:
    """PUT each key (content type and metadata given), listed by the read model; ids."""
    for key, data in content.items():
        r = await c.put(
            f"/v1/buckets/{b}/objects/{key}",
            content=data,
            headers={"Content-Type": "image/jpeg", "X-Amz-Meta-Origin": key},
        )
        assert r.status_code in (200, 201), r.text

    async def projected() -> bool:
        r = await c.get("/v1/files", params={"bucket": b})
        return bool(r.json()["total"] == len(content))

    await wait_until(projected)
    return [object_file_id(b, k) for k in content]


async def listing(c: httpx.AsyncClient, b: str, prefix: str = "") -> list[str]:
    r = await c.get(f"/v1/buckets/{b}/objects", params={"prefix": prefix})
    assert r.status_code == 200, r.text
    return [i["key"] for i in r.json()["items"]]


PHOTOS = {"x/a/1.jpg": b"one a", "x/b/1.jpg": b"one b", "x/c/d/2.jpg": b"two" * 1000}


async def test_copy_objects_by_prefix_makes_objects_keyed_by_their_relative_keys(
    small_chunks_system: System,
) -> None:
    """`aws s3 cp --recursive s3://src/x/ s3://dst/p/`: `x/a/1.jpg` -> `p/a/1.jpg`, listed
    by the destination bucket, with the source's bytes, content type and metadata (no
    task marker added); `a/1.jpg` and `b/1.jpg` do not collide. Nothing is a plain file."""
    async with small_chunks_system.client(user()) as c:
        src, dst = await bucket(c), await bucket(c)
        await put_objects(c, src, PHOTOS)
        tid = await start(
            c,
            {
                "type": "copy",
                "params": {"bucket": src, "prefix": "x/", "to": {"bucket": dst, "prefix": "p/"}},
            },
        )
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t["error"]
        keys = ["p/a/1.jpg", "p/b/1.jpg", "p/c/d/2.jpg"]
        assert [r["key"] for r in t["results"]] == keys
        assert [r["result"] for r in t["results"]] == [object_file_id(dst, k) for k in keys]
        assert t["progress"]["items_failed"] == 0

        async def all_listed() -> bool:
            return await listing(c, dst) == keys

        await wait_until(all_listed)
        assert await objects(c, dst, keys) == dict(zip(keys, PHOTOS.values(), strict=True))
        for key, source in zip(keys, PHOTOS, strict=True):
            r = await c.head(f"/v1/buckets/{dst}/objects/{key}")
            assert r.headers["content-type"] == "image/jpeg"
            assert r.headers["x-amz-meta-origin"] == source
            meta = (await c.get(f"/v1/files/{object_file_id(dst, key)}")).json()
            assert meta["metadata"] == {"origin": source}, meta
        # The sources are still there (a copy).
        assert await listing(c, src) == sorted(PHOTOS)

        # A plain file copied into the bucket is still a plain file, named prefix + name.
        plain = await upload(c, b"plain", "plain.txt")
        t = await finished(
            c,
            await start(
                c,
                {
                    "type": "copy",
                    "params": {"files": [plain], "to": {"bucket": dst, "prefix": "c-"}},
                },
            ),
        )
        assert t["status"] == "COMPLETED", t["error"]
        assert (
            t["results"][0]["result"] == item_file_id(t["id"], 0) and "key" not in t["results"][0]
        )
        meta = (await c.get(f"/v1/files/{item_file_id(t['id'], 0)}")).json()
        assert meta["name"] == "c-plain.txt" and meta["bucket"] == dst and meta.get("key") is None


async def test_copy_objects_onto_taken_keys_fails_with_nothing_written_or_replaces(
    small_chunks_system: System,
) -> None:
    async with small_chunks_system.client(user()) as c:
        src, dst = await bucket(c), await bucket(c)
        await put_objects(c, src, PHOTOS)
        r = await c.put(f"/v1/buckets/{dst}/objects/b/1.jpg", content=b"theirs")
        assert r.status_code in (200, 201), r.text
        body = {"bucket": src, "prefix": "x/", "to": {"bucket": dst}}
        keys = ["a/1.jpg", "b/1.jpg", "c/d/2.jpg"]
        streams = [f"file-{object_file_id(dst, k)}" for k in keys]

        async def taken_listed() -> bool:
            return await listing(c, dst) == ["b/1.jpg"]

        await wait_until(taken_listed)
        t = await finished(c, await start(c, {"type": "copy", "params": body}))
        assert t["status"] == "FAILED" and t["error"]["code"] == "target_exists", t
        assert t["error"]["details"]["names"] == ["b/1.jpg"] and t["results"] == []
        # Nothing written: only the taken key's own PUT.
        assert await count_events(small_chunks_system.pool, "FileCreated", streams) == 1
        assert (await objects(c, dst, ["b/1.jpg"]))["b/1.jpg"] == b"theirs"

        t = await finished(
            c, await start(c, {"type": "copy", "params": {**body, "overwrite": True}})
        )
        assert t["status"] == "COMPLETED", t["error"]
        assert [r.get("replaced") for r in t["results"]] == [
            None,
            [object_file_id(dst, "b/1.jpg")],
            None,
        ]
        assert await objects(c, dst, keys) == dict(zip(keys, PHOTOS.values(), strict=True))
        assert await count_events(small_chunks_system.pool, "FileReplaced", streams) == 1


async def test_move_objects_by_files_keys_them_by_their_last_segment(
    small_chunks_system: System,
) -> None:
    """`aws s3 mv s3://src/x/a/1.jpg s3://dst/p/`: named by `files`, a copy is keyed
    `to.prefix` + the key's last segment; the sources are deleted. Two sources on one key
    (`x/a/1.jpg`, `x/b/1.jpg`) are refused before anything is written."""
    async with small_chunks_system.client(user()) as c:
        src, dst = await bucket(c), await bucket(c)
        ids = await put_objects(c, src, PHOTOS)
        to = {"bucket": dst, "prefix": "p/"}
        t = await finished(c, await start(c, {"type": "move", "params": {"files": ids, "to": to}}))
        assert t["status"] == "FAILED" and t["error"]["code"] == "duplicate_target", t
        assert t["error"]["details"]["key"] == "p/1.jpg" and t["results"] == []
        made = [f"file-{object_file_id(dst, k)}" for k in ("p/1.jpg", "p/2.jpg")]
        assert await count_events(small_chunks_system.pool, "FileCreated", made) == 0

        moved = [ids[0], ids[2]]
        t = await finished(
            c, await start(c, {"type": "move", "params": {"files": moved, "to": to}})
        )
        assert t["status"] == "COMPLETED", t["error"]
        assert [r["key"] for r in t["results"]] == ["p/1.jpg", "p/2.jpg"]
        assert await objects(c, dst, ["p/1.jpg", "p/2.jpg"]) == {
            "p/1.jpg": PHOTOS["x/a/1.jpg"],
            "p/2.jpg": PHOTOS["x/c/d/2.jpg"],
        }
        for fid in moved:
            assert (await c.get(f"/v1/files/{fid}")).status_code == 404

        async def sources_gone() -> bool:
            return await listing(c, src) == ["x/b/1.jpg"]

        await wait_until(sources_gone)


async def test_a_key_prefix_copies_objects_only_and_keys_must_be_keys(
    small_chunks_system: System,
) -> None:
    """A `to.prefix` with `/` is a key prefix: refused into `default` and for a plain-file
    source (400 naming the field); a relative key that is no key (the prefix selected the
    object itself: rel is empty) fails the task with nothing written."""
    async with small_chunks_system.client(user()) as c:
        src, dst = await bucket(c), await bucket(c)
        ids = await put_objects(c, src, {"k/only.txt": b"x"})
        plain = await upload(c, b"plain", "plain.txt")
        for files, to in (
            (ids, {"bucket": "default", "prefix": "p/"}),
            ([ids[0], plain], {"bucket": dst, "prefix": "p/"}),
        ):
            r = await c.post(
                "/v1/tasks", json={"type": "copy", "params": {"files": files, "to": to}}
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"]["details"]["field"] == "params.to.prefix"
        body = {"bucket": src, "prefix": "k/only.txt", "to": {"bucket": dst}}
        t = await finished(c, await start(c, {"type": "copy", "params": body}))
        assert t["status"] == "FAILED" and t["error"]["code"] == "invalid_key", t
        assert t["results"] == [] and await listing(c, dst) == []


async def test_a_move_onto_another_of_its_sources_is_refused_with_nothing_written(
    small_chunks_system: System,
) -> None:
    """Moving everything under `a/` of a bucket into `a/a/` of itself would put `a/1` onto
    `a/a/1`, a source still to be moved: without overwrite that was `target_exists` (and
    its advice, overwrite, let the outcome hang on which item ran first). Refused with
    `target_is_source` naming both, overwrite or not, before anything is written."""
    async with small_chunks_system.client(user()) as c:
        b = await bucket(c)
        content = {"a/1": b"one", "a/a/1": b"inner"}
        ids = await put_objects(c, b, content)
        for overwrite in (False, True):
            body = {"bucket": b, "prefix": "a/", "to": {"bucket": b, "prefix": "a/a/"}}
            t = await finished(
                c, await start(c, {"type": "move", "params": {**body, "overwrite": overwrite}})
            )
            assert t["status"] == "FAILED" and t["error"]["code"] == "target_is_source", t
            assert t["error"]["details"] == {
                "source": ids[0],
                "key": "a/a/1",
                "conflicting_source": ids[1],
            }
            assert "'a/a/1'" in t["error"]["message"] and t["results"] == []
        assert await objects(c, b, list(content)) == content
        made = [f"file-{object_file_id(b, k)}" for k in ("a/a/1", "a/a/a/1")]
        assert await count_events(small_chunks_system.pool, "FileReplaced", made) == 0
        assert await count_events(small_chunks_system.pool, "FileCreated", made) == 1
        assert await count_events(small_chunks_system.pool, "FileDeleted", made) == 0

        # Into another prefix nothing is a source: moved.
        body = {"bucket": b, "prefix": "a/", "to": {"bucket": b, "prefix": "z/"}}
        t = await finished(c, await start(c, {"type": "move", "params": body}))
        assert t["status"] == "COMPLETED", t["error"]
        assert await objects(c, b, ["z/1", "z/a/1"]) == {"z/1": b"one", "z/a/1": b"inner"}
