"""Kill the whole `cairn up` in the middle of a multi-chunk upload, start it again, resume.

The user's view: `cairn up` in a terminal, a client uploading a file in chunks, and the
machine (or the terminal) killing everything with SIGKILL while chunk PUTs are in flight.
Started again on the same data dir and ports, Cairn must come up by itself (recognising and
clearing what the killed run left behind), every chunk it answered 2xx for must still be
there ("a 2xx means durable"), the client resumes from the missing chunks, and the
downloaded file is byte for byte the original. The event store, read directly, holds every
transition exactly once.

Two kills:

- `supervisor-group`: SIGKILL to the process group of `cairn up`. That reaches the
  supervisor only: the process kinds, the broker and PostgreSQL each run in their own
  session, so they are orphaned (the kinds notice and stop themselves).
- `every-process`: SIGKILL to every process of the run at once (the supervisor, each kind,
  the broker, PostgreSQL and its backends), as an OOM kill of the whole container would.

and two moments: the first racing chunk committed (`first-commit`: chunks recorded but
never answered) and the first racing chunk answered (`first-answer`: a 2xx immediately
followed by the kill).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bus.run.supervisor import port_in_use
from bus.store.eventstore import NOTIFY_CHANNEL
from tests.faults.proc import (
    Up,
    bearer,
    cairn_env,
    describe,
    listener_pid,
    poll,
    run_up,
    send_retrying,
    stop_cleanly,
)

CHUNK = 512 * 1024
DATA_SIZE = 12 * CHUNK + 1234  # 13 chunks, the last one short
N_CHUNKS = 13
BEFORE = range(0, 4)  # acknowledged one by one before the kill
RACING = range(4, 9)  # whole bodies sent concurrently, racing the kill
HELD = range(9, 11)  # half of the body sent when the kill comes
NEVER = range(11, 13)  # not sent before the kill at all


async def send(c: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """What a real client does: retry on 503 (bus unavailable, actors still joining); a
    refused connection is an answer here (the run is up whenever this is called)."""
    return await send_retrying(c, method, url, through_refused=False, **kw)


async def held_body(part: bytes, sent: asyncio.Event, go_on: asyncio.Event) -> AsyncIterator[bytes]:
    """Half of a chunk, then nothing until `go_on`: a PUT certainly in flight at the kill."""
    yield part[: len(part) // 2]
    sent.set()
    await go_on.wait()
    yield part[len(part) // 2 :]


def outcome(result: httpx.Response | BaseException) -> str:
    if isinstance(result, httpx.Response):
        return f"{result.status_code} {result.text[:200]}"
    return f"{type(result).__name__}: {result}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("kill", "trigger"),
    [
        ("supervisor-group", "first-commit"),
        ("every-process", "first-commit"),
        ("every-process", "first-answer"),
    ],
)
async def test_kill_everything_mid_upload_restart_resume(
    kill: str, trigger: str, tmp_path: Path, runs: list[Up]
) -> None:
    env = cairn_env(tmp_path / "data")
    db_url = f"postgresql://postgres@127.0.0.1:{env['CAIRN_EMBEDDED_PG_PORT']}/cairn"
    data = os.urandom(DATA_SIZE)
    parts = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    assert len(parts) == N_CHUNKS
    digest = hashlib.sha256(data).hexdigest()

    first = await run_up(env, tmp_path, "up1", runs)
    auth = await bearer(env)

    async with httpx.AsyncClient(base_url=first.url, headers=auth, timeout=60) as c:
        r = await send(
            c,
            "POST",
            "/v1/uploads",
            json={
                "file_name": "big.bin",
                "file_size": len(data),
                "chunk_size": CHUNK,
                "sha256": digest,
            },
        )
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        assert r.json()["total_chunks"] == N_CHUNKS
        acked: dict[int, int] = {}  # chunk -> status of a 2xx answer
        for i in BEFORE:
            r = await send(c, "PUT", f"/v1/uploads/{uid}/chunks/{i}", content=parts[i])
            assert r.status_code == 201, r.text
            acked[i] = r.status_code

        sent = {i: asyncio.Event() for i in HELD}
        go_on = asyncio.Event()
        held = {
            i: asyncio.create_task(
                c.put(
                    f"/v1/uploads/{uid}/chunks/{i}",
                    content=held_body(parts[i], sent[i], go_on),
                    headers={"Content-Length": str(len(parts[i]))},
                )
            )
            for i in HELD
        }
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in sent.values())), 30)
        # The kill comes the moment the first racing PUT is answered (`first-answer`), or
        # (`first-commit`) the moment the first racing chunk is committed to the event store
        # (its NOTIFY), if that is seen first. Both callbacks run before any task reads
        # another response: the other racing PUTs are then somewhere between the socket and
        # the store, or committed but unanswered, and the held ones are half sent.
        racing: dict[int, asyncio.Task[httpx.Response]] = {}
        killed = asyncio.Event()
        done_before_kill: set[int] = set()
        held_done_before_kill: set[int] = set()
        kill_error: list[BaseException] = []

        def kill_now(*_: object) -> None:
            if killed.is_set():
                return
            done_before_kill.update(i for i, t in racing.items() if t.done())
            held_done_before_kill.update(i for i, t in held.items() if t.done())
            try:
                if kill == "supervisor-group":
                    first.kill_group()
                else:
                    first.kill_everything()
            except BaseException as e:
                kill_error.append(e)
            killed.set()

        listener = await asyncpg.connect(db_url)
        if trigger == "first-commit":
            await listener.add_listener(NOTIFY_CHANNEL, kill_now)
        for i in RACING:
            racing[i] = asyncio.create_task(
                c.put(f"/v1/uploads/{uid}/chunks/{i}", content=parts[i])
            )
            racing[i].add_done_callback(kill_now)
        await asyncio.wait_for(killed.wait(), 60)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listener.close(), 5)
        assert not kill_error, kill_error
        assert not held_done_before_kill
        go_on.set()
        results: dict[int, httpx.Response | BaseException] = {}
        for i, t in {**racing, **held}.items():
            try:
                results[i] = await t
            except httpx.TransportError as e:
                results[i] = e
        report = "\n".join(
            f"chunk {i}{' (answered before the kill)' if i in done_before_kill else ''}: "
            f"{outcome(res)}"
            for i, res in sorted(results.items())
        )
        for i, res in results.items():
            # A 2xx, the bus being unavailable, or the connection lost: nothing else.
            if isinstance(res, httpx.Response):
                assert res.is_success or res.status_code == 503, report
                if res.is_success:
                    acked[i] = res.status_code

    if kill == "every-process":
        # SIGKILL is not synchronous: the processes are gone a moment later.
        await poll(
            "the killed processes to be gone",
            lambda: not first.left(),
            10,
            lambda: describe(first.left()),
        )
    # What the killed run left running at the moment of the restart (orphaned kinds,
    # the broker, PostgreSQL): the new supervisor must cope with all of it by itself.
    leftovers = describe(first.left())

    second = await run_up(env, tmp_path, "up2", runs)
    # The API answering now is the new run's, not an orphan of the killed one.
    api = listener_pid(int(env["CAIRN_PORT"]))
    assert second.children().get(api or 0) == "api", f"API port held by {api}\n{leftovers}"
    async with httpx.AsyncClient(base_url=second.url, headers=auth, timeout=60) as c:
        r = await c.get(f"/v1/uploads/{uid}/missing-chunks")
        assert r.status_code == 200, r.text
        missing = r.json()["missing_chunks"]
        assert r.json()["total_chunks"] == N_CHUNKS
        assert not set(acked) & set(missing), f"acknowledged but lost: {report}"
        assert set(NEVER) <= set(missing)
        if kill == "every-process":
            # Their bodies never arrived whole: nothing may have been recorded for them.
            assert set(HELD) <= set(missing), report

        # The same bytes again for an acknowledged chunk: accepted, not recorded twice.
        r = await send(c, "PUT", f"/v1/uploads/{uid}/chunks/{BEFORE[0]}", content=parts[0])
        assert r.status_code == 200, r.text
        for i in missing:
            r = await send(c, "PUT", f"/v1/uploads/{uid}/chunks/{i}", content=parts[i])
            assert r.status_code in (200, 201), r.text
        r = await c.get(f"/v1/uploads/{uid}/missing-chunks")
        assert r.json()["missing_chunks"] == []

        r = await send(c, "POST", f"/v1/uploads/{uid}/complete")
        assert r.status_code == 200, r.text
        assert r.json()["sha256"] == digest
        file_id = r.json()["file_id"]
        r = await c.get(f"/v1/files/{file_id}/content")
        assert r.status_code == 200, r.text
        assert len(r.content) == len(data)
        assert hashlib.sha256(r.content).hexdigest() == digest
        assert r.content == data

    conn = await asyncpg.connect(db_url)
    try:
        upload = await conn.fetch(
            "SELECT version, event_type, data FROM eventstore.events"
            " WHERE stream_id = $1 ORDER BY version",
            f"upload-{uid}",
        )
        files = await conn.fetch(
            "SELECT version, event_type FROM eventstore.events"
            " WHERE stream_id = $1 ORDER BY version",
            f"file-{file_id}",
        )
    finally:
        await conn.close()
    types = Counter(e["event_type"] for e in upload)
    assert types["UploadInitiated"] == 1 and types["UploadCompleted"] == 1, types
    chunks = Counter(
        int(_json(e["data"])["index"]) for e in upload if e["event_type"] == "UploadChunkStored"
    )
    assert chunks == Counter(range(N_CHUNKS)), "each chunk recorded exactly once"
    assert [e["version"] for e in upload] == list(range(1, len(upload) + 1))
    assert upload[0]["event_type"] == "UploadInitiated"
    assert upload[-1]["event_type"] == "UploadCompleted"
    assert Counter(e["event_type"] for e in files)["FileCreated"] == 1
    assert [e["version"] for e in files] == list(range(1, len(files) + 1))

    # Ctrl-C: a clean stop, and nothing of either run left running.
    await stop_cleanly(second, first)
    still_busy = [p for p in second.ports() if port_in_use("127.0.0.1", p)]
    assert not still_busy, still_busy
    assert not (second.data_dir / "supervisor.json").exists()


def _json(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)
