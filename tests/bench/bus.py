"""Bus scenarios: command round trip, append-to-read-model throughput, projection rebuild.

- bus.command_rtt: `bus.actors.commandbus.CommandBus` from the bench process against the running
  system's broker and actor host, exactly as the API uses it. Two commands: InitiateUpload
  of a new upload (decide + one append) and the same InitiateUpload again (an idempotent
  replay: decided from the actor's cache, no append). The baseline is a two-hop Kafka echo
  on the same broker (request topic -> echo consumer -> reply topic -> reply reader, the
  same shape as command -> actor -> reply without Postgres), with Cairn's consumer
  settings; when Cairn waits longer per fetch than 10 ms, also with a 10 ms wait, which
  shows how much of the round trip is the consumers waiting on the broker (the embedded
  Tansu holds a fetch until its deadline; CAIRN_KAFKA_FETCH_MAX_WAIT_MS sets Cairn's).
- bus.command_rtt_quiet: the same round trips right after `cairn up` is ready, before any
  other scenario of the run (it runs first); bus.command_rtt then also reports its figures
  against these, the quiet round trip of the same run.
- bus.append_to_projection: N InitiateUpload commands applied straight to the event store
  through `bus.actors.host.Actors` (8 concurrent writers), then the time until
  `readmodel.uploads` shows all N: relay -> Kafka -> projector -> Postgres.
- bus.projection_rebuild: `projections.rebuild.rebuild` of every projection over the whole
  event store, which by then holds every event the other scenarios appended.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from bus.actors.commandbus import CommandBus
from bus.actors.host import Actors
from bus.actors.wake import Nudger
from bus.config.settings import Settings
from bus.kafka.clients import ensure_topics, make_consumer, make_producer
from bus.store import db
from bus.store.eventstore import PostgresEventStore
from domain.commands import InitiateUpload
from domain.events import EventMeta
from domain.registry import AGGREGATES
from projections.rebuild import PROJECTIONS, rebuild
from tests.bench.core import Result, Row, Scenario, latency_rows, percentile
from tests.bench.runner import Bench, add_cpu

WARM_COMMANDS = 5
# The quiet round trip is measured right after `cairn up` is ready: more warm-up, so that
# connections, caches and the first consumer fetches are behind it.
QUIET_WARM_COMMANDS = 50
ECHO_SHORT_WAIT_MS = 10
REPLY_TIMEOUT = 20.0
WRITERS = 8
PROJECTION_TIMEOUT = 120.0


def _initiate(aggregate_id: str, caller: str) -> InitiateUpload:
    return InitiateUpload(
        aggregate_id=aggregate_id,
        caller=caller,
        at=datetime.now(UTC),
        file_name="bench.bin",
        file_size=4096,
        chunk_size=4096,
    )


@contextlib.asynccontextmanager
async def _pool(bench: Bench, writers: int = WRITERS) -> AsyncIterator[asyncpg.Pool]:
    assert bench.cairn is not None
    pool = await db.create_pool(bench.cairn.database_url, min_size=2, max_size=writers + 4)
    try:
        yield pool
    finally:
        await pool.close()


# ---------------------------------------------------------------------------- command_rtt


async def _timed(n: int, send: Any, gap: float = 0.0, warm: int = WARM_COMMANDS) -> list[float]:
    """`n` timed calls of `send` after `warm` untimed ones, `gap` seconds apart."""
    out = []
    for k in range(warm + n):
        t = time.perf_counter()
        await send()
        if k >= warm:
            out.append(time.perf_counter() - t)
        if gap:
            await asyncio.sleep(gap)
    return out


async def kafka_echo(
    settings: Settings,
    n: int,
    *,
    topics: tuple[str, str] | None = None,
    gap: float = 0.0,
    **consumer_kw: Any,
) -> list[float]:
    """Round trips through two topics on the broker: request -> echo -> reply, each on
    partition 0; `topics` (request, reply), else two new ones; `gap` seconds between two."""
    prefix = f"{settings.topic_prefix}.bench-echo-{secrets.token_hex(3)}"
    req, rep = topics or (f"{prefix}.req", f"{prefix}.rep")
    await ensure_topics(settings, [req, rep])
    producer = make_producer(settings)
    echo_in = make_consumer(
        settings, group_id=None, latency_critical=True, auto_offset_reset="latest", **consumer_kw
    )
    replies = make_consumer(
        settings, group_id=None, latency_critical=True, auto_offset_reset="latest", **consumer_kw
    )
    pending: dict[bytes, asyncio.Future[None]] = {}
    tasks: list[asyncio.Task[None]] = []
    await producer.start()
    try:
        for consumer, topic in ((echo_in, req), (replies, rep)):
            await consumer.start()
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await consumer.position(tp)

        async def echo() -> None:  # the "actor": answer every request
            while True:
                batch = await echo_in.getmany(timeout_ms=1000)
                for records in batch.values():
                    for rec in records:
                        await producer.send_and_wait(rep, key=rec.key, value=b"ok", partition=0)

        async def read() -> None:  # the "API": resolve the waiting caller
            while True:
                batch = await replies.getmany(timeout_ms=1000)
                for records in batch.values():
                    for rec in records:
                        fut = pending.get(rec.key or b"")
                        if fut is not None and not fut.done():
                            fut.set_result(None)

        tasks = [asyncio.create_task(echo()), asyncio.create_task(read())]

        async def once() -> None:
            key = uuid.uuid4().hex.encode()
            fut = asyncio.get_running_loop().create_future()
            pending[key] = fut
            try:
                await producer.send_and_wait(req, key=key, value=b"ping", partition=0)
                await asyncio.wait_for(fut, REPLY_TIMEOUT)
            finally:
                pending.pop(key, None)

        return await _timed(n, once, gap)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for c in (echo_in, replies):
            with contextlib.suppress(Exception):
                await c.stop()
        with contextlib.suppress(Exception):
            await producer.stop()


APPEND, REPLAY = "append", "replay, no append"


async def command_rtt(bench: Bench, res: Result) -> None:
    assert bench.cairn is not None
    n = bench.scale.rtt_samples
    samples = await _round_trips(bench, WARM_COMMANDS)
    await _echo_baselines(bench.cairn.settings(), n, samples, res)
    if bench.quiet_rtt is not None:
        _rtt_rows(
            res,
            "command RTT",
            samples,
            "the same at the start of this run (bus.command_rtt_quiet)",
            bench.quiet_rtt,
        )


async def command_rtt_quiet(bench: Bench, res: Result) -> None:
    """bus.command_rtt's round trips on the system as it starts, before any other scenario
    of the run: the quiet figure that bus.command_rtt, after the gigabytes, is then
    compared with in the same run (issue 13: p50 within 1.5x of it)."""
    bench.quiet_rtt = await _round_trips(bench, QUIET_WARM_COMMANDS)
    _rtt_rows(res, "quiet command RTT", bench.quiet_rtt)
    res.notes.append(
        f"{bench.scale.rtt_samples} sequential commands per variant after "
        f"{QUIET_WARM_COMMANDS} warm-up, as in bus.command_rtt, before any other scenario "
        "has run (run first when selected)"
    )


def _rtt_rows(
    res: Result,
    metric: str,
    samples: dict[str, list[float]],
    baseline: str | None = None,
    against: dict[str, list[float]] | None = None,
) -> None:
    """p50 and p99 rows of round trips (seconds) per variant; with `baseline`, each against
    the same variant's samples in `against`."""
    for what, values in samples.items():
        res.rows += latency_rows(
            metric, values, baseline, None if against is None else against[what], variant=what
        )


