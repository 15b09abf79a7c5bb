"""`python -m tests.bench.idle [--seconds N]`: the CPU an idle `cairn up` uses, per process kind.

Not a scenario of `just bench` (nothing may run beside it: any request would be billed to
the idle figure) and not a test (it asserts nothing about speed). It starts `cairn up` on
its embedded default (fresh data dir, free ports; see tests/bench/cairn.py), waits for
/ready and a settling pause, then sums the CPU time (user + system) of every process of
the system over the window: the supervisor's whole tree plus PostgreSQL, which `pg_ctl`
daemonises out of it (found through postmaster.pid). The result is reported as a
percentage of one core, per process kind (labels as in tests/bench/memory.py) and in
total. No request is made during the window, not even /ready.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.bench.cairn import Cairn
from tests.bench.memory import label_of

SETTLE_SECONDS = 10.0  # after /ready: start-up work (topic metadata, first joins) ends


def _processes(cairn: Cairn) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        sup = psutil.Process(cairn.supervisor_pid)
        found += [sup, *sup.children(recursive=True)]
    with contextlib.suppress(OSError, ValueError, IndexError, psutil.Error):
        pid = int((cairn.data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
        pm = psutil.Process(pid)
        found += [pm, *pm.children(recursive=True)]
    return found


def _cpu(procs: list[psutil.Process], supervisor_pid: int) -> dict[int, tuple[str, float]]:
    out: dict[int, tuple[str, float]] = {}
    for p in procs:
        label = label_of(p, supervisor_pid)
        if label is None:
            continue
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[p.pid] = (label, t.user + t.system)
    return out


def measure(cairn: Cairn, seconds: float) -> dict[str, float]:
    """Per label, the % of one core used over `seconds` (plus "total")."""
    before = _cpu(_processes(cairn), cairn.supervisor_pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    after = _cpu(_processes(cairn), cairn.supervisor_pid)
    elapsed = time.monotonic() - t0
    used: dict[str, float] = {}
    for pid, (label, now) in after.items():
        # A process born inside the window counts from zero; one that died in it is lost
        # (an idle system restarts nothing; the supervisor would log it).
        start = before.get(pid, (label, 0.0))[1]
        used[label] = used.get(label, 0.0) + max(now - start, 0.0)
    pct = {k: 100 * v / elapsed for k, v in sorted(used.items(), key=lambda kv: -kv[1])}
    pct["total"] = sum(pct.values())
    return pct


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.idle", description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0, help="measuring window (default 60)")
    p.add_argument("--settle", type=float, default=SETTLE_SECONDS, help="pause after /ready")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--only", metavar="KINDS", help="passed to `cairn up --only` (default: all)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cairn-idle-") as tmp:
        cairn = Cairn(Path(tmp))
        if args.only:
            cairn.proc.argv += ["--only", args.only]
        try:
            cairn.start()
            print(
                f"ready after {cairn.start_seconds:.1f} s; settling {args.settle:.0f} s", flush=True
            )
            time.sleep(args.settle)
            print(f"measuring {args.seconds:.0f} s of idle CPU", flush=True)
            pct = measure(cairn, args.seconds)
        finally:
            cairn.stop()
    if args.json:
        print(json.dumps({k: round(v, 2) for k, v in pct.items()}))
    else:
        print(f"idle CPU over {args.seconds:.0f} s, % of one core:")
        for label, v in pct.items():
            print(f"  {label:<12} {v:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
