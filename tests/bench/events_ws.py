"""WebSocket live-event scenarios, each against SSE measured in the same run, taking turns.

The WebSocket stream (`GET /v1/events/ws`) and SSE share the API process's one fan-out and
differ in what is around it (framing, per-message deflate, the subscribe protocol), so SSE
is the baseline that says what the WebSocket path itself costs. Both transports run in
one `cairn up`, alternating which goes first, so the ratio is not one VM minute against
another's.

- events.ws_latency: as events.sse_latency, per round one upload and one subscriber on its
  stream (WebSocket: `subscribe` with `filters.stream`, waited for through `subscribed`
  and `caught_up`; SSE: `GET /v1/events?stream=`), chunk PUTs one after another, each
  timed from its response to the arrival of its `UploadChunkStored` message. Every round
  first checks that each chunk's event arrived once and in order. Also the API's own
  append-to-write histogram per transport, as a mean over the run.
- events.ws_fanout: as events.sse_fanout, 1,000 clients of one user on one API process,
  all WebSocket or all SSE in turn; E uploads initiated straight through the actors'
  decide-and-append; events/s from the first append to the last client holding the last
  event, after checking every client got each event once, in order.

Clients: the `websockets` library (already the dev dependency the WebSocket tests use), with
its defaults, so per-message deflate is negotiated as a browser would; SSE is the lean
parser of tests/api/sse.py. Both clients run in the bench's process, on its event loop.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bus.actors.host import Actors
from bus.store import db
from bus.store.eventstore import PostgresEventStore
from tests.bench.bus import _initiate
from tests.bench.core import Result, Row, Scenario, latency_rows, percentile
from tests.bench.events import _histogram, _open
from tests.bench.runner import Bench

CHUNK = 4096
WS, SSE = "ws", "sse"


def _ws_url(bench: Bench) -> str:
    assert bench.cairn is not None
    return bench.cairn.url.replace("http://", "ws://", 1) + "/v1/events/ws"


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def _ws_open(bench: Bench, filters: dict[str, str]) -> ClientConnection:
    """A WebSocket with one subscription `s`, live: returns once `caught_up` has come (a
    subscribe without `from` replays nothing, so every later event is a live one)."""
    assert bench.cairn is not None
    ws = await connect(
        _ws_url(bench),
        subprotocols=["cairn.events.v1", f"bearer.{bench.cairn.token}"],  # type: ignore[list-item]
        max_queue=None,  # the bench reads as fast as it can; no back-pressure from its side
    )
    hello = await _recv(ws)
    if hello.get("type") != "authenticated":
        raise RuntimeError(f"WebSocket auth: {hello}")
    await ws.send(json.dumps({"type": "subscribe", "id": "s", "filters": filters}))
    for expected in ("subscribed", "caught_up"):
        msg = await _recv(ws)
        if msg.get("type") != expected:
            raise RuntimeError(f"WebSocket subscribe: expected {expected}, got {msg}")
    return ws


async def _ws_events(ws: ClientConnection) -> dict[str, Any]:
    """The next event message's event (anything else on the socket is an error here)."""
    msg = await _recv(ws)
    if msg.get("type") != "event":
        raise RuntimeError(f"WebSocket: expected an event, got {msg}")
    return msg["event"]  # type: ignore[no-any-return]


async def _until_idle(c: httpx.AsyncClient) -> None:
    """Until the API counts no open subscription: a closed client's stream slot is given
    back when the server notices the close, and the next batch of 1,000 must not meet the
    previous one's (the bench's per-user limit is 2,000). Polled: there is no event for it
    outside the API process."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = (await c.get("/metrics")).text
        open_ = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("cairn_event_subscriptions{")
        )
        if open_ == 0:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("subscriptions still open 60 s after their clients closed")


def _in_order(indices: list[int], n: int, transport: str) -> None:
    if indices != list(range(n)):
        raise RuntimeError(
            f"{transport}: chunk events arrived as {indices[:20]}…, not 0..{n - 1} once each"
        )


# ---------------------------------------------------------------------------- latency

Arrivals = Callable[[int], Coroutine[Any, Any, tuple[list[int], list[float]]]]


async def _subscriber(bench: Bench, transport: str, uid: str) -> tuple[Arrivals, Any]:
    """(read n chunk events -> (indices, arrival times), close) for one live subscriber to
    upload `uid`'s stream, subscribed before the first PUT."""
    if transport == WS:
        ws = await _ws_open(bench, {"stream": uid})

        async def ws_read(n: int) -> tuple[list[int], list[float]]:
            idx: list[int] = []
            at: list[float] = []
            while len(idx) < n:
                ev = await _ws_events(ws)
                if ev["type"] == "UploadChunkStored":
                    at.append(time.perf_counter())
                    idx.append(ev["data"]["index"])
            return idx, at

        return ws_read, ws.close
    sse = await _open(bench, f"/v1/events?stream={uid}")

    async def sse_read(n: int) -> tuple[list[int], list[float]]:
        idx: list[int] = []
        at: list[float] = []
        while len(idx) < n:
            msg = await sse.next_event()
            if msg is None:
                raise RuntimeError("the SSE stream ended")
            if msg.event == "UploadChunkStored":
                at.append(time.perf_counter())
                idx.append(msg.json()["data"]["index"])
        return idx, at

    return sse_read, sse.close


