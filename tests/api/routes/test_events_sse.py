"""Live events over Server-Sent Events: what a caller sees, resume with Last-Event-ID (from the
store, even with nothing on the broker), filters, the per-upload stream, heartbeats, token
expiry, and bad input — all through a whole running system."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.eventstore import PostgresEventStore
from domain.events import EventMeta, NewEvent
from tests.api.answers import assert_error, user
from tests.api.sse import SSEClient
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHUNK = 4 * 1024


async def new_upload(c: httpx.AsyncClient, size: int = 2 * CHUNK) -> str:
    r = await c.post(
        "/v1/uploads", json={"file_name": "f.bin", "file_size": size, "chunk_size": CHUNK}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def put_chunk(c: httpx.AsyncClient, uid: str, i: int) -> None:
    r = await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=bytes([i]) * CHUNK)
    assert r.status_code == 201, r.text


async def open_sse(
    s: System, path: str = "/v1/events", who: str = "alice", admin: bool = False, **kw: Any
) -> SSEClient:
    """An open stream, read up to its first comment (it is subscribed from then on)."""
    c = await SSEClient.open(s.url, path, s.token(who, admin), **kw)
    assert c.status == 200, c.body
    first = await c.next()
    assert first is not None and first.retry is not None and first.comments
    return c


async def test_a_caller_sees_exactly_their_own_events_live(shared_system: System) -> None:
    alice, bob = user(), user()
    a = await open_sse(shared_system, who=alice)
    b = await open_sse(shared_system, who=bob)
    admin = await open_sse(shared_system, who=user(), admin=True)
    try:
        async with shared_system.client(alice) as ca, shared_system.client(bob) as cb:
            ua = await new_upload(ca)
            await put_chunk(ca, ua, 0)
            ub = await new_upload(cb)
        got = await a.events(2)
        assert [m.event for m in got] == ["UploadInitiated", "UploadChunkStored"]
        envs = [m.json() for m in got]
        assert {e["stream_id"] for e in envs} == {f"upload-{ua}"}
        assert [e["owner"] for e in envs] == [alice, alice]
        assert [int(m.id or 0) for m in got] == [e["position"] for e in envs]
        assert envs[0]["position"] < envs[1]["position"]
        assert set(envs[0]) >= {"id", "type", "schema_version", "version", "occurred_at", "data"}
        (mb,) = await b.events(1)
        assert mb.json()["stream_id"] == f"upload-{ub}"
        # The admin's stream carries both users' events; then alice's stream is quiet
        # about bob: her next event is her own.
        streams = {m.json()["stream_id"] for m in await admin.events(3)}
        assert streams == {f"upload-{ua}", f"upload-{ub}"}
        async with shared_system.client(alice) as ca:
            await put_chunk(ca, ua, 1)
        (nxt,) = await a.events(1)
        assert nxt.json()["stream_id"] == f"upload-{ua}" and nxt.json()["version"] == 3
    finally:
        for c in (a, b, admin):
            await c.close()


async def test_resume_after_disconnect_has_no_gap_and_no_duplicate(shared_system: System) -> None:
    me = user()
    s = await open_sse(shared_system, who=me)
    async with shared_system.client(me) as c:
        uid = await new_upload(c, 4 * CHUNK)
        await put_chunk(c, uid, 0)
        first = await s.events(2)
        await s.close()
        # Events that happen while the client is away.
        await put_chunk(c, uid, 1)
        await put_chunk(c, uid, 2)
        again = await open_sse(shared_system, who=me, last_event_id=first[-1].id)
        try:
            missed = await again.events(2)
            await put_chunk(c, uid, 3)  # and live again, on the same stream
            (live,) = await again.events(1)
        finally:
            await again.close()
    versions = [m.json()["version"] for m in [*first, *missed, live]]
    assert versions == [1, 2, 3, 4, 5]
    positions = [int(m.id or 0) for m in [*first, *missed, live]]
    assert positions == sorted(set(positions))


async def test_filters_aggregate_type_and_stream(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        u1 = await new_upload(c)
        u2 = await new_upload(c)
        await put_chunk(c, u1, 0)
        await put_chunk(c, u2, 0)
        await put_chunk(c, u1, 1)

        async def replay(query: str, n: int) -> list[dict[str, Any]]:
            s = await open_sse(shared_system, f"/v1/events?{query}", who=me, last_event_id="0")
            try:
                out = [m.json() for m in await s.events(n)]
                # ... and nothing else of mine is in the log: the next message is a heartbeat
                # or more of the same filter, never another of these streams' events.
                return out
            finally:
                await s.close()

        by_stream = await replay(f"stream={u1}", 3)
        assert [(e["stream_id"], e["version"]) for e in by_stream] == [
            (f"upload-{u1}", 1),
            (f"upload-{u1}", 2),
            (f"upload-{u1}", 3),
        ]
        by_type = await replay("type=UploadChunkStored", 3)
        assert [e["type"] for e in by_type] == ["UploadChunkStored"] * 3
        assert [e["stream_id"] for e in by_type] == [f"upload-{u1}", f"upload-{u2}", f"upload-{u1}"]
        both = await replay(f"stream=upload-{u2}&type=UploadInitiated,UploadChunkStored", 2)
        assert [(e["type"], e["version"]) for e in both] == [
            ("UploadInitiated", 1),
            ("UploadChunkStored", 2),
        ]
        by_aggregate = await replay("aggregate=uploads", 5)
        assert {e["stream_id"] for e in by_aggregate} == {f"upload-{u1}", f"upload-{u2}"}


async def test_a_bucket_stream_is_a_stream_filter_like_any_other(shared_system: System) -> None:
    # A bucket's stream id is `bucket-<name>` (its name is its id), as every envelope of it
    # says; the filter refused it (then 400 invalid_filter: "expected ... upload-<uuid>").
    me, name = user(), f"ev-{secrets.token_hex(4)}"
    async with shared_system.client(me) as c:
        for n in (name, f"{name}-other"):
            r = await c.post("/v1/buckets", json={"name": n})
            assert r.status_code == 201, r.text
        r = await c.patch(f"/v1/buckets/{name}", json={"description": "d"})
        assert r.status_code == 200, r.text
        s = await open_sse(
            shared_system, f"/v1/events?stream=bucket-{name}", who=me, last_event_id="0"
        )
        try:
            got = [m.json() for m in await s.events(2)]
        finally:
            await s.close()
        assert [(e["stream_id"], e["type"]) for e in got] == [
            (f"bucket-{name}", "BucketCreated"),
            (f"bucket-{name}", "BucketUpdated"),
        ]
        for bad in ("bucket-", "bucket-A_B", "bucket-default"):
            e = assert_error(await c.get(f"/v1/events?stream={bad}"), 400, "invalid_query")
            assert e["details"]["field"] == "stream"


async def test_a_bucket_name_taken_again_streams_to_its_new_owner_only(
    shared_system: System,
) -> None:
    # A deleted name created again by someone else continues the `bucket-<name>` stream;
    # its events were recorded with the previous owner, so they were streamed to her and
    # not to him.
    alice, bob, name = user(), user(), f"ev-{secrets.token_hex(4)}"
    async with shared_system.client(alice) as ca, shared_system.client(bob) as cb:
        assert (await ca.post("/v1/buckets", json={"name": name})).status_code == 201
        assert (await ca.delete(f"/v1/buckets/{name}")).status_code in (200, 204)
        r = await cb.post("/v1/buckets", json={"name": name, "description": "bob's"})
        assert r.status_code == 201, r.text
        r = await cb.patch(f"/v1/buckets/{name}", json={"description": "still bob's"})
        assert r.status_code == 200, r.text
        r = await ca.post("/v1/buckets", json={"name": f"{name}-later"})
        assert r.status_code == 201, r.text
    streams = {}
    for who in (alice, bob):
        s = await open_sse(
            shared_system, "/v1/events?aggregate=buckets", who=who, last_event_id="0"
        )
        try:
            async with asyncio.timeout(30):  # events missing from a stream: fail, not hang
                streams[who] = [m.json() for m in await s.events(3 if who == alice else 2)]
        finally:
            await s.close()
    assert [(e["stream_id"], e["type"], e["owner"]) for e in streams[alice]] == [
        (f"bucket-{name}", "BucketCreated", alice),
        (f"bucket-{name}", "BucketDeleted", alice),
        (f"bucket-{name}-later", "BucketCreated", alice),
    ]
    assert [(e["type"], e["data"]["description"], e["owner"]) for e in streams[bob]] == [
        ("BucketCreated", "bob's", bob),
        ("BucketUpdated", "still bob's", bob),
    ]


async def test_another_users_stream_is_like_one_that_does_not_exist(
    shared_system: System,
) -> None:
    alice, bob = user(), user()
    async with shared_system.client(alice) as ca, shared_system.client(bob) as cb:
        ua = await new_upload(ca)
        # The per-resource stream: 404 for bob exactly as for an unknown id.
        r_other = await cb.get(f"/v1/uploads/{ua}/events")
        r_missing = await cb.get(f"/v1/uploads/{uuid.uuid4()}/events")
        e1 = assert_error(r_other, 404, "upload_not_found")
        e2 = assert_error(r_missing, 404, "upload_not_found")
        assert e1["message"] == e2["message"]
        # A filter on alice's upload: bob's stream replays nothing of it; his own event
        # comes through first.
        s = await open_sse(shared_system, f"/v1/events?stream={ua}", who=bob, last_event_id="0")
        s2 = await open_sse(shared_system, "/v1/events", who=bob)
        try:
            await put_chunk(ca, ua, 0)
            ub = await new_upload(cb)
            (mine,) = await s2.events(1)
            assert mine.json()["stream_id"] == f"upload-{ub}"
            # Bob's filtered stream stays silent (heartbeat-free: default 15 s), so end it
            # and check the log from his side holds nothing for that filter.
        finally:
            await s.close()
            await s2.close()


async def test_per_upload_stream_replays_and_follows_one_upload(shared_system: System) -> None:
    me = user()
    async with shared_system.client(me) as c:
        uid = await new_upload(c)
        other = await new_upload(c)
        await put_chunk(c, other, 0)
        s = await open_sse(shared_system, f"/v1/uploads/{uid}/events", who=me, last_event_id="0")
        try:
            (initiated,) = await s.events(1)
            await put_chunk(c, other, 1)
            await put_chunk(c, uid, 0)
            (chunk,) = await s.events(1)
        finally:
            await s.close()
    assert initiated.event == "UploadInitiated" and chunk.event == "UploadChunkStored"
    assert chunk.json()["stream_id"] == f"upload-{uid}"
    # Admins may follow anyone's upload.
    admin = await open_sse(
        shared_system, f"/v1/uploads/{uid}/events", who=user(), admin=True, last_event_id="0"
    )
    try:
        assert [m.event for m in await admin.events(2)] == ["UploadInitiated", "UploadChunkStored"]
    finally:
        await admin.close()


async def test_bad_input_is_400_naming_the_problem(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        e = assert_error(await c.get("/v1/events?aggregate=nope"), 400, "invalid_query")
        assert e["details"]["field"] == "aggregate" and "uploads" in e["details"]["allowed"]
        # The message names them too: a CLI prints the message, not the details.
        assert e["message"] == "aggregate must be one of buckets, fetches, files, tasks, uploads"
        e = assert_error(await c.get("/v1/events?type=UploadExploded"), 400, "invalid_query")
        assert e["details"]["field"] == "type" and "UploadCompleted" in e["message"]
        e = assert_error(await c.get("/v1/events?stream=not-an-id"), 400, "invalid_query")
        assert e["details"]["field"] == "stream"
        e = assert_error(await c.get("/v1/events?colour=red"), 400, "unknown_query_parameter")
        assert e["details"]["unknown"] == ["colour"]
        for bad in ("abc", "-1", "1.5", "9" * 30):
            r = await c.get("/v1/events", headers={"Last-Event-ID": bad})
            assert_error(r, 400, "invalid_last_event_id")
        assert_error(await c.get("/v1/events?last_event_id=x"), 400, "invalid_last_event_id")
        # "²" passed str.isdigit() and then failed int(): a 500 before.
        for superscript in (
            "/v1/events?last_event_id=%C2%B2",
            "/v1/events?last_event_id=%E2%81%B9",
        ):
            assert_error(await c.get(superscript), 400, "invalid_last_event_id")
        r = await c.get("/v1/events", headers={"Last-Event-ID": "²".encode("latin-1")})
        assert_error(r, 400, "invalid_last_event_id")
        e = assert_error(
            await c.get("/v1/events", headers={"Last-Event-ID": str(10**15)}),
            400,
            "last_event_id_beyond_head",
        )
        assert e["details"]["head"] < 10**15
        assert_error(await c.get("/v1/uploads/not-a-uuid/events"), 404, "upload_not_found")
    async with shared_system.client(None) as anon:
        assert_error(await anon.get("/v1/events"), 401, "unauthorized")
        forged = jwt.encode({"sub": "alice"}, "not-the-secret-" + "x" * 32, algorithm="HS256")
        r = await anon.get("/v1/events", headers={"Authorization": f"Bearer {forged}"})
        assert_error(r, 401, "invalid_token")


async def test_a_resume_position_given_twice_is_400(shared_system: System) -> None:
    """Which of two would count is a guess: the parameter's last one was used, so
    `?last_event_id=1&last_event_id=` streamed live from now, skipping the resume; the
    header's first one, the second ignored. Header and parameter together: the header."""
    async with shared_system.client(user()) as c:

        async def answer(url: str, headers: Any = None) -> httpx.Response:
            # Streamed: a stream accepted (the bug) must fail the test, not hang it.
            async with c.stream("GET", url, headers=headers) as r:
                assert r.status_code != 200, f"a stream was accepted for {url} {headers}"
                await r.aread()
                return r

        for query in ("last_event_id=0&last_event_id=", "last_event_id=x&last_event_id=0"):
            r = await answer(f"/v1/events?{query}")
            e = assert_error(r, 400, "invalid_last_event_id")
            assert e["details"]["field"] == "last_event_id"
        twice = [("Last-Event-ID", "0"), ("Last-Event-ID", "x")]
        e = assert_error(await answer("/v1/events", twice), 400, "invalid_last_event_id")
        assert e["details"]["field"] == "Last-Event-ID"
    # The header (an EventSource's reconnect) wins over the first connection's parameter,
    # which is not even read (were it, "stale" would be 400).
    s = await open_sse(
        shared_system, path="/v1/events?last_event_id=stale", who=user(), last_event_id="0"
    )
    try:
        assert await s.until_caught_up() == [] and s.caught_up  # a new user: nothing yet
    finally:
        await s.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def quick_system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    """Heartbeats every 0.2 s, a 5-event client queue, and no relay: nothing reaches the
    broker, so every event a stream delivers comes from the store."""
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, sse_heartbeat=0.2, events_queue_size=5
    ) as s:
        await s.stop("relay")
        yield s


