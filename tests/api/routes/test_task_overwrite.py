"""delete by age (`older_than`) and name collisions (`overwrite`) for copy, move and
extract, end to end: what is deleted or replaced, what fails with nothing written, and the
400s for bad values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from domain.tasks.ids import item_file_id
from tests.api.answers import user
from tests.api.tasks_helpers import bucket, clone_files, count_events, finished, start, upload
from tests.archives import zip_of
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sys_(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as s:
        yield s


async def listed(c: httpx.AsyncClient, n: int, **params: str) -> None:
    """Wait for the files read model to show n files (tasks resolve names from it)."""

    async def shown() -> bool:
        return bool((await c.get("/v1/files", params=params)).json()["total"] == n)

    await wait_until(shown)


def error_field(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    return str(r.json()["error"]["details"]["field"])


async def test_delete_older_than_deletes_only_the_old_files(sys_: System) -> None:
    owner = user()
    async with sys_.client(owner) as c:
        seed = await upload(c, b"s" * 100, "new-seed.txt")
        b = await bucket(c)
        long_ago = datetime.now(UTC) - timedelta(days=40)
        old_default = await clone_files(sys_.pool, c, owner, seed, 3, "old-", at=long_ago)
        old_b = await clone_files(sys_.pool, c, owner, seed, 2, "old-", at=long_ago, bucket=b)
        new_b = await clone_files(sys_.pool, c, owner, seed, 2, "new-", bucket=b)
        await listed(c, 4, bucket=b)
        await listed(c, 4, bucket="default")

        # With a bucket: only that bucket's old files (a timestamp).
        cutoff = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        tid = await start(c, {"type": "delete", "params": {"bucket": b, "older_than": cutoff}})
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t
        assert sorted(r["source"] for r in t["results"]) == sorted(old_b)
        assert t["params"]["cutoff"] == datetime.fromisoformat(cutoff).isoformat()
        for f in old_b:
            assert (await c.get(f"/v1/files/{f}")).status_code == 404
        for f in [*new_b, *old_default, seed]:
            assert (await c.get(f"/v1/files/{f}")).status_code == 200

        # Alone (a duration): every bucket.
        await listed(c, 2, bucket=b)
        tid = await start(c, {"type": "delete", "params": {"older_than": "7d"}})
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t
        assert sorted(r["source"] for r in t["results"]) == sorted(old_default)
        for f in [*new_b, seed]:
            assert (await c.get(f"/v1/files/{f}")).status_code == 200

        # Nothing older any more: a 400 like any empty selection.
        await listed(c, 1, bucket="default")
        r = await c.post("/v1/tasks", json={"type": "delete", "params": {"older_than": "P7D"}})
        assert error_field(r) == "params.older_than"
        assert r.json()["error"]["code"] == "invalid_params"
    async with sys_.client(user()) as other:  # someone else's old files are not theirs
        r = await other.post("/v1/tasks", json={"type": "delete", "params": {"older_than": "1s"}})
        assert error_field(r) == "params.older_than"


async def test_bad_older_than_and_overwrite_are_400s_naming_the_field(sys_: System) -> None:
    async with sys_.client(user()) as c:
        f = await upload(c, b"x")
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        bad = [
            {"type": "delete", "params": {"older_than": "soon"}},
            {"type": "delete", "params": {"older_than": "0d"}},
            {"type": "delete", "params": {"older_than": "P1Y"}},
            {"type": "delete", "params": {"older_than": future}},
            {"type": "delete", "params": {"older_than": "2026-01-01T00:00:00"}},
            {"type": "delete", "params": {"older_than": "999999999w"}},
            # Year 1 at +14:00 is before year 1 in UTC, which the query cannot carry: it
            # was a 500 (asyncpg's OverflowError).
            {"type": "delete", "params": {"older_than": "0001-01-01T00:00:00+14:00"}},
            {"type": "delete", "params": {"older_than": "0001-01-01T13:59:59+14:00"}},
            {"type": "delete", "params": {"files": [f], "older_than": "1d"}},
        ]
        for body in bad:
            assert error_field(await c.post("/v1/tasks", json=body)) == "params.older_than", body
        r = await c.post("/v1/tasks", json={"type": "delete", "params": {"older_than": 5}})
        assert error_field(r) == "params.older_than"
        r = await c.post("/v1/tasks", json={"type": "delete", "params": {"prefix": "a"}})
        assert error_field(r) == "params.files"
        for kind, params in (
            ("copy", {"files": [f], "to": {"bucket": "default"}, "overwrite": "yes"}),
            ("move", {"files": [f], "to": {"bucket": "default"}, "overwrite": 1}),
            ("extract", {"file": f, "overwrite": None}),
        ):
            r = await c.post("/v1/tasks", json={"type": kind, "params": params})
            assert error_field(r) == "params.overwrite", (kind, r.text)
        assert (await c.get("/v1/tasks")).json()["total"] == 0


async def test_copy_and_move_onto_a_taken_name_fail_or_replace(sys_: System) -> None:
    async with sys_.client(user()) as c:
        dst = await bucket(c)
        a = await upload(c, b"new a" * 10, "a.txt")
        b = await upload(c, b"new b" * 10, "b.txt")
        taken = await upload(c, b"old a", "a.txt", bucket=dst)
        await listed(c, 1, bucket=dst)

        for kind in ("copy", "move"):
            tid = await start(c, {"type": kind, "params": {"files": [a, b], "to": {"bucket": dst}}})
            t = await finished(c, tid)
            assert t["status"] == "FAILED" and t["error"]["code"] == "target_exists", t
            assert t["error"]["details"]["names"] == ["a.txt"]
            assert t["error"]["details"]["bucket"] == dst
            # The message names them as well: the CLI prints it, not the details.
            assert f"in bucket {dst!r} ('a.txt'); set overwrite" in t["error"]["message"]
            made = [f"file-{item_file_id(tid, i)}" for i in range(2)]
            assert await count_events(sys_.pool, "FileCreated", made) == 0  # nothing written
        for f in (a, b, taken):
            assert (await c.get(f"/v1/files/{f}")).status_code == 200  # nothing moved

        tid = await start(
            c,
            {"type": "move", "params": {"files": [a, b], "to": {"bucket": dst}, "overwrite": True}},
        )
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t
        assert t["results"][0]["replaced"] == [taken] and "replaced" not in t["results"][1]
        assert (await c.get(f"/v1/files/{taken}")).status_code == 404
        assert (await c.get(f"/v1/files/{a}")).status_code == 404  # moved
        new_a = t["results"][0]["result"]
        assert (await c.get(f"/v1/files/{new_a}/content")).content == b"new a" * 10

        async def settled() -> list[str] | None:
            # The read model applies the move's events one at a time, so a listing between
            # the new a.txt's creation and the replaced one's deletion shows both: wait for
            # the deletion and the new file, then look at the names.
            items = (await c.get("/v1/files", params={"bucket": dst})).json()["items"]
            ids = {f["id"] for f in items}
            if taken in ids or new_a not in ids or len(items) < 2:
                return None
            return sorted(f["name"] for f in items)

        names = await wait_until(settled)
        assert names == ["a.txt", "b.txt"]  # one a.txt: replaced, not doubled


def one_zip(name: str, data: bytes) -> bytes:
    return zip_of({name: data, "other.txt": b"other"})


async def test_extract_onto_a_taken_name_fails_with_nothing_written_or_replaces(
    sys_: System,
) -> None:
    async with sys_.client(user()) as c:
        dst = "default"  # files (into a bucket, members become objects: test_task_objects.py)
        taken = await upload(c, b"old", "x-doc.txt")
        archive = await upload(c, one_zip("dir/doc.txt", b"new"), "a.zip")
        await listed(c, 1, bucket=dst, prefix="x-")
        out = {"prefix": "x-"}
        tid = await start(c, {"type": "extract", "params": {"file": archive, "output": out}})
        t = await finished(c, tid)
        assert t["status"] == "FAILED" and t["error"]["code"] == "target_exists", t
        assert t["error"]["details"]["names"] == ["x-doc.txt"]
        made = [f"file-{item_file_id(tid, i)}" for i in range(2)]
        assert await count_events(sys_.pool, "FileCreated", made) == 0
        assert (await c.get(f"/v1/files/{taken}/content")).content == b"old"

        tid = await start(
            c,
            {"type": "extract", "params": {"file": archive, "output": out, "overwrite": True}},
        )
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t
        assert t["results"][0]["replaced"] == [taken]
        assert (await c.get(f"/v1/files/{taken}")).status_code == 404
        got = (await c.get(f"/v1/files/{t['results'][0]['result']}/content")).content
        assert got == b"new"