async def _latency_round(
    bench: Bench, c: httpx.AsyncClient, transport: str, chunks: int
) -> tuple[list[float], list[float]]:
    """One upload of `chunks` sequential 4 KiB PUTs with one subscriber on its stream:
    each chunk's (arrival - response, arrival - request), after checking each event came
    once, in order."""
    r = await c.post(
        "/v1/uploads",
        json={"file_name": "lat.bin", "file_size": chunks * CHUNK, "chunk_size": CHUNK},
    )
    r.raise_for_status()
    uid = r.json()["id"]
    read, close = await _subscriber(bench, transport, uid)
    try:
        task = asyncio.create_task(read(chunks))
        sent: list[float] = []
        answered: list[float] = []
        body = secrets.token_bytes(CHUNK)
        for i in range(chunks):
            sent.append(time.perf_counter())
            r = await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=body)
            answered.append(time.perf_counter())
            if r.status_code != 201:
                task.cancel()
                raise RuntimeError(f"chunk PUT: {r.status_code} {r.text[:200]}")
        indices, arrived = await asyncio.wait_for(task, 60)
    finally:
        await close()
    _in_order(indices, chunks, transport)
    return (
        [arrived[i] - answered[i] for i in range(chunks)],
        [arrived[i] - sent[i] for i in range(chunks)],
    )


async def ws_latency(bench: Bench, res: Result) -> None:
    quick = bench.scale.name == "quick"
    # Rounds per run, each transport once per round, first place alternating: in a quick
    # run's single run as well, both meet the same minutes of the machine.
    rounds, chunks = (4, 25) if quick else (8, 50)
    # From the response (as events.sse_latency: mostly negative, since the event is
    # appended before the answer, so a ratio of the two reads backwards) and from the
    # request's start (positive: its ratio says which transport is slower).
    from_resp: dict[str, list[float]] = {WS: [], SSE: []}
    from_req: dict[str, list[float]] = {WS: [], SSE: []}
    server_mean: dict[str, list[float]] = {WS: [], SSE: []}
    probe = await _ws_open(bench, {})
    assert probe.response is not None
    deflate = probe.response.headers.get("Sec-WebSocket-Extensions") or "none"
    await probe.close()
    async with bench.cairn_client(8) as c:
        for _, warmup in bench.iterations():
            before = {t: await _histogram(c, t) for t in (WS, SSE)}
            got: dict[str, tuple[list[float], list[float]]] = {WS: ([], []), SSE: ([], [])}
            for k in range(rounds):
                for t in (WS, SSE) if k % 2 == 0 else (SSE, WS):
                    resp, req = await _latency_round(bench, c, t, chunks)
                    got[t][0].extend(resp)
                    got[t][1].extend(req)
            after = {t: await _histogram(c, t) for t in (WS, SSE)}
            if warmup:
                continue
            for t in (WS, SSE):
                from_resp[t] += got[t][0]
                from_req[t] += got[t][1]
                if after[t][1] > before[t][1]:
                    server_mean[t].append(
                        (after[t][0] - before[t][0]) / (after[t][1] - before[t][1])
                    )
    res.rows += latency_rows(
        "chunk PUT response → its WebSocket message,", from_resp[WS], "SSE", from_resp[SSE]
    )
    res.rows += latency_rows(
        "chunk PUT sent → its WebSocket message,", from_req[WS], "SSE", from_req[SSE]
    )
    res.rows.append(
        Row(
            "append → WebSocket write (API histogram), mean",
            "ms",
            [1000 * m for m in server_mean[WS]],
            "SSE",
            [1000 * m for m in server_mean[SSE]],
            higher_is_better=False,
        )
    )
    diff = [1000 * (percentile(from_resp[WS], p) - percentile(from_resp[SSE], p)) for p in (50, 99)]
    res.notes.append(
        f"{rounds} rounds per run of {chunks} sequential 4 KiB chunk PUTs per transport, "
        "WebSocket and SSE taking turns to go first, one subscriber on the upload's stream; "
        "negative = the message arrived before the PUT's response (a ratio of negative "
        "figures reads backwards: above 1 = WebSocket earlier); WebSocket minus SSE from the "
        f"response, p50 {diff[0]:+.2f} ms, p99 {diff[1]:+.2f} ms; WebSocket extensions "
        f"negotiated: {deflate}"
    )
    res.extra["samples_ms"] = {t: [1000 * x for x in s] for t, s in from_resp.items()}