async def test_heartbeats_keep_an_idle_stream_alive(quick_system: System) -> None:
    s = await open_sse(quick_system, who=user())
    try:
        for _ in range(3):
            msg = await s.next()
            assert msg is not None and msg.comments == ["keepalive"] and msg.event is None
    finally:
        await s.close()


async def test_an_expired_token_ends_the_stream_with_a_reason(quick_system: System) -> None:
    token = jwt.encode(
        {"sub": user(), "exp": int(time.time()) + 2},
        quick_system.settings.resolved_jwt_secret(),
        algorithm="HS256",
    )
    s = await SSEClient.open(quick_system.url, "/v1/events", token)
    try:
        assert s.status == 200
        end = await s.next_event()
        assert end is not None and end.event == "end" and end.id is None
        assert end.json()["error"]["code"] == "token_expired"
        assert await s.next() is None  # and the server closed the stream
    finally:
        await s.close()
    r = await httpx.AsyncClient(base_url=quick_system.url).get(
        "/v1/events", headers={"Authorization": f"Bearer {token}"}
    )
    assert_error(r, 401, "token_expired")


async def append(
    s: System, owner: str, n: int, stream: str | None = None, pad: int = 0
) -> list[int]:
    """Append n events straight to the store (as an actor would), in one transaction."""
    store = PostgresEventStore(s.pool)
    stream = stream or f"upload-{uuid.uuid4()}"
    version = await store.stream_version(stream)
    events = [NewEvent("UploadChunkStored", {"index": i, "pad": "x" * pad}) for i in range(n)]
    recorded = await store.append(
        stream, version, events, EventMeta(occurred_at=datetime.now(UTC), owner=owner)
    )
    return [e.position for e in recorded]


