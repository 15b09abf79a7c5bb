"""Fault tests for the actor host: killed mid-upload, and two hosts in one group with one
stopped. Nothing acknowledged is lost, nothing is applied twice (checked in the event store).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
from collections import Counter

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from bus.actors import host as host_module
from bus.actors.host import ActorHost
from bus.config.settings import Settings
from domain.registry import COMMAND_AGGREGATES
from tests.system import start_system, wait_until

CHUNK = 32 * 1024


async def put_with_retry(c: httpx.AsyncClient, uid: str, i: int, body: bytes) -> int:
    """What a real client does: retry on 503 (bus unavailable) until accepted."""
    for _ in range(60):
        r = await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=body)
        if r.status_code != 503:
            return r.status_code
        await asyncio.sleep(0.5)
    raise AssertionError("never accepted")


async def create_with_retry(c: httpx.AsyncClient, size: int) -> str:
    for _ in range(60):
        r = await c.post(
            "/v1/uploads", json={"file_name": "f", "file_size": size, "chunk_size": CHUNK}
        )
        if r.status_code != 503:
            assert r.status_code == 201, r.text
            return str(r.json()["id"])
        await asyncio.sleep(0.5)
    raise AssertionError("never accepted")


async def chunk_events(pool: asyncpg.Pool, uid: str) -> Counter[int]:
    rows = await pool.fetch(
        "SELECT (data->>'index')::int AS i FROM eventstore.events"
        " WHERE stream_id = $1 AND event_type = 'UploadChunkStored'",
        f"upload-{uid}",
    )
    return Counter(r["i"] for r in rows)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("recycle_after", [0, 3])
async def test_actor_host_killed_mid_upload(
    settings: Settings, pool: asyncpg.Pool, recycle_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_module, "RECYCLE_IDLE_FOR", 0.01)
    monkeypatch.setattr(host_module, "RECYCLE_CHECK_EVERY", 0.01)
    # With recycle_after 3 the host deletes and recreates the uploads command topic in the
    # idle moments after every few commands (bus/actors/recycle.py, shortened here), so
    # the kill lands near one: before its commit, after it, or with commands gone with the
    # old topic that their senders send again.
    fast = Settings(
        **{
            **settings.__dict__,
            "command_timeout": 3.0,
            "kafka_command_recycle_after": recycle_after,
        }
    )
    system = await start_system(fast, pool)
    uploads_topic = {"topic": system.settings.command_topic("uploads")}

    def recycled() -> float:
        return (
            REGISTRY.get_sample_value("cairn_command_topics_recycled_total", uploads_topic) or 0.0
        )

    try:
        data = os.urandom(CHUNK * 12 + 5)
        parts = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        async with system.client("alice") as c:
            uid = await create_with_retry(c, len(data))
            for i in range(4):
                # With recycle_after 3 the fourth command can meet the topic's recycling:
                # a 503 the client sends again, as before the kill (exactly once is
                # checked on the events below).
                assert await put_with_retry(c, uid, i, parts[i]) == 201
            # Kill the actor host abruptly (no graceful leave, no offset commit) while more
            # chunk PUTs are in flight, then bring up a new one.
            inflight = [
                asyncio.create_task(put_with_retry(c, uid, i, parts[i])) for i in range(4, 8)
            ]
            await asyncio.sleep(0)  # let the PUTs start streaming
            await system.kill("actors")
            system.start("actors")
            statuses = await asyncio.gather(*inflight)
            assert all(s in (200, 201) for s in statuses), statuses
            # the client resumes from what the server says is missing
            missing = (await c.get(f"/v1/uploads/{uid}/missing-chunks")).json()["missing_chunks"]
            assert missing == list(range(8, len(parts)))
            for i in missing:
                assert await put_with_retry(c, uid, i, parts[i]) == 201
            r = await c.post(f"/v1/uploads/{uid}/complete")
            assert r.status_code == 200, r.text
            assert (await c.get(f"/v1/files/{r.json()['file_id']}/content")).content == data
            assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
        counts = await chunk_events(pool, uid)
        assert counts == Counter(range(len(parts))), "each chunk recorded exactly once"
        n_completed = await pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE stream_id = $1 AND event_type = 'UploadCompleted'",
            f"upload-{uid}",
        )
        assert n_completed == 1
        # 14 commands or more on the upload's one partition: with recycle_after 3 the host
        # recycles the topic in its first idle moment after the third. The client may have
        # sent them back to back, leaving the first such moment after the last: await it.
        if recycle_after:

            async def some_recycled() -> bool:
                return recycled() >= 1

            await wait_until(some_recycled, timeout=10, interval=0.01)
        else:
            assert recycled() == 0
    finally:
        await system.shutdown()


@pytest.mark.timeout(240)
async def test_two_actor_hosts_split_partitions_and_survive_one_stopping(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    fast = Settings(**{**settings.__dict__, "command_timeout": 5.0})
    system = await start_system(fast, pool, kinds=("api", "relay", "projector", "handlers"))
    hosts = [ActorHost(fast, pool), ActorHost(fast, pool)]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(h.run(s)) for h, s in zip(hosts, stops, strict=True)]
    try:
        await wait_until(lambda: _both_assigned(hosts), timeout=60)
        total = sum(len(h.assigned) for h in hosts)
        # Every command topic (uploads, files, buckets), split between the two hosts.
        assert total == len(COMMAND_AGGREGATES) * fast.kafka_partitions
        assert not (hosts[0].assigned & hosts[1].assigned)

        n_uploads = 12
        user = f"u-{secrets.token_hex(3)}"
        async with system.client(user) as c:
            ids = []
            for _ in range(n_uploads):
                ids.append(await create_with_retry(c, 3 * CHUNK))
            blobs = {uid: [os.urandom(CHUNK) for _ in range(3)] for uid in ids}

            async def drive(uid: str) -> None:
                for i, b in enumerate(blobs[uid]):
                    assert await put_with_retry(c, uid, i, b) in (200, 201)

            work = asyncio.gather(*[drive(uid) for uid in ids])

            # Stop one host once commands are flowing (a third of the chunks recorded), so it
            # leaves mid-stream; the other takes over its partitions.
            async def flowing() -> bool:
                n = await pool.fetchval(
                    "SELECT count(*) FROM eventstore.events WHERE event_type = 'UploadChunkStored'"
                    " AND stream_id = ANY($1::text[])",
                    [f"upload-{uid}" for uid in ids],
                )
                return int(n) >= len(ids)

            await wait_until(flowing)
            stops[0].set()
            await tasks[0]
            await work
            # The work can end before the group has rebalanced (the stopped host may have
            # answered every command of its partitions before it left): the survivor learns
            # of the rebalance at its next heartbeat, then rejoins.
            every = len(COMMAND_AGGREGATES) * fast.kafka_partitions

            async def took_over() -> bool:
                return len(hosts[1].assigned) == every

            await wait_until(took_over, timeout=30)
            for uid in ids:
                assert await chunk_events(pool, uid) == Counter(range(3))
                assert (await c.get(f"/v1/uploads/{uid}/missing-chunks")).json()[
                    "missing_chunks"
                ] == []
        assert hosts[0].processed + hosts[1].processed >= n_uploads * 4
    finally:
        for s in stops:
            s.set()
        for t in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 30)
        await system.shutdown()


async def _both_assigned(hosts: list[ActorHost]) -> bool:
    return all(h.assigned for h in hosts)
