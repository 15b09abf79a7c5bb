"""Live-event scenarios: SSE latency, fan-out throughput, memory of idle SSE clients.

- events.sse_latency: one SSE client on `GET /v1/events`; chunk PUTs one after another,
  each timed from its response to the arrival of its `UploadChunkStored` message (negative:
  the message came first, which is possible since the event is appended before the answer).
  Also the API's own histogram `cairn_event_delivery_latency_seconds` (append in Postgres
  to the write on the stream), as a mean over the run.
- events.sse_fanout: 1,000 SSE clients of one user on one API process (the bench's Cairn
  allows a user 2,000 live streams, tests/bench/cairn.py; the default is 100);
  E uploads initiated straight through the actors' decide-and-append (one event each, no
  Kafka round trip, as bus.append_to_projection does); events/s and deliveries/s from the first
  append to the last client holding the last event. Memory: the API process's RSS before
  the clients connect and with all of them connected and idle, per client, measured the
  first time (later runs reuse memory the allocator kept).
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
import uuid

import httpx
import psutil

from bus.actors.host import Actors
from bus.store import db
from bus.store.eventstore import PostgresEventStore
from tests.api.sse import SSEClient
from tests.bench.bus import _initiate
from tests.bench.core import MiB, Result, Row, Scenario, latency_rows
from tests.bench.memory import label_of
from tests.bench.runner import Bench

CHUNK = 4096


def _api_process(bench: Bench) -> psutil.Process:
    assert bench.cairn is not None
    sup = psutil.Process(bench.cairn.supervisor_pid)
    for p in sup.children(recursive=True):
        if label_of(p, sup.pid) == "api":
            return p
    raise RuntimeError("no api process under the supervisor")


async def _histogram(c: httpx.AsyncClient, transport: str = "sse") -> tuple[float, float]:
    """(sum, count) of one transport's delivery-latency histogram from /metrics."""
    text = (await c.get("/metrics")).text
    total = count = 0.0
    label = f'{{transport="{transport}"}}'
    for line in text.splitlines():
        if line.startswith(f"cairn_event_delivery_latency_seconds_sum{label}"):
            total = float(line.split()[-1])
        elif line.startswith(f"cairn_event_delivery_latency_seconds_count{label}"):
            count = float(line.split()[-1])
    return total, count


async def _open(bench: Bench, path: str = "/v1/events") -> SSEClient:
    assert bench.cairn is not None
    c = await SSEClient.open(bench.cairn.url, path, bench.cairn.token)
    if c.status != 200:
        raise RuntimeError(f"SSE refused: {c.status} {c.body[:200]!r}")
    first = await c.next()  # the opening comment: subscribed from here on
    assert first is not None and first.comments
    return c


async def sse_latency(bench: Bench, res: Result) -> None:
    quick = bench.scale.name == "quick"
    chunks = 50 if quick else 400
    samples: list[float] = []
    server_mean: list[float] = []
    async with bench.cairn_client(8) as c:
        for _, warmup in bench.iterations():
            r = await c.post(
                "/v1/uploads",
                json={"file_name": "lat.bin", "file_size": chunks * CHUNK, "chunk_size": CHUNK},
            )
            r.raise_for_status()
            uid = r.json()["id"]
            sse = await _open(bench, f"/v1/uploads/{uid}/events")
            arrived: dict[int, float] = {}

            async def reader(sse: SSEClient = sse, arrived: dict[int, float] = arrived) -> None:
                while len(arrived) < chunks:
                    msg = await sse.next_event()
                    if msg is None:
                        raise RuntimeError("the SSE stream ended")
                    if msg.event == "UploadChunkStored":
                        arrived[msg.json()["data"]["index"]] = time.perf_counter()

            task = asyncio.create_task(reader())
            before = await _histogram(c)
            answered: dict[int, float] = {}
            body = secrets.token_bytes(CHUNK)
            for i in range(chunks):
                r = await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=body)
                answered[i] = time.perf_counter()
                if r.status_code != 201:
                    raise RuntimeError(f"chunk PUT: {r.status_code} {r.text[:200]}")
            await asyncio.wait_for(task, 60)
            after = await _histogram(c)
            await sse.close()
            if warmup:
                continue
            samples += [arrived[i] - answered[i] for i in range(chunks)]
            if after[1] > before[1]:
                server_mean.append((after[0] - before[0]) / (after[1] - before[1]))
    res.rows += latency_rows("chunk PUT response → its SSE message,", samples)
    res.rows.append(
        Row(
            "append → SSE write (API histogram), mean",
            "ms",
            [1000 * m for m in server_mean],
            higher_is_better=False,
        )
    )
    res.notes.append(
        f"{chunks} sequential 4 KiB chunk PUTs per run, one SSE client on the upload's stream; "
        "negative = the message arrived before the PUT's response"
    )
    res.extra["samples_ms"] = [1000 * x for x in samples]