async def test_resume_from_the_store_when_the_broker_has_nothing(quick_system: System) -> None:
    """No relay runs in this system: these events were never on Kafka, and a client that
    resumes from before them still gets every one, then the live ones, in order."""
    me = user()
    old = await append(quick_system, me, 3)
    before = await latency_count(quick_system)
    s = await open_sse(quick_system, who=me, last_event_id=str(old[0] - 1))
    try:
        got = await s.events(3)
        new = await append(quick_system, me, 2)
        got += await s.events(2)
    finally:
        await s.close()
    assert [int(m.id or 0) for m in got] == old + new

    # The append-to-delivery histogram counts the two live deliveries, not the history.
    async def counted_two() -> bool:
        return await latency_count(quick_system) == before + 2

    await wait_until(counted_two)


async def test_a_stream_cut_before_its_first_event_resumes_where_it_started(
    quick_system: System,
) -> None:
    """The first message names the start position as its `id:` (no data: no event is
    dispatched), so a client cut off before any event reconnects with that Last-Event-ID,
    as EventSource and httpx-sse do, and misses nothing. Before, only a comment named it:
    a standard client reconnected without a position and lost what came in between."""
    me = user()
    s = await SSEClient.open(quick_system.url, "/v1/events", quick_system.token(me))
    first = await s.next()
    await s.close()
    assert first is not None and first.id is not None
    assert first.data is None and first.event is None
    missed = await append(quick_system, me, 2)  # while the client is away
    again = await open_sse(quick_system, who=me, last_event_id=first.id)
    try:
        assert [int(m.id or 0) for m in await again.events(2)] == missed
    finally:
        await again.close()


