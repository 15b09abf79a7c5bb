"""`python -m tests.bench.command_aging`: does `cairn up` get slower with the commands it
has carried? The same load on two fresh systems, one with the command topics recycled
(the embedded default, bus/actors/recycle.py) and one without (CAIRN_KAFKA_COMMAND_RECYCLE_AFTER=0).

Each system gets `--commands` new-upload commands (InitiateUpload: decide + one append)
from a CommandBus in this process, `--concurrency` at a time, exactly as the API sends
them, in blocks of `--block` with `--pause` seconds between them (the host recycles a
topic only in an idle moment). Reported per block: the round trip's p50 and p99, and the
embedded broker's CPU per command; at the end the broker's RSS and the recycles counted.
`tests.bench.broker_aging --one-per-batch` shows the broker's side alone.

`--set NAME=VALUE` adds a setting to every variant. The event topics age too, with every
relay pass (one batch each): `--concurrency 1 --variants 1000 --set
CAIRN_RELAY_LINGER_MS=20 --set CAIRN_RELAY_LINGER_FROM=16` is `cairn up` as it was before
it lingered after every pass (bus/store/relay.py, EMBEDDED_LINGER_MS).

Not a scenario of `just bench` (it compares Cairn with itself, minutes per variant) and
not a test. Nothing else should run beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil

from bus.actors.commandbus import CommandBus
from bus.actors.wake import Nudger
from bus.store import db
from tests.bench.bus import _initiate
from tests.bench.cairn import Cairn
from tests.bench.core import percentile


def _broker(cairn: Cairn) -> psutil.Process:
    for p in psutil.Process(cairn.supervisor_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "tansu" in " ".join(p.cmdline()):
                return p
    raise RuntimeError("no embedded broker found")


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


async def _drive(
    cairn: Cairn, commands: int, block: int, concurrency: int, pause: float
) -> list[str]:
    broker = _broker(cairn)
    pool = await db.create_pool(cairn.database_url, min_size=2, max_size=4)
    bus = CommandBus(cairn.settings(), nudge=Nudger(pool), pool=pool)
    await bus.start()
    lines = []
    try:
        for start in range(0, commands, block):
            times: list[float] = []
            cpu0 = _cpu(broker)

            async def worker(ids: Iterator[int], times: list[float]) -> None:
                for _ in ids:
                    t = time.perf_counter()
                    r = await bus.send(_initiate(str(uuid.uuid4()), "bench-aging"), timeout=60)
                    assert r.applied
                    times.append(time.perf_counter() - t)

            t0 = time.perf_counter()
            ids = iter(range(block))
            await asyncio.gather(*(worker(ids, times) for _ in range(concurrency)))
            wall = time.perf_counter() - t0
            cpu = (_cpu(broker) - cpu0) / block
            lines.append(
                f"  commands {start:>6}-{start + block:<6} p50 {percentile(times, 50) * 1e3:6.1f} ms"
                f"  p99 {percentile(times, 99) * 1e3:7.1f} ms  max {max(times) * 1e3:7.1f} ms"
                f"  {block / wall:6.0f}/s  broker CPU {cpu * 1e3:5.2f} ms/command"
            )
            print(lines[-1], flush=True)
            await asyncio.sleep(pause)  # an idle moment, as between a user's uploads
        rss = broker.memory_info().rss / 2**20
        recycled = sum(
            1
            for line in (cairn.data_dir.parent / "cairn.log").read_text().splitlines()
            if "command topic recycled" in line
        )
        lines.append(f"  broker RSS {rss:.0f} MiB, command topics recycled {recycled} times")
        print(lines[-1], flush=True)
    finally:
        await bus.stop()
        await pool.close()
    return lines


async def main(
    commands: int,
    block: int,
    concurrency: int,
    pause: float,
    variants: list[str],
    extra: dict[str, str] | None = None,
) -> None:
    report = []
    for recycle_after in variants:
        with tempfile.TemporaryDirectory(prefix="cairn-aging-") as tmp:
            env = {
                "CAIRN_KAFKA_COMMAND_RECYCLE_AFTER": recycle_after,
                "CAIRN_LOG_LEVEL": "info",
                **(extra or {}),
            }
            cairn = Cairn(Path(tmp), env=env)
            label = " ".join(f"{k}={v}" for k, v in env.items() if k != "CAIRN_LOG_LEVEL")
            print(label, flush=True)
            await asyncio.to_thread(cairn.start)
            try:
                lines = await _drive(cairn, commands, block, concurrency, pause)
            finally:
                await asyncio.to_thread(cairn.stop)
                warnings = [
                    line
                    for line in (Path(tmp) / "cairn.log").read_text().splitlines()
                    if "warning" in line or "error" in line
                ]
                print("\n".join(warnings[-20:]), flush=True)
            report += [label, *lines]
    print("\n".join(report))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--commands", type=int, default=24_000)
    p.add_argument("--block", type=int, default=2_000)
    p.add_argument("--pause", type=float, default=1.5, help="seconds idle between blocks")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--variants", default="1000,0", help="values of the setting, in order")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another setting for every variant, e.g. CAIRN_RELAY_LINGER_MS=20 (repeatable)",
    )
    args = p.parse_args()
    variants = args.variants.split(",")
    extra = dict(item.split("=", 1) for item in args.set)
    asyncio.run(main(args.commands, args.block, args.concurrency, args.pause, variants, extra))