async def _round_trips(bench: Bench, warm: int) -> dict[str, list[float]]:
    """`rtt_samples` timed appends and replays (seconds each) after `warm` untimed ones,
    from a CommandBus in this process sending as the API does: a nudge wakes the actor
    host, replies come by NOTIFY."""
    assert bench.cairn is not None
    n = bench.scale.rtt_samples
    async with _pool(bench, 2) as pool:
        bus = CommandBus(bench.cairn.settings(), nudge=Nudger(pool), pool=pool)
        await bus.start()
        try:

            async def append() -> None:
                r = await bus.send(_initiate(str(uuid.uuid4()), "bench-rtt"))
                assert r.applied, "a new upload must append"

            target = str(uuid.uuid4())
            await bus.send(_initiate(target, "bench-rtt"))

            async def replay() -> None:
                r = await bus.send(_initiate(target, "bench-rtt"))
                assert not r.applied, "a replay must not append"

            return {
                APPEND: await _timed(n, append, warm=warm),
                REPLAY: await _timed(n, replay, warm=warm),
            }
        finally:
            await bus.stop()


async def _echo_baselines(
    settings: Settings, n: int, samples: dict[str, list[float]], res: Result
) -> None:
    # The echo with Cairn's own consumer settings; and, when Cairn waits longer per fetch
    # than ECHO_SHORT_WAIT_MS, also with the short wait, to show what the wait costs.
    wait = getattr(settings, "kafka_fetch_max_wait_ms", None)
    baselines = [
        (
            "Kafka 2-hop echo, Cairn's consumer settings"
            + ("" if wait is None else f" (fetch_max_wait_ms={wait})"),
            await kafka_echo(settings, n),
        )
    ]
    if wait is None or wait > ECHO_SHORT_WAIT_MS:
        baselines.append(
            (
                f"Kafka 2-hop echo, fetch_max_wait_ms={ECHO_SHORT_WAIT_MS}",
                await kafka_echo(settings, n, fetch_max_wait_ms=ECHO_SHORT_WAIT_MS),
            )
        )
    for name, base in baselines:
        _rtt_rows(res, "command RTT", samples, name, dict.fromkeys(samples, base))
    res.notes.append(
        f"{n} sequential commands per variant after {WARM_COMMANDS} warm-up; CommandBus from "
        "the bench process to the running actor host, as the API sends them (nudge, replies "
        "by NOTIFY too)"
    )
    res.extra["samples_ms"] = {
        "append": [1000 * x for x in samples[APPEND]],
        "replay": [1000 * x for x in samples[REPLAY]],
        **{name: [1000 * x for x in base] for name, base in baselines},
    }