async def sse_fanout(bench: Bench, res: Result) -> None:
    assert bench.cairn is not None
    quick = bench.scale.name == "quick"
    n_clients = 1000
    n_events = 20 if quick else 500
    api = _api_process(bench)
    pool = await db.create_pool(bench.cairn.database_url, min_size=1, max_size=4)
    events_s: list[float] = []
    per_idle: list[float] = []
    idle_rss: list[float] = []
    try:
        actors = Actors(PostgresEventStore(pool))
        for _, warmup in bench.iterations():
            gc.collect()
            await asyncio.sleep(0.5)  # let the API settle before sampling its memory
            rss0 = api.memory_info().rss
            clients: list[SSEClient] = []
            for k in range(0, n_clients, 100):
                clients += await asyncio.gather(
                    *[_open(bench) for _ in range(min(100, n_clients - k))]
                )
            await asyncio.sleep(0.5)
            rss_idle = api.memory_info().rss
            ids = {str(uuid.uuid4()) for _ in range(n_events)}

            async def follow(c: SSEClient, ids: set[str] = ids) -> None:
                got = 0
                while got < n_events:
                    msg = await c.next_event()
                    if msg is None:
                        raise RuntimeError("an SSE stream ended")
                    if msg.json()["stream_id"].removeprefix("upload-") in ids:
                        got += 1

            followers = [asyncio.create_task(follow(c)) for c in clients]
            t0 = time.perf_counter()
            for aid in ids:
                reply = await actors.execute(_initiate(aid, "bench"))
                if not reply.get("ok"):
                    raise RuntimeError(f"append refused: {reply}")
            await asyncio.wait_for(asyncio.gather(*followers), 300)
            elapsed = time.perf_counter() - t0
            await asyncio.gather(*[c.close() for c in clients])
            # Memory: the first time the process holds N clients (the warm-up run) is the
            # honest figure; later runs reuse what the allocator kept from it.
            if not per_idle:
                per_idle.append((rss_idle - rss0) / n_clients / 1024)
            idle_rss.append(rss_idle / MiB)
            if warmup:
                continue
            events_s.append(n_events / elapsed)
    finally:
        await pool.close()
    res.rows += [
        Row(f"events/s delivered to {n_clients} SSE clients", "events/s", events_s),
        Row(
            f"deliveries/s ({n_clients} clients)",
            "msgs/s",
            [e * n_clients for e in events_s],
        ),
        Row(
            f"API RSS growth per idle SSE client (first {n_clients})",
            "KiB",
            per_idle,
            higher_is_better=False,
        ),
        Row(
            f"API RSS with {n_clients} idle SSE clients",
            "MiB",
            [max(idle_rss)],
            higher_is_better=False,
        ),
    ]
    res.notes.append(
        f"{n_events} uploads initiated one after another (one append each), "
        f"{n_clients} SSE clients of one user in the bench process"
    )


SCENARIOS = [
    Scenario(
        "events.sse_latency",
        "latency from a chunk PUT's response to its SSE message",
        sse_latency,
    ),
    Scenario(
        "events.sse_fanout",
        "events/s to 1,000 SSE clients on one API process; memory per idle client",
        sse_fanout,
    ),
]
