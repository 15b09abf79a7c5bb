"""What a task over thousands of objects costs, counted (never timed): commands sent,
event-store reads, the task's events and their bytes, the task states derived.

The objects are written straight to the event store (the lowest layer that is still
honest: the projector and the relay pick them up like any other), then a delete, copy or
compress by bucket + prefix runs in the real task worker against the real PostgreSQL and
broker. Costs must grow linearly with the items, with small constants where a query or
command per item is not needed."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from bus.actors.commandbus import CommandBus
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.eventstore import PostgresEventStore
from domain.events import EventMeta, NewEvent
from domain.files import state as file_state
from domain.files.events import FileCreated, FileReplaced
from domain.files.keys import object_file_id, object_name
from domain.files.state import FileState
from domain.tasks import state as task_state
from domain.tasks.ids import item_command_id, item_file_id
from handlers.tasks import compress, fileops
from handlers.tasks.archive_thread import SMALL_BATCH_MEMBERS
from handlers.tasks.run import TaskRun
from tests.api.answers import user
from tests.api.tasks_helpers import (
    bucket,
    clone_files,
    count_events,
    finished,
    start,
    stop_mid_run,
    upload,
)
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

N = 3000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sys_(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as s:
        yield s


def created_like(
    src: FileCreated, file_id: str, owner: str, bucket: str, key: str | None, at: datetime
) -> FileCreated:
    """A FileCreated for `file_id` with `src`'s content (chunks shared): the object `key`
    of `bucket`, or with no key a plain file of `src`'s name."""
    return FileCreated(
        file_id=file_id,
        owner=owner,
        name=src.name if key is None else object_name(key),
        size=src.size,
        content_type=src.content_type,
        sha256=src.sha256,
        manifest=src.manifest,
        bucket=bucket,
        key=key,
        at=at,
    )


async def many_objects(
    pool: asyncpg.Pool, c: httpx.AsyncClient, owner: str, b: str, prefix: str, n: int
) -> list[str]:
    """`n` tiny objects `prefix00000`... in bucket `b`, sharing one uploaded file's bytes,
    appended to the event store concurrently (its group commit writes them in batches),
    once the files read model has them all. Their ids."""
    source = await upload(c, b"tiny\n", "seed.txt")
    store = PostgresEventStore(pool)
    created = (await store.read_stream(f"file-{source}"))[0].payload
    assert isinstance(created, FileCreated)
    at = datetime.now(UTC)
    keys = [f"{prefix}{i:05d}" for i in range(n)]

    async def put(key: str) -> str:
        fid = object_file_id(b, key)
        ev = created_like(created, fid, owner, b, key, at)
        await store.append(
            f"file-{fid}", 0, [NewEvent.of(ev)], EventMeta(occurred_at=at, owner=owner)
        )
        return fid

    ids: list[str] = []
    for first in range(0, n, 500):
        ids += await asyncio.gather(*(put(k) for k in keys[first : first + 500]))

    async def projected() -> bool:
        got = await pool.fetchval(
            "SELECT count(*) FROM readmodel.files WHERE bucket = $1 AND key LIKE $2 || '%'"
            " AND deleted_at IS NULL",
            b,
            prefix,
        )
        return int(got) == n

    await wait_until(projected, timeout=300, interval=0.2)
    return ids


@dataclass
class Costs:
    commands: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)  # read_stream calls by stream kind
    task_states: int = 0  # TaskStates derived by `replace` (evolve and fold)
    # The worker's own: safe-point reads of its task, loads of the files it works on
    # (queries: one per item, or one per batch of items), its commands at once at most.
    refreshes: int = 0
    file_loads: int = 0
    in_flight: int = 0
    most_in_flight: int = 0

    def per_item(self, n: int) -> dict[str, float]:
        out = {f"cmd {k}": v / n for k, v in self.commands.items()}
        out.update({f"read {k}": v / n for k, v in self.reads.items()})
        out["task states"] = self.task_states / n
        out["worker task reads"] = self.refreshes / n
        out["worker file queries"] = self.file_loads / n
        out["most commands in flight"] = self.most_in_flight
        return out


@contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Costs]:
    costs = Costs()
    send, read = CommandBus.send, PostgresEventStore.read_stream
    replace = task_state.replace
    refresh, load_file = TaskRun.refresh, fileops.load_file
    load_files = getattr(fileops, "load_files", None)

    async def counted_send(self: CommandBus, cmd: Any, *a: Any, **kw: Any) -> Any:
        costs.commands[type(cmd).__name__] += 1
        costs.in_flight += 1
        costs.most_in_flight = max(costs.most_in_flight, costs.in_flight)
        try:
            return await send(self, cmd, *a, **kw)
        finally:
            costs.in_flight -= 1

    async def counted_refresh(self: TaskRun) -> Any:
        costs.refreshes += 1
        return await refresh(self)

    async def counted_load_file(*a: Any) -> Any:
        costs.file_loads += 1
        return await load_file(*a)

    async def counted_load_files(*a: Any) -> Any:
        costs.file_loads += 1
        assert load_files is not None
        return await load_files(*a)

    async def counted_read(self: PostgresEventStore, stream_id: str, *a: Any, **kw: Any) -> Any:
        costs.reads[stream_id.split("-", 1)[0]] += 1
        return await read(self, stream_id, *a, **kw)

    def counted_replace(*a: Any, **kw: Any) -> Any:
        costs.task_states += 1
        return replace(*a, **kw)

    with monkeypatch.context() as m:
        m.setattr(CommandBus, "send", counted_send)
        m.setattr(PostgresEventStore, "read_stream", counted_read)
        m.setattr(task_state, "replace", counted_replace)
        m.setattr(TaskRun, "refresh", counted_refresh)
        for module in (fileops, compress):  # compress imports them by name
            m.setattr(module, "load_file", counted_load_file)
            if load_files is not None:
                m.setattr(module, "load_files", counted_load_files, raising=False)
        yield costs


async def task_events(pool: asyncpg.Pool, task_id: str) -> tuple[Counter[str], int, int]:
    """The task stream's events by type, their total bytes and the largest one's."""
    rows = await pool.fetch(
        "SELECT event_type, octet_length(data::text) AS n FROM eventstore.events"
        " WHERE stream_id = $1",
        f"task-{task_id}",
    )
    return (
        Counter(r["event_type"] for r in rows),
        sum(r["n"] for r in rows),
        max(r["n"] for r in rows),
    )


def report(kind: str, n: int, costs: Costs, events: tuple[Counter[str], int, int]) -> None:
    types, total, largest = events
    print(
        f"\n{kind} of {n}: per item {costs.per_item(n)}; task events {dict(types)},"
        f" {total} bytes, largest {largest}"
    )


async def test_a_delete_by_prefix_of_thousands_of_objects_costs_linear_small_work(
    sys_: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = user()
    async with sys_.client(owner) as c:
        b = await bucket(c)
        ids = await many_objects(sys_.pool, c, owner, b, "del/", N)
        with counting(monkeypatch) as costs:
            tid = await start(c, {"type": "delete", "params": {"bucket": b, "prefix": "del/"}})
            t = await finished(c, tid, timeout=600)
        assert t["status"] == "COMPLETED", t["error"]
        assert t["progress"]["items_done"] == N and t["progress"]["items_failed"] == 0
        events = await task_events(sys_.pool, tid)
        report("delete", N, costs, events)
        gone = await sys_.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE event_type = 'FileDeleted'"
            " AND stream_id = ANY($1::text[])",
            [f"file-{i}" for i in ids],
        )
        assert gone == N
        assert costs.commands["DeleteFile"] == N  # one command per object, no more
        # One query for the files and one look at the task per 50 objects; each object
        # was two queries (its file, and its task again at a forced safe point).
        assert costs.file_loads <= N // 50 + 2, costs.file_loads
        assert costs.refreshes <= N // 50 + 5, costs.refreshes
        # Several deletes under way at once (each was a round trip waited for alone).
        assert costs.most_in_flight >= 4, costs.most_in_flight
        types, _, largest = events
        assert types["TaskProgressed"] <= N // 10
        assert largest < 4 * 1024 * 1024 // 2