# ---------------------------------------------------------------------------- command_trickle

TRICKLE_GAP = 0.07  # one command every 70 ms: a single upload's chunk rate on a 2-vCPU VM


async def command_trickle(bench: Bench, res: Result) -> None:
    """Commands that come one at a time with gaps between them, as one upload's chunks do:
    the broker's CPU per command, against the Kafka echo at the same rate on the same broker
    (whose consumers fetch all the time, as the actor host did before it fetched on demand).
    The echo runs in the bench process, so the broker is the one process both are billed."""
    assert bench.cairn is not None
    n = bench.scale.rtt_samples
    settings = bench.cairn.settings()
    async with _pool(bench, 2) as pool:
        bus = CommandBus(settings, nudge=Nudger(pool), pool=pool)
        await bus.start()
        try:
            target = str(uuid.uuid4())
            await bus.send(_initiate(target, "bench-trickle"))

            async def replay() -> None:
                await bus.send(_initiate(target, "bench-trickle"))

            with bench.window() as cairn_w:
                cairn = await _timed(n, replay, TRICKLE_GAP)
        finally:
            await bus.stop()
    with bench.window() as echo_w:
        echo = await kafka_echo(settings, n, gap=TRICKLE_GAP)
    sent = WARM_COMMANDS + n
    res.rows.append(
        Row(
            f"command RTT p50, one every {1000 * TRICKLE_GAP:.0f} ms",
            "ms",
            [1000 * percentile(cairn, 50)],
            "Kafka 2-hop echo at the same rate",
            [1000 * percentile(echo, 50)],
            higher_is_better=False,
            kind="value",
        )
    )
    if cairn_w is not None and echo_w is not None:
        per = {
            "cairn": {k: 1000 * v / sent for k, v in cairn_w.cpu_seconds.items()},
            "echo": {k: 1000 * v / sent for k, v in echo_w.cpu_seconds.items()},
        }
        res.rows.append(
            Row(
                "broker CPU per command",
                "ms",
                [per["cairn"].get("tansu", 0.0)],
                "Kafka 2-hop echo at the same rate",
                [per["echo"].get("tansu", 0.0)],
                higher_is_better=False,
                kind="value",
            )
        )
        res.notes.append(
            "CPU ms per command at one every "
            f"{1000 * TRICKLE_GAP:.0f} ms: "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per["cairn"].items()) if v >= 0.05)
        )


