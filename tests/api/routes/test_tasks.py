"""Background tasks end to end: the API, the read model and the task worker, on the real
Postgres and broker. copy / move / delete, bad input, pause / resume / cancel mid-task,
priority order with a busy worker."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from domain.files.keys import object_file_id
from domain.tasks.ids import item_file_id
from tests.api.answers import user
from tests.api.documented import assert_documented
from tests.api.tasks_helpers import (
    bucket,
    clone_files,
    count_events,
    finished,
    start,
    stop_mid_run,
    task,
    upload,
)
from tests.archives import zip_of
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

MAX_ITEMS = 500
QUOTA_USER = "t-quota"
QUOTA_USER_2 = "t-quota-2"
QUOTA_USER_3 = "t-quota-3"
QUOTA_USER_4 = "t-quota-4"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sys_(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        task_max_items=MAX_ITEMS,
        task_lease_seconds=3.0,
        quotas=(
            (QUOTA_USER, 100_000),
            (QUOTA_USER_2, 100_000),
            (QUOTA_USER_3, 100_000),
            (QUOTA_USER_4, 200_000),
        ),
    ) as s:
        yield s


def assert_error(r: object, status: int, code: str, field: str | None = None) -> dict[str, object]:
    import httpx

    assert isinstance(r, httpx.Response)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"} and body["error"]["code"] == code, body
    if field is not None:
        assert body["error"]["details"]["field"] == field, body
    return body["error"]  # type: ignore[no-any-return]


async def test_copy_move_delete_share_manifests_and_record_each_item(sys_: System) -> None:
    alice = user()
    async with sys_.client(alice) as c:
        a = await upload(c, b"alpha" * 100, "a.txt")
        b = await upload(c, b"beta" * 100, "b.txt")
        dst, m = await bucket(c), await bucket(c)
        tid = await start(
            c,
            {"type": "copy", "params": {"files": [a, b], "to": {"bucket": dst, "prefix": "x-"}}},
        )
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t
        assert t["progress"]["items_done"] == 2 and t["progress"]["percent"] == 100.0
        # The bytes copied end at the total the task was created with (it was 0).
        assert t["progress"]["bytes_done"] == t["progress"]["bytes_total"] == 900
        copies = [r["result"] for r in t["results"]]
        assert [r["source"] for r in t["results"]] == [a, b]
        for src, cp in zip((a, b), copies, strict=True):
            s, d = (
                (await c.get(f"/v1/files/{src}")).json(),
                (await c.get(f"/v1/files/{cp}")).json(),
            )
            assert d["bucket"] == dst and d["name"] == f"x-{s['name']}"
            assert d["sha256"] == s["sha256"] and d["chunk_count"] == s["chunk_count"]
            got = await c.get(f"/v1/files/{cp}/content")
            assert got.content == (await c.get(f"/v1/files/{src}/content")).content

        tid = await start(c, {"type": "move", "params": {"files": [a], "to": {"bucket": m}}})
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t
        moved = t["results"][0]["result"]
        assert (await c.get(f"/v1/files/{a}")).status_code == 404
        assert (await c.get(f"/v1/files/{moved}")).json()["bucket"] == m

        async def projected() -> bool:
            r = await c.get("/v1/files", params={"bucket": dst, "prefix": "x-"})
            return bool(r.json()["total"] == 2)

        await wait_until(projected)
        tid = await start(
            c, {"type": "delete", "params": {"bucket": dst, "prefix": "x-"}, "priority": 90}
        )
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED" and t["priority"] == 90, t
        for f in copies:
            assert (await c.get(f"/v1/files/{f}")).status_code == 404
        assert (await c.get(f"/v1/files/{b}")).status_code == 200  # untouched

        # The read model: list (filters, X-Total-Count) and stats.
        async def listed() -> object:
            r = await c.get("/v1/tasks", params={"status": "completed", "sort": "created_at"})
            return r if r.json()["total"] == 3 else None

        r = await wait_until(listed)
        assert r.headers["x-total-count"] == "3"
        assert {i["type"] for i in r.json()["items"]} == {"copy", "move", "delete"}
        r = await c.get("/v1/tasks", params={"type": "move"})
        assert r.json()["total"] == 1 and r.json()["items"][0]["type"] == "move"
        await assert_documented(c, "get", "/v1/tasks", r)
        r = await c.get("/v1/tasks/stats")
        await assert_documented(c, "get", "/v1/tasks/stats", r)
        stats = r.json()
        assert stats["by_status"]["COMPLETED"] == 3 and stats["total"] == 3
        assert stats["by_type"]["copy"] == {"COMPLETED": 1}
        assert stats["items_processed"] == 5
    async with sys_.client(user()) as other:  # nobody else sees any of it
        assert (await other.get(f"/v1/tasks/{tid}")).status_code == 404
        assert (await other.get("/v1/tasks")).json()["total"] == 0
        assert_error(await other.post(f"/v1/tasks/{tid}/cancel"), 404, "task_not_found")


async def test_a_task_read_without_its_results_is_the_same_task_less_the_item_list(
    sys_: System,
) -> None:
    async with sys_.client(user()) as c:
        files = [await upload(c, f"file {i}".encode(), f"f{i}.txt") for i in range(3)]
        tid = await start(
            c, {"type": "copy", "params": {"files": files, "to": {"bucket": await bucket(c)}}}
        )
        whole = await finished(c, tid)
        assert whole["status"] == "COMPLETED" and len(whole["results"]) == 3, whole
        for off in ("false", "0"):
            r = await c.get(f"/v1/tasks/{tid}", params={"results": off})
            assert r.status_code == 200, r.text
            lean = r.json()
            assert "results" not in lean
            assert lean == {k: v for k, v in whole.items() if k != "results"}
        assert (await c.get(f"/v1/tasks/{tid}", params={"results": "true"})).json() == whole
        assert_error(
            await c.get(f"/v1/tasks/{tid}", params={"results": "maybe"}), 400, "validation_error"
        )


async def test_bad_input_is_a_4xx_naming_the_field_and_creates_nothing(sys_: System) -> None:
    alice, bob = user(), user()
    async with sys_.client(alice) as c, sys_.client(bob) as cb:
        mine = await upload(c, b"x" * 10)
        theirs = await upload(cb, b"y" * 10)
        their_bucket = await bucket(cb)
        cases = [
            ({"type": "shred", "params": {}}, 400, "invalid_task_type", "type"),
            ({"type": "copy", "params": {"files": [mine]}}, 400, "invalid_params", "params.to"),
            (
                {"type": "copy", "params": {"files": [mine], "to": {"bucket": "b"}, "x": 1}},
                400,
                "invalid_params",
                "params.x",
            ),
            ({"type": "delete", "params": {"files": []}}, 400, "invalid_params", "params.files"),
            (
                {"type": "delete", "params": {"files": [3]}},
                400,
                "invalid_params",
                "params.files[0]",
            ),
            ({"type": "delete", "params": {}}, 400, "invalid_params", "params.files"),
            (
                {"type": "delete", "params": {"files": [mine] * (MAX_ITEMS + 1)}},
                400,
                "too_many_items",
                "params.files",
            ),
            (
                {
                    "type": "compress",
                    "params": {"files": [mine], "output": {"file_name": "a"}, "format": "rar"},
                },
                400,
                "invalid_params",
                "params.format",
            ),
            # Names the archive or the copies could not hold as files (a path, control
            # characters): before, the task ran and made such a file.
            *[
                (
                    {"type": "compress", "params": {"files": [mine], "output": {"file_name": n}}},
                    400,
                    "invalid_params",
                    "params.output.file_name",
                )
                for n in ("../o\n.zip", "a/b.zip", "..", "red\x1b[31m.zip")
            ],
            (
                {
                    "type": "copy",
                    "params": {"files": [mine], "to": {"bucket": "default", "prefix": "a\n"}},
                },
                400,
                "invalid_params",
                "params.to.prefix",
            ),
            ({"type": "delete", "params": {"files": [theirs]}}, 404, "file_not_found", None),
            (
                {"type": "copy", "params": {"files": [mine], "to": {"bucket": their_bucket}}},
                404,
                "bucket_not_found",
                None,
            ),
            (
                {"type": "move", "params": {"files": [mine], "to": {"bucket": "no-such-bucket"}}},
                404,
                "bucket_not_found",
                None,
            ),
            ({"type": "delete", "params": {"files": ["nope"]}}, 404, "file_not_found", None),
        ]
        for body, status, code, field in cases:
            assert_error(await c.post("/v1/tasks", json=body), status, code, field)
        r = await c.post(
            "/v1/tasks", json={"type": "delete", "params": {"files": [mine]}, "priority": 101}
        )
        assert r.status_code == 400, r.text
        assert (await c.get("/v1/tasks")).json()["total"] == 0
        assert (await cb.get(f"/v1/files/{theirs}")).status_code == 200


async def test_idempotency_key_gives_the_same_task_once(sys_: System) -> None:
    async with sys_.client(user()) as c:
        f = await upload(c, b"z" * 10)
        body = {
            "type": "copy",
            "params": {"files": [f], "to": {"bucket": "default", "prefix": "c-"}},
        }
        k = secrets.token_hex(8)
        first = await c.post("/v1/tasks", json=body, headers={"Idempotency-Key": k})
        again = await c.post("/v1/tasks", json=body, headers={"Idempotency-Key": k})
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        await finished(c, first.json()["id"])
        t = await task(c, first.json()["id"])
        assert t["status"] == "COMPLETED"
        assert await count_events(sys_.pool, "TaskCreated", [f"task-{first.json()['id']}"]) == 1


async def test_pause_resume_and_cancel_mid_task(sys_: System) -> None:
    alice = user()
    # A copy goes 50 files at a time too, several at once: enough of them that a pause
    # after the first checkpoint lands mid-task.
    n = 450
    async with sys_.client(alice) as c:
        seed = await upload(c, b"seed" * 10)
        ids = await clone_files(sys_.pool, c, alice, seed, n, "p/")
        tid = await start(
            c,
            {"type": "copy", "params": {"files": ids, "to": {"bucket": "default", "prefix": "c-"}}},
        )

        paused = await stop_mid_run(sys_.pool, c, tid, "pause")
        assert paused["status"] == "PAUSED" and 0 < paused["progress"]["items_done"] < n, paused
        # Stopped: its last event is the pause, or the checkpoint written as it stopped.
        assert (await c.post(f"/v1/tasks/{tid}/pause")).json()["status"] == "PAUSED"

        r = await c.post(f"/v1/tasks/{tid}/resume")
        assert r.status_code == 200 and r.json()["status"] == "PENDING", r.text
        await assert_documented(c, "post", "/v1/tasks/{task_id}/resume", r)
        t = await finished(c, tid)
        await assert_documented(c, "get", "/v1/tasks/{task_id}", await c.get(f"/v1/tasks/{tid}"))
        assert t["status"] == "COMPLETED" and t["attempts"] >= 2, t
        assert [r["index"] for r in t["results"]] == list(range(n))
        assert all("error" not in r for r in t["results"])
        new = [item_file_id(tid, i) for i in range(n)]
        assert [r["result"] for r in t["results"]] == new
        # Each copy created exactly once, though the run was interrupted.
        assert await count_events(sys_.pool, "FileCreated", [f"file-{f}" for f in new]) == n
        assert_error(await c.post(f"/v1/tasks/{tid}/pause"), 409, "task_finished")
        r = await c.post(f"/v1/tasks/{tid}/resume")
        assert_error(r, 409, "task_finished")
        await assert_documented(c, "post", "/v1/tasks/{task_id}/resume", r)

        # A delete goes 50 files at a time, several at once: enough of them that a cancel
        # after the first checkpoint lands mid-task.
        ids += await clone_files(sys_.pool, c, alice, seed, 50, "q/")  # 500: the limit here
        tid = await start(c, {"type": "delete", "params": {"files": ids}})
        t = await stop_mid_run(sys_.pool, c, tid, "cancel")
        assert t["status"] == "CANCELLED" and t["finished_at"], t
        done = t["progress"]["items_done"]
        assert 0 < done < len(ids), t
        # What was recorded is what happened: those files are deleted, the rest are not.
        assert await count_events(sys_.pool, "FileDeleted", [f"file-{f}" for f in ids]) == done
        assert_error(await c.post(f"/v1/tasks/{tid}/pause"), 409, "task_finished")


async def test_a_busy_worker_takes_the_highest_priority_first(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    async with isolated_system(pg_server.url, kafka_server.bootstrap, task_concurrency=1) as s:
        await s.stop("tasks")  # queue up first, then let one single-slot worker at them
        alice = user()
        async with s.client(alice) as c:
            f = await upload(c, b"p" * 10)
            order = {}
            for i, prio in enumerate((10, 90, 50, 90)):
                to = {"bucket": "default", "prefix": f"q{i}-"}
                order[
                    await start(
                        c,
                        {
                            "type": "copy",
                            "params": {"files": [f], "to": to},
                            "priority": prio,
                        },
                    )
                ] = prio

            async def queued() -> bool:
                return (await c.get("/v1/tasks", params={"status": "PENDING"})).json()["total"] == 4

            await wait_until(queued)
            s.start("tasks")
            done = [await finished(c, t) for t in order]
            started = sorted(done, key=lambda t: t["started_at"])
            assert [t["priority"] for t in started] == [90, 90, 50, 10]
            # Equal priorities: the older first.
            first_90 = [t["id"] for t in started if t["priority"] == 90]
            assert first_90 == [t for t in order if order[t] == 90]


async def test_copy_tasks_stop_at_the_quota(sys_: System) -> None:
    """Five copy tasks of one 30 KB file, started together, against 100 KB: the file and
    two copies fit, so exactly two tasks complete and three fail with quota_exceeded.
    (Whether they overlap is up to the workers; tests/projections/test_usage.py holds the
    race itself.)"""
    async with sys_.client(QUOTA_USER) as c:
        seed = await upload(c, os.urandom(30_000))
        await wait_until(lambda: _listed(c, seed))
        ids = [
            await start(
                c,
                {
                    "type": "copy",
                    "params": {"files": [seed], "to": {"bucket": "default", "prefix": f"{i}-"}},
                },
            )
            for i in range(5)
        ]
        done = [await finished(c, tid) for tid in ids]
        assert sorted(t["status"] for t in done) == ["COMPLETED"] * 2 + ["FAILED"] * 3, done
        for t in done:
            if t["status"] == "FAILED":
                assert t["error"]["code"] == "quota_exceeded", t


async def test_a_copy_of_many_files_stops_at_the_quota_in_item_order(sys_: System) -> None:
    """Twelve files of 5 KB copied against 100 KB (60 KB used): the copies go several at
    once, but the quota is taken in item order, so exactly the first eight are made and
    recorded, the ninth fails the task, and none after it is begun."""
    async with sys_.client(QUOTA_USER_2) as c:
        seeds = [await upload(c, os.urandom(5_000), f"s{i}") for i in range(12)]
        for seed in seeds:
            await wait_until(lambda seed=seed: _listed(c, seed))
        tid = await start(
            c,
            {
                "type": "copy",
                "params": {"files": seeds, "to": {"bucket": "default", "prefix": "copy-"}},
            },
        )
        t = await finished(c, tid)
        assert t["status"] == "FAILED" and t["error"]["code"] == "quota_exceeded", t
        assert [r["index"] for r in t["results"]] == list(range(8)), t["error"]
        assert all("error" not in r for r in t["results"])
        made = [
            await count_events(sys_.pool, "FileCreated", [f"file-{item_file_id(tid, i)}"])
            for i in range(12)
        ]
        assert made == [1] * 8 + [0] * 4, made


async def test_object_copies_stop_at_the_quota_and_a_same_size_overwrite_passes(
    sys_: System,
) -> None:
    """Objects copied into a bucket take the quota as a plain copy does: three objects of
    20 KB (60 KB used) copied by prefix against 100 KB make the first two (in item order),
    the third fails the task with quota_exceeded and leaves nothing at its key. At the
    quota then, a copy and a move with `overwrite` onto keys holding as many bytes pass,
    as an object PUT does: a put is asked only what it adds to its key."""
    async with sys_.client(QUOTA_USER_3) as c:
        src, dst = await bucket(c), await bucket(c)
        keys = ["x/1", "x/2", "x/3"]
        for key in keys:
            r = await c.put(f"/v1/buckets/{src}/objects/{key}", content=os.urandom(20_000))
            assert r.status_code in (200, 201), r.text
        ids = [object_file_id(src, k) for k in keys]
        for fid in ids:
            await wait_until(lambda fid=fid: _listed(c, fid))
        body = {"bucket": src, "prefix": "x/", "to": {"bucket": dst}}
        t = await finished(c, await start(c, {"type": "copy", "params": body}))
        assert t["status"] == "FAILED" and t["error"]["code"] == "quota_exceeded", t
        assert t["error"]["details"]["quota"] == 100_000, t["error"]
        assert [(r["index"], r["key"]) for r in t["results"]] == [(0, "1"), (1, "2")]
        made = [f"file-{object_file_id(dst, k)}" for k in ("1", "2", "3")]
        assert [await count_events(sys_.pool, "FileCreated", [m]) for m in made] == [1, 1, 0]
        assert (await c.get(f"/v1/buckets/{dst}/objects/3")).status_code == 404
        for k in ("1", "2"):
            await wait_until(lambda k=k: _listed(c, object_file_id(dst, k)))

        for kind, source in (("copy", ids[0]), ("move", ids[1])):
            params = {"files": [source], "to": {"bucket": dst}, "overwrite": True}
            t = await finished(c, await start(c, {"type": kind, "params": params}))
            assert t["status"] == "COMPLETED", (kind, t["error"])
            (item,) = t["results"]
            assert item["replaced"] == [item["result"]], item
        assert await count_events(sys_.pool, "FileReplaced", made) == 2
        assert (await c.get(f"/v1/files/{ids[1]}")).status_code == 404  # moved


async def test_extract_members_overwriting_objects_at_the_quota_pass_as_puts(
    sys_: System,
) -> None:
    """An extract into a bucket asks the quota what each member adds to its key, as an
    object PUT does. At the quota (200 KB: two archives, the objects they overwrite and a
    filler), members of 20 KB replacing an object of 20 KB and one of 30 KB with
    `overwrite` complete (10 KB freed once listed); a member adding 10 KB and one byte
    to its key is refused with quota_exceeded as before (asked those bytes, `replaced` the
    key's 20 KB), the object left as it was."""
    quota = 200_000
    async with sys_.client(QUOTA_USER_4) as c:
        b = await bucket(c)
        same = {"k/1": os.urandom(20_000), "k/2": os.urandom(20_000)}
        fits = await upload(c, zip_of(same), "same.zip")
        past = await upload(c, zip_of({"k/1": os.urandom(30_001)}), "past.zip")
        for key, size in (("k/1", 20_000), ("k/2", 30_000)):
            r = await c.put(f"/v1/buckets/{b}/objects/{key}", content=os.urandom(size))
            assert r.status_code == 201, r.text
        targets = [object_file_id(b, k) for k in same]
        for fid in (fits, past, *targets):
            await wait_until(lambda fid=fid: _listed(c, fid))
        used = sum(f["size"] for f in (await c.get("/v1/files")).json()["items"])
        await upload(c, os.urandom(quota - used), "filler.bin")
        r = await c.put(f"/v1/buckets/{b}/objects/one-more", content=b"x")
        assert r.status_code == 413, r.text  # at the quota: one byte more is refused

        params = {"file": fits, "output": {"bucket": b}, "overwrite": True}
        t = await finished(c, await start(c, {"type": "extract", "params": params}))
        assert t["status"] == "COMPLETED", t["error"]
        assert [(r["key"], r["replaced"]) for r in t["results"]] == [
            (k, [fid]) for k, fid in zip(same, targets, strict=True)
        ]
        for key, data in same.items():
            assert (await c.get(f"/v1/buckets/{b}/objects/{key}")).content == data
        await wait_until(lambda: _size(c, targets[1], 20_000))  # k/2 down from 30 KB

        params = {"file": past, "output": {"bucket": b}, "overwrite": True}
        t = await finished(c, await start(c, {"type": "extract", "params": params}))
        assert t["status"] == "FAILED" and t["error"]["code"] == "quota_exceeded", t
        details = t["error"]["details"]
        assert (details["quota"], details["requested"]) == (quota, 10_001), details
        assert details["replaced"] == 20_000, details
        assert (await c.get(f"/v1/buckets/{b}/objects/k/1")).content == same["k/1"]
        streams = [f"file-{fid}" for fid in targets]
        assert await count_events(sys_.pool, "FileReplaced", streams) == 2


async def _size(c: httpx.AsyncClient, file_id: str, size: int) -> bool:
    r = await c.get("/v1/files")
    return any(f["id"] == file_id and f["size"] == size for f in r.json()["items"])


async def _listed(c: httpx.AsyncClient, file_id: str) -> bool:
    r = await c.get("/v1/files")
    return any(f["id"] == file_id for f in r.json()["items"])


async def test_an_admins_task_names_only_the_admins_own_files_and_buckets(sys_: System) -> None:
    # A task runs as its owner: the worker reads only the owner's files. An admin's task
    # naming another user's file was accepted (202) and then failed at run time: the
    # extract with "the archive is gone", the copy's item with file_not_found.
    bob = user()
    async with sys_.client(bob) as b, sys_.client(user(), admin=True) as a:
        f = await upload(b, b"bob's", "b.txt")
        theirs = await bucket(b)
        for body in (
            {"type": "extract", "params": {"file": f}},
            {"type": "copy", "params": {"files": [f], "to": {"bucket": "default"}}},
        ):
            assert_error(await a.post("/v1/tasks", json=body), 404, "file_not_found")
        mine = await upload(a, b"admin's", "a.txt")
        body = {"type": "copy", "params": {"files": [mine], "to": {"bucket": theirs}}}
        assert_error(await a.post("/v1/tasks", json=body), 404, "bucket_not_found")


async def test_the_list_refuses_filters_it_cannot_match(sys_: System) -> None:
    # An unknown `type` was an empty 200 (a typo looked like "no tasks"), and one holding
    # a NUL a 500 (PostgreSQL's text cannot hold it); `status` was already checked.
    async with sys_.client(user()) as c:
        files = [await upload(c, b"listed", "l.txt")]
        tid = await start(
            c, {"type": "copy", "params": {"files": files, "to": {"bucket": await bucket(c)}}}
        )
        await finished(c, tid)
        for value in ("bogus", "", "\x00", "copy\x00"):
            body = assert_error(
                await c.get("/v1/tasks", params={"type": value}), 400, "invalid_query", "type"
            )
            assert "copy" in str(body["message"]), body  # names what is allowed
        for value in ("copy", "COPY"):
            r = await c.get("/v1/tasks", params={"type": value})
            assert r.status_code == 200, r.text
            assert [t["id"] for t in r.json()["items"]] == [tid]
            assert r.headers["X-Total-Count"] == "1"
        r = await c.get("/v1/tasks", params={"type": "move"})
        assert (
            r.status_code == 200 and r.json()["items"] == [] and r.headers["X-Total-Count"] == "0"
        )