async def deleted_counts(pool: asyncpg.Pool, ids: list[str]) -> Counter[int]:
    """How many files have 0, 1, 2... FileDeleted events."""
    rows = await pool.fetch(
        "SELECT count(e.stream_id) AS n FROM unnest($1::text[]) AS s(id)"
        " LEFT JOIN eventstore.events e ON e.stream_id = s.id AND e.event_type = 'FileDeleted'"
        " GROUP BY s.id",
        [f"file-{i}" for i in ids],
    )
    return Counter(int(r["n"]) for r in rows)


@pytest.mark.parametrize("action", ["pause", "cancel"])
async def test_a_big_delete_paused_or_cancelled_mid_run_records_what_it_did_once(
    sys_: System, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Deletes go out DELETE_BATCH at a time, several at once: a run stopped at a safe
    point records the whole batch it did (nothing deleted goes unrecorded), and a resumed
    one goes on from there, deleting each file once and redoing no batch."""
    n = 1000
    owner = user()
    async with sys_.client(owner) as c:
        b = await bucket(c)
        ids = await many_objects(sys_.pool, c, owner, b, f"{action}/", n)
        with counting(monkeypatch) as costs:
            tid = await start(
                c, {"type": "delete", "params": {"bucket": b, "prefix": f"{action}/"}}
            )
            stopped = await stop_mid_run(sys_.pool, c, tid, action)
            done = stopped["progress"]["items_done"]
            assert 0 < done < n, done
            # Every file deleted so far is in the results, and none twice.
            counts = await deleted_counts(sys_.pool, ids)
            assert counts[1] == done and counts[2] == 0, counts
            assert [r["index"] for r in stopped["results"]] == list(range(done))
            if action == "cancel":
                assert stopped["status"] == "CANCELLED"
                return
            assert (await c.post(f"/v1/tasks/{tid}/resume")).status_code == 200
            t = await finished(c, tid, timeout=600)
        assert t["status"] == "COMPLETED", t["error"]
        assert [r["index"] for r in t["results"]] == list(range(n))
        assert all(r["result"] == "deleted" for r in t["results"])
        assert await deleted_counts(sys_.pool, ids) == Counter({1: n})
        # The resumed run began where the checkpoint was: no object sent twice.
        assert costs.commands["DeleteFile"] == n, costs.commands


async def test_a_compress_of_thousands_of_objects_holds_a_batch_of_their_states(
    sys_: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compress read every member's state (its manifest) before its first byte and held
    them all for the whole run: at 80,000 tiny files some 70 MB, and 80,000 manifests of
    whatever length. It lists names and sizes, then reads states as the archive reaches
    them (archive_thread.Members), a batch at a time, in one query each."""
    owner = user()
    alive = [0]  # FileStates in memory
    peak = 0

    @dataclass(frozen=True)
    class Counted(FileState):
        def __post_init__(self) -> None:
            alive[0] += 1

        def __del__(self) -> None:
            alive[0] -= 1

    real_bytes = compress._member_bytes

    def sampled(blobs: Any, st: Any, *, progress: Any) -> Any:
        nonlocal peak
        peak = max(peak, alive[0])
        return real_bytes(blobs, st, progress=progress)

    async with sys_.client(owner) as c:
        b = await bucket(c)
        await many_objects(sys_.pool, c, owner, b, "zip/", N)
        with counting(monkeypatch) as costs:
            monkeypatch.setattr(file_state, "FileState", Counted)
            monkeypatch.setattr(compress, "_member_bytes", sampled)
            body = {
                "type": "compress",
                "params": {"bucket": b, "prefix": "zip/", "output": {"file_name": "all.zip"}},
            }
            t = await finished(c, await start(c, body), timeout=600)
        assert t["status"] == "COMPLETED", t["error"]
        assert t["progress"]["items_done"] == N
        assert {r["result"] for r in t["results"]} == {f"zip/{i:05d}" for i in range(N)}
        report("compress", N, costs, await task_events(sys_.pool, t["id"]))
        print(f"compress of {N}: at most {peak} file states alive while archiving")
        # Was N: every member's state, from before the first byte to the last. Now the
        # batch being archived and the one read after it, at 3,000 files as at 80,000.
        assert 0 < peak <= 2 * SMALL_BATCH_MEMBERS < N, peak
        # Listed 200 files per query and read again a batch (at most 512) per query.
        assert costs.file_loads <= 2 * (N // 200 + 1) + N // 512 + 2, costs.file_loads


async def test_a_task_naming_thousands_of_files_is_checked_in_a_few_queries(
    sys_: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /v1/tasks with `files` loaded each file's stream in turn, in the request: at
    80,000 ids (a task's most) 80,000 queries before the 202, and as many states pushed
    through the API's state cache. They are read a thousand per query."""
    owner = user()
    async with sys_.client(owner) as c:
        b = await bucket(c)
        ids = await many_objects(sys_.pool, c, owner, b, "named/", N)
        with counting(monkeypatch) as costs:
            read_streams = PostgresEventStore.read_streams

            async def counted(self: PostgresEventStore, stream_ids: Any) -> Any:
                costs.reads["file (many)"] += 1
                return await read_streams(self, stream_ids)

            monkeypatch.setattr(PostgresEventStore, "read_streams", counted)
            await sys_.stop("tasks")  # only the request is counted
            try:
                # A file listed twice counts once; one not the caller's is a 404 naming it.
                body = {"type": "delete", "params": {"files": [*ids, ids[0]]}}
                tid = await start(c, body)
                files = (await c.get(f"/v1/tasks/{tid}")).json()["params"]["files"]
                assert files == ids
                posted = dict(costs.reads)
                other = str(uuid.uuid4())
                r = await c.post(
                    "/v1/tasks", json={"type": "delete", "params": {"files": [*ids, other]}}
                )
                assert r.status_code == 404 and r.json()["error"]["details"] == {"id": other}
                assert (await c.post(f"/v1/tasks/{tid}/cancel")).status_code == 200
            finally:
                sys_.start("tasks")
        print(f"\nPOST of a task naming {N} files: {posted}")
        assert posted.get("file", 0) + posted.get("file (many)", 0) <= N // 1000 + 2, posted


@pytest.mark.parametrize("kind", ["copy", "move"])
async def test_a_copy_or_move_by_prefix_goes_in_batches_several_commands_at_once(
    sys_: System, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A copy went one object at a time, each after a forced safe point (its task and its
    destination bucket read again) and a read of its file, then one CreateFile waited for
    alone (a move: and its DeleteFile): three queries and one or two round trips per
    object. Now like a delete: its files (and the copies an earlier run may have made) read
    50 per query, the task and the destination checked once per batch, and up to 8 items'
    commands under way at once; results in item order, checkpoints of 50. Objects into a
    bucket, the copies are objects keyed like their sources (one PutObject each)."""
    n = 1000
    owner = user()
    async with sys_.client(owner) as c:
        b, to = await bucket(c), await bucket(c)
        ids = await many_objects(sys_.pool, c, owner, b, f"{kind}/", n)
        with counting(monkeypatch) as costs:
            body = {
                "type": kind,
                "params": {"bucket": b, "prefix": f"{kind}/", "to": {"bucket": to}},
            }
            t = await finished(c, await start(c, body), timeout=600)
        assert t["status"] == "COMPLETED", t["error"]
        assert [r["index"] for r in t["results"]] == list(range(n))
        # Each keyed by its source's key less the prefix (items in creation order, then id).
        key_of = {fid: f"{i:05d}" for i, fid in enumerate(ids)}
        assert [r["key"] for r in t["results"]] == [key_of[r["source"]] for r in t["results"]]
        assert [r["result"] for r in t["results"]] == [
            object_file_id(to, r["key"]) for r in t["results"]
        ]
        assert t["progress"]["items_failed"] == 0
        events = await task_events(sys_.pool, t["id"])
        report(kind, n, costs, events)
        assert costs.commands["PutObject"] == n and costs.commands["CreateFile"] == 0
        assert costs.commands["DeleteFile"] == (n if kind == "move" else 0)
        if kind == "move":
            assert await deleted_counts(sys_.pool, ids) == Counter({1: n})
        # Was n + 2 each: one look at the task, its bucket and its files per 50 objects.
        assert costs.file_loads <= n // 50 + 2, costs.file_loads
        assert costs.refreshes <= n // 50 + 5, costs.refreshes
        assert costs.reads["bucket"] <= n // 50 + 5, costs.reads
        assert costs.most_in_flight >= 4, costs.most_in_flight
        types, _, largest = events
        assert types["TaskProgressed"] <= n // 10 and largest < 4 * 1024 * 1024 // 2


@pytest.mark.parametrize("kind", ["copy", "move"])
async def test_a_copy_or_move_paused_mid_run_resumes_making_each_copy_once(
    sys_: System, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Stopped at a safe point, a run records the whole batch it did; resumed, it goes on
    from there: every copy made once, every source of a move deleted once."""
    n = 600
    owner = user()
    async with sys_.client(owner) as c:
        b, to = await bucket(c), await bucket(c)
        ids = await many_objects(sys_.pool, c, owner, b, f"p{kind}/", n)
        with counting(monkeypatch) as costs:
            body = {"type": kind, "params": {"files": ids, "to": {"bucket": to}}}
            tid = await start(c, body)
            stopped = await stop_mid_run(sys_.pool, c, tid, "pause")
            done = stopped["progress"]["items_done"]
            assert 0 < done < n, done
            assert [r["index"] for r in stopped["results"]] == list(range(done))
            # Named by `files`: each copy is keyed by its source key's last segment.
            targets = [object_file_id(to, f"{i:05d}") for i in range(n)]
            copies = [f"file-{fid}" for fid in targets]
            made = await count_events(sys_.pool, "FileCreated", copies)
            assert made == done, (made, done)
            assert (await c.post(f"/v1/tasks/{tid}/resume")).status_code == 200
            t = await finished(c, tid, timeout=600)
        assert t["status"] == "COMPLETED", t["error"]
        assert [r["result"] for r in t["results"]] == targets
        assert await count_events(sys_.pool, "FileCreated", copies) == n
        assert await count_events(sys_.pool, "FileReplaced", copies) == 0
        assert costs.commands["PutObject"] == n, costs.commands
        if kind == "move":
            assert await deleted_counts(sys_.pool, ids) == Counter({1: n})
            assert costs.commands["DeleteFile"] == n, costs.commands


@pytest.mark.parametrize("kind", ["copy", "move"])
async def test_a_copy_or_move_done_again_after_a_crash_finds_its_copies_made(
    sys_: System, kind: str
) -> None:
    """A worker that dies after an item's CreateFile but before its checkpoint leaves the
    copy made and unrecorded; the next run does the item again. Its CreateFile, sent again
    under the same id, was refused (file_exists: the actor decides it against the stream it
    made), so the item was recorded as failed though its copy was there. The run now reads
    the copies with the sources and sends no CreateFile for one made already. (Plain
    files: copies of objects into a bucket are objects, the next test.)"""
    n = 120
    owner = user()
    async with sys_.client(owner) as c:
        b, to = await bucket(c), await bucket(c)
        seed = await upload(c, b"tiny\n", "seed.txt")
        ids = await clone_files(sys_.pool, c, owner, seed, n, f"x{kind}-", bucket=b)
        store = PostgresEventStore(sys_.pool)
        await sys_.stop("tasks")
        try:
            body = {"type": kind, "params": {"files": ids, "to": {"bucket": to}}}
            tid = await start(c, body)
            # What a run that died had done: the first 70 copies made, none recorded.
            await plant_copies(
                store, tid, owner, to, ids, [(item_file_id(tid, i), None) for i in range(70)]
            )
        finally:
            sys_.start("tasks")
        t = await finished(c, tid, timeout=600)
        assert t["status"] == "COMPLETED", t["error"]
        assert t["progress"]["items_failed"] == 0, [r for r in t["results"] if "error" in r]
        assert [r["result"] for r in t["results"]] == [item_file_id(tid, i) for i in range(n)]
        copies = [f"file-{item_file_id(tid, i)}" for i in range(n)]
        assert await count_events(sys_.pool, "FileCreated", copies) == n
        if kind == "move":
            assert await deleted_counts(sys_.pool, ids) == Counter({1: n})


async def plant_copies(
    store: PostgresEventStore,
    tid: str,
    owner: str,
    to: str,
    sources: list[str],
    made: list[tuple[str, str | None]],
) -> None:
    """What a copy run that died had done: item i's copy (`made[i]`: its file id, and its
    key if an object) of `sources[i]` appended under the item's command id, as the actor
    host would have, and nothing recorded in the task."""
    for i, (file_id, key) in enumerate(made):
        src = (await store.read_stream(f"file-{sources[i]}"))[0].payload
        assert isinstance(src, FileCreated)
        at = datetime.now(UTC)
        ev = created_like(src, file_id, owner, to, key, at)
        await store.append(
            f"file-{file_id}",
            0,
            [NewEvent.of(ev)],
            EventMeta(occurred_at=at, owner=owner),
            command_id=item_command_id(tid, i, "copy"),
        )


@pytest.mark.parametrize("kind", ["copy", "move"])
async def test_an_object_copy_or_move_done_again_after_a_crash_finds_its_objects_made(
    sys_: System, kind: str
) -> None:
    """The same for objects: a run died after 70 puts (and, for a move, 30 of their
    sources deleted), none recorded. The objects at those keys are the task's own (their
    puts' command ids were applied): not a collision (target_exists), and not put again."""
    n = 120
    owner = user()
    async with sys_.client(owner) as c:
        b, to = await bucket(c), await bucket(c)
        ids = await many_objects(sys_.pool, c, owner, b, f"o{kind}/", n)
        keys = [f"{i:05d}" for i in range(n)]
        targets = [object_file_id(to, k) for k in keys]
        store = PostgresEventStore(sys_.pool)
        await sys_.stop("tasks")
        try:
            body = {"type": kind, "params": {"files": ids, "to": {"bucket": to}}}
            tid = await start(c, body)
            await plant_copies(
                store, tid, owner, to, ids, [(targets[i], keys[i]) for i in range(70)]
            )
            if kind == "move":
                for i in range(30):
                    r = await c.delete(f"/v1/files/{ids[i]}")
                    assert r.status_code in (200, 204), r.text

            async def projected() -> bool:
                got = await sys_.pool.fetchval(
                    "SELECT count(*) FROM readmodel.files WHERE bucket = $1 AND deleted_at IS NULL",
                    to,
                )
                return int(got) == 70

            # The run starts with them live at its target keys.
            await wait_until(projected)
        finally:
            sys_.start("tasks")
        t = await finished(c, tid, timeout=600)
        assert t["status"] == "COMPLETED", t["error"]
        assert t["progress"]["items_failed"] == 0, [r for r in t["results"] if "error" in r]
        assert [r["result"] for r in t["results"]] == targets
        assert [r["key"] for r in t["results"]] == keys
        assert not any("replaced" in r for r in t["results"])
        copies = [f"file-{fid}" for fid in targets]
        assert await count_events(sys_.pool, "FileCreated", copies) == n
        assert await count_events(sys_.pool, "FileReplaced", copies) == 0
        if kind == "move":
            assert await deleted_counts(sys_.pool, ids) == Counter({1: n})


@pytest.mark.parametrize("kind", ["copy", "move"])
async def test_an_overwriting_put_made_before_a_takeover_still_lists_what_it_replaced(
    sys_: System, kind: str
) -> None:
    """An object copy with `overwrite` onto keys held by other objects (items 0-3): a run
    died after the puts of items 0, 1 (replacing) and 4 (a new key), none recorded (for a
    move, the sources of 0 and 4 deleted too). The next run sees the keys of 0, 1 and 4
    held by the task's own objects; their results are still what an uninterrupted run
    gives: `replaced` for items 0-3 (read from what each put appended), none for 4 and 5."""
    n = 6
    owner = user()
    async with sys_.client(owner) as c:
        b, to = await bucket(c), await bucket(c)
        ids = await many_objects(sys_.pool, c, owner, b, f"w{kind}/", n)
        keys = [f"{i:05d}" for i in range(n)]
        targets = [object_file_id(to, k) for k in keys]
        for key in keys[:4]:
            r = await c.put(f"/v1/buckets/{to}/objects/{key}", content=b"theirs")
            assert r.status_code in (200, 201), r.text
        store = PostgresEventStore(sys_.pool)
        await sys_.stop("tasks")
        try:
            body = {"type": kind, "params": {"files": ids, "to": {"bucket": to}, "overwrite": True}}
            tid = await start(c, body)
            seed = (await store.read_stream(f"file-{ids[0]}"))[0].payload
            assert isinstance(seed, FileCreated)
            at = datetime.now(UTC)
            for i in (0, 1):  # as the actor appends a put onto a live object
                replaced = FileReplaced(
                    owner=owner,
                    name=object_name(keys[i]),
                    size=seed.size,
                    content_type=seed.content_type,
                    sha256=seed.sha256,
                    manifest=seed.manifest,
                    at=at,
                )
                await store.append(
                    f"file-{targets[i]}",
                    await store.stream_version(f"file-{targets[i]}"),
                    [NewEvent.of(replaced)],
                    EventMeta(occurred_at=at, owner=owner),
                    command_id=item_command_id(tid, i, "copy"),
                )
            fresh = created_like(seed, targets[4], owner, to, keys[4], at)
            await store.append(
                f"file-{targets[4]}",
                0,
                [NewEvent.of(fresh)],
                EventMeta(occurred_at=at, owner=owner),
                command_id=item_command_id(tid, 4, "copy"),
            )
            if kind == "move":
                for i in (0, 4):
                    r = await c.delete(f"/v1/files/{ids[i]}")
                    assert r.status_code in (200, 204), r.text
        finally:
            sys_.start("tasks")
        t = await finished(c, tid, timeout=600)
        assert t["status"] == "COMPLETED", t["error"]
        assert t["progress"]["items_failed"] == 0, t["results"]
        assert [r["result"] for r in t["results"]] == targets
        assert [r.get("replaced") for r in t["results"]] == [
            [targets[0]],
            [targets[1]],
            [targets[2]],
            [targets[3]],
            None,
            None,
        ]
        copies = [f"file-{fid}" for fid in targets]
        assert await count_events(sys_.pool, "FileReplaced", copies) == 4  # none put twice
        assert await count_events(sys_.pool, "FileCreated", copies) == n
        if kind == "move":
            assert await deleted_counts(sys_.pool, ids) == Counter({1: n})