# ---------------------------------------------------------------------------- append_to_projection


async def append_to_projection(bench: Bench, res: Result) -> None:
    n_full = bench.scale.projection_events
    e2e, appends, lags = [], [], []
    async with _pool(bench) as pool:
        actors = Actors(PostgresEventStore(pool))
        for _, warmup in bench.iterations():
            n = max(WRITERS, n_full // 10) if warmup else n_full
            owner = f"bench-proj-{secrets.token_hex(4)}"
            ids = [str(uuid.uuid4()) for _ in range(n)]

            async def writer(mine: list[str], owner: str = owner) -> None:
                for aid in mine:
                    reply = await actors.execute(_initiate(aid, owner))
                    if not reply.get("ok"):
                        raise RuntimeError(f"append refused: {reply}")

            t0 = time.perf_counter()
            await asyncio.gather(*[writer(ids[k::WRITERS]) for k in range(WRITERS)])
            t_appended = time.perf_counter()
            deadline = t_appended + PROJECTION_TIMEOUT
            while True:
                seen = await pool.fetchval(
                    "SELECT count(*) FROM readmodel.uploads WHERE owner = $1", owner
                )
                if seen >= n:
                    break
                if time.perf_counter() > deadline:
                    raise TimeoutError(
                        f"read model shows {seen}/{n} uploads {PROJECTION_TIMEOUT:.0f} s after the appends"
                    )
                await asyncio.sleep(0.01)
            t_end = time.perf_counter()
            if not warmup:
                e2e.append(n / (t_end - t0))
                appends.append(n / (t_appended - t0))
                lags.append(1000 * (t_end - t_appended))
    res.rows += [
        Row("append → read model", "events/s", e2e),
        Row(f"append only ({WRITERS} writers)", "events/s", appends),
        Row("read model lag after the last append", "ms", lags, higher_is_better=False),
    ]
    res.notes.append(
        f"{n_full} UploadInitiated events per run, one per new stream, appended through "
        "bus.actors.host.Actors straight into the event store; then relay → Kafka → projector"
    )


# ---------------------------------------------------------------------------- append_rate

APPEND_WRITERS = (1, 8, 32)


async def append_rate(bench: Bench, res: Result) -> None:
    """Events per second straight into `PostgresEventStore.append`, one event per append on
    a new stream (with a command id, as the actor host appends), at 1, 8 and 32 writers."""
    n_full = bench.scale.projection_events
    rates: dict[int, list[float]] = {w: [] for w in APPEND_WRITERS}
    cpu: dict[int, dict[str, float]] = {}  # writers -> process -> CPU s over the measured runs
    counts: dict[int, int] = {}
    meta = EventMeta(occurred_at=datetime.now(UTC), owner="bench-append")
    uploads = AGGREGATES["uploads"]
    async with _pool(bench, max(APPEND_WRITERS)) as pool:
        store = PostgresEventStore(pool)
        for _, warmup in bench.iterations():
            for writers in APPEND_WRITERS:
                n = max(writers, n_full // 10) if warmup else n_full
                per = max(1, n // writers)

                async def writer(k: int = 0, per: int = per) -> None:
                    for _ in range(per):
                        cmd = dataclasses.replace(
                            _initiate(str(uuid.uuid4()), "bench-append"),
                            command_id=str(uuid.uuid4()),
                        )
                        new = uploads.decide(None, cmd)
                        await store.append(cmd.stream_id, 0, new, meta, command_id=cmd.command_id)

                t0, own0 = time.perf_counter(), time.process_time()
                with bench.window() as w:
                    await asyncio.gather(*[writer(k) for k in range(writers)])
                dt = time.perf_counter() - t0
                if not warmup:
                    rates[writers].append(per * writers / dt)
                    add_cpu(cpu.setdefault(writers, {}), w)
                    bench_cpu = cpu[writers].get("bench (writers)", 0.0)
                    cpu[writers]["bench (writers)"] = bench_cpu + time.process_time() - own0
                    counts[writers] = counts.get(writers, 0) + per * writers
    for writers, values in rates.items():
        res.rows.append(Row(f"appends, {writers} writer{'s' * (writers > 1)}", "events/s", values))
    res.notes.append(
        f"{n_full} appends per writer count and run, one event each on a new stream, with a "
        "command id; PostgresEventStore from the bench process against the running system's "
        "Postgres (fsync on)"
    )
    for writers, by_process in cpu.items():
        # Everything downstream runs meanwhile (relay, broker, projector, handlers): on a
        # small machine their CPU per event, not the store, bounds the rate.
        per_event = {k: 1000 * v / counts[writers] for k, v in by_process.items()}
        res.notes.append(
            f"CPU ms per event at {writers} writer{'s' * (writers > 1)}: "
            + ", ".join(
                f"{k} {v:.2f}"
                for k, v in sorted(per_event.items(), key=lambda kv: -kv[1])
                if v >= 0.005
            )
            + f"; in all {sum(per_event.values()):.2f}"
        )


# ---------------------------------------------------------------------------- projection_rebuild

MIN_REBUILD_EVENTS = 1_000


async def projection_rebuild(bench: Bench, res: Result) -> None:
    rates: dict[str, list[float]] = {name: [] for name in PROJECTIONS}
    applied: dict[str, int] = {}
    async with _pool(bench) as pool:
        total = await pool.fetchval("SELECT count(*) FROM eventstore.events")
        for _, warmup in bench.iterations():
            for name in PROJECTIONS:
                t0 = time.perf_counter()
                count = await rebuild(pool, name)
                dt = time.perf_counter() - t0
                applied[name] = count
                if not warmup:
                    rates[name].append(count / dt)
    # A rebuild's fixed cost (truncating and re-creating the read model's tables) dominates
    # a projection with a handful of events: its "rate" would say nothing (a full run once
    # reported 3.5 events/s for 8 bucket events, 0 for none), so only those with enough
    # events to time get a row; the note still names every count.
    for name, values in rates.items():
        if applied.get(name, 0) >= MIN_REBUILD_EVENTS:
            res.rows.append(Row(f"rebuild {name}", "events/s", values))
    untimed = [k for k, v in applied.items() if v < MIN_REBUILD_EVENTS]
    res.notes.append(
        f"event store of {total} events; applied per rebuild: "
        + ", ".join(f"{k} {v}" for k, v in applied.items())
        + (
            f"; no rate for {', '.join(untimed)} (under {MIN_REBUILD_EVENTS} events)"
            if untimed
            else ""
        )
    )


# Run before every other scenario (tests/bench/__main__.py): the quiet figure.
FIRST = [
    Scenario(
        "bus.command_rtt_quiet",
        "command round trip p50/p99 on the fresh system, before the other scenarios",
        command_rtt_quiet,
    ),
]

SCENARIOS = [
    Scenario(
        "bus.command_rtt",
        "command round trip p50/p99 over Kafka to the actor host and back",
        command_rtt,
    ),
    Scenario(
        "bus.command_trickle",
        "broker CPU and round trip for commands 70 ms apart, against the Kafka echo",
        command_trickle,
    ),
    Scenario(
        "bus.append_to_projection",
        "events per second from append to the read model",
        append_to_projection,
    ),
    Scenario(
        "bus.append_rate",
        "event store appends per second at 1, 8 and 32 concurrent writers",
        append_rate,
    ),
    Scenario(
        "bus.projection_rebuild",
        "projection rebuild events per second from the event store",
        projection_rebuild,
    ),
]