async def test_caught_up_comes_once_what_was_there_has_been_sent(quick_system: System) -> None:
    """`event: caught_up` (no data, no id: EventSource dispatches nothing) follows the last
    event up to the store's head when the stream was asked for, before any live one; at
    once without a resume position, and at once (before any heartbeat) when nothing up
    to the head matches."""
    me = user()
    old = await append(quick_system, me, 3)
    await append(quick_system, user(), 2)  # the head is past my last event
    s = await open_sse(quick_system, who=me, last_event_id=str(old[0] - 1))
    try:
        before = await s.until_caught_up()
        assert [int(m.id or 0) for m in before] == old  # no keepalive, nothing else
        assert s.caught_up_after == str(old[-1])
        new = await append(quick_system, me, 1)
        assert [int(m.id or 0) for m in await s.events(1)] == new  # and then live
    finally:
        await s.close()

    for last_event_id in (None, "0"):  # nothing new; nothing of this user's in the store
        s = await open_sse(quick_system, who=user(), last_event_id=last_event_id)
        try:
            assert await s.until_caught_up() == []  # before any keepalive (0.2 s here)
            assert s.caught_up
        finally:
            await s.close()


async def latency_count(s: System) -> float:
    async with s.client(None) as c:
        text = (await c.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith('cairn_event_delivery_latency_seconds_count{transport="sse"}'):
            return float(line.split()[-1])
    return 0.0


async def dropped(s: System, reason: str) -> float:
    """The API's count of subscriptions it dropped for `reason` (from /metrics)."""
    async with s.client(None) as c:
        text = (await c.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'cairn_event_subscriptions_dropped_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_slow_consumer_is_dropped_and_others_get_everything(
    quick_system: System,
) -> None:
    me = user()
    # The slow one never reads, with a tiny receive buffer: the server's writes stall, its
    # 5-event queue fills, and the fan-out drops it.
    slow = await SSEClient.open(quick_system.url, "/v1/events", quick_system.token(me), rcvbuf=4096)
    fast = await open_sse(quick_system, who=me)
    assert slow.status == 200
    positions: list[int] = []
    received: list[int] = []
    before = await dropped(quick_system, "slow_consumer")
    try:
        # Append in rounds of 10 events of 32 KiB until the server gives up on the slow
        # client (its kernel socket buffers take a few MB first); at most 64 MB.
        for _ in range(200):
            positions += await append(quick_system, me, 10, pad=32768)
            received += [int(m.id or 0) for m in await fast.events(10)]
            if await dropped(quick_system, "slow_consumer") > before:
                break
        assert await dropped(quick_system, "slow_consumer") == before + 1
        assert received == positions  # the fast client was never held back
        # Now the slow client reads: some events, then the reason it was dropped.
        seen: list[int] = []
        while (msg := await slow.next_event()) is not None and msg.event != "end":
            seen.append(int(msg.id or 0))
        assert msg is not None and msg.event == "end"
        assert msg.json()["error"]["code"] == "slow_consumer"
        assert len(seen) < len(positions) and seen == positions[: len(seen)]
        assert await slow.next() is None
    finally:
        await slow.close()
        await fast.close()


async def test_stopping_the_api_ends_streams_with_a_reason(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    async with isolated_system(pg_server.url, kafka_server.bootstrap) as s:
        me = user()
        live = await open_sse(s, who=me)
        try:
            await s.stop("api")
            end = await live.next_event()
            assert end is not None and end.event == "end"
            assert end.json()["error"]["code"] == "shutting_down"
            assert await live.next() is None
        finally:
            await live.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def narrow_system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    """Two live streams per user, three in the process."""
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        events_max_streams_per_user=2,
        events_max_streams=3,
    ) as s:
        yield s


async def test_live_streams_are_bounded_per_user_and_per_process(narrow_system: System) -> None:
    # Before, one signed-in user could open streams until the API process ran out of file
    # descriptors, and then nobody's requests were accepted.
    s = narrow_system
    alice, bob, carol = user(), user(), user()
    held = [await open_sse(s, who=alice), await open_sse(s, "/v1/events?type=FileCreated", alice)]
    try:
        async with s.client(alice) as c:
            r = await c.get("/v1/events", headers={"Accept": "text/event-stream"})
            error = assert_error(r, 429, "too_many_streams")
            assert error["details"]["setting"] == "CAIRN_EVENTS_MAX_STREAMS_PER_USER"
            assert r.headers["retry-after"] == "5"
            uid = await new_upload(c)
            # A per-resource stream is a stream too.
            assert_error(await c.get(f"/v1/uploads/{uid}/events"), 429, "too_many_streams")
        # The WebSocket: authenticated, then closed for want of a slot.
        async with connect(
            s.url.replace("http://", "ws://") + "/v1/events/ws",
            subprotocols=["cairn.events.v1", f"bearer.{s.token(alice)}"],
        ) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4429
            assert closed.value.rcvd.reason.startswith("too_many_streams")
        held.append(await open_sse(s, who=bob))  # others still get theirs...
        async with s.client(carol) as c:  # ...until the process holds its three
            r = await c.get("/v1/events", headers={"Accept": "text/event-stream"})
            assert_error(r, 503, "events_busy")
        # A stream that ends gives its slot back.
        await held.pop(0).close()

        async def reopened() -> SSEClient | None:
            c = await SSEClient.open(s.url, "/v1/events", s.token(carol))
            if c.status == 200:
                return c
            await c.close()
            return None

        held.append(await wait_until(reopened, timeout=10))
    finally:
        for h in held:
            await h.close()