# ---------------------------------------------------------------------------- fan-out


async def _fanout_round(
    bench: Bench, actors: Actors, transport: str, n_clients: int, n_events: int
) -> float:
    """events/s of `n_events` appends to `n_clients` clients of one transport."""
    clients: list[Any] = []
    for k in range(0, n_clients, 100):
        batch = min(100, n_clients - k)
        if transport == WS:
            clients += await asyncio.gather(*[_ws_open(bench, {}) for _ in range(batch)])
        else:
            clients += await asyncio.gather(*[_open(bench) for _ in range(batch)])
    order = [str(uuid.uuid4()) for _ in range(n_events)]
    wanted = {f"upload-{aid}" for aid in order}

    async def next_event(cl: Any) -> dict[str, Any]:
        if transport == WS:
            return await _ws_events(cl)
        msg = await cl.next_event()
        if msg is None:
            raise RuntimeError("an SSE stream ended")
        return msg.json()  # type: ignore[no-any-return]

    async def follow(cl: Any) -> None:
        seen: list[str] = []
        last = -1
        while len(seen) < n_events:
            ev = await next_event(cl)
            if ev["position"] <= last:
                raise RuntimeError(f"{transport}: position {ev['position']} after {last}")
            last = ev["position"]
            if ev["stream_id"] in wanted:
                seen.append(ev["stream_id"])
        if seen != [f"upload-{aid}" for aid in order]:
            raise RuntimeError(f"{transport}: the uploads' events not once each in order")

    try:
        followers = [asyncio.create_task(follow(cl)) for cl in clients]
        t0 = time.perf_counter()
        for aid in order:  # one after another: their positions follow this order
            reply = await actors.execute(_initiate(aid, "bench"))
            if not reply.get("ok"):
                raise RuntimeError(f"append refused: {reply}")
        await asyncio.wait_for(asyncio.gather(*followers), 300)
        return n_events / (time.perf_counter() - t0)
    finally:
        await asyncio.gather(*[cl.close() for cl in clients], return_exceptions=True)


async def ws_fanout(bench: Bench, res: Result) -> None:
    assert bench.cairn is not None
    quick = bench.scale.name == "quick"
    n_clients = 1000
    n_events = 20 if quick else 500
    pool = await db.create_pool(bench.cairn.database_url, min_size=1, max_size=4)
    rates: dict[str, list[float]] = {WS: [], SSE: []}
    try:
        actors = Actors(PostgresEventStore(pool))
        async with bench.cairn_client(4) as c:
            for i, warmup in bench.iterations():
                for t in (WS, SSE) if i % 2 == 0 else (SSE, WS):
                    await _until_idle(c)
                    rate = await _fanout_round(bench, actors, t, n_clients, n_events)
                    if not warmup:
                        rates[t].append(rate)
            await _until_idle(c)
    finally:
        await pool.close()
    res.rows += [
        Row(
            f"events/s delivered to {n_clients} WebSocket clients",
            "events/s",
            rates[WS],
            f"{n_clients} SSE clients",
            rates[SSE],
        ),
        Row(
            f"deliveries/s ({n_clients} WebSocket clients)",
            "msgs/s",
            [e * n_clients for e in rates[WS]],
            f"{n_clients} SSE clients",
            [e * n_clients for e in rates[SSE]],
        ),
    ]
    res.notes.append(
        f"{n_events} uploads initiated one after another (one append each), "
        f"{n_clients} clients of one user in the bench process, all WebSocket (one "
        "subscription each, no filter) or all SSE (`GET /v1/events`), taking turns"
    )


SCENARIOS = [
    Scenario(
        "events.ws_latency",
        "latency from a chunk PUT's response to its WebSocket message, against SSE",
        ws_latency,
    ),
    Scenario(
        "events.ws_fanout",
        "events/s to 1,000 WebSocket clients on one API process, against 1,000 SSE clients",
        ws_fanout,
    ),
]
