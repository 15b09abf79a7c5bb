"""`python -m tests.bench [--quick] [SCENARIO...]`: benchmark Cairn against the machine and peers.

Exit status: 0 when every selected scenario ran (whatever the numbers), 1 when any scenario
errored (CI runs `just bench --quick` and fails only on that), 2 on bad arguments, 130 when
interrupted. See tests/bench/__init__.py for the layout.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from tests.bench import (
    bus,
    cli,
    console,
    downloads,
    events,
    events_ws,
    fetches,
    growth,
    listing,
    objects,
    pending,
    s3,
    tasks,
    tus,
    uploads,
)
from tests.bench.core import FULL, QUICK, Scenario, render_text, write_results

ALL: list[Scenario] = [
    *bus.FIRST,
    *uploads.SCENARIOS,
    *objects.SCENARIOS,
    *listing.SCENARIOS,
    *tus.SCENARIOS,
    *downloads.SCENARIOS,
    *cli.SCENARIOS,
    *fetches.SCENARIOS,
    *tasks.SCENARIOS,
    *pending.SCENARIOS,
    *bus.SCENARIOS,
    *events.SCENARIOS,
    *events_ws.SCENARIOS,
    *growth.SCENARIOS,
    *s3.SCENARIOS,
    *console.SCENARIOS,
]


def select(names: Sequence[str]) -> list[Scenario]:
    """Scenarios by exact name or by group (`upload` = every `upload.*`), in run order."""
    if not names:
        return list(ALL)
    unknown = [n for n in names if not any(sc.name == n or sc.group == n for sc in ALL)]
    if unknown:
        raise ValueError(
            f"unknown scenario(s): {', '.join(unknown)}; known: "
            + ", ".join(sc.name for sc in ALL)
            + " (or a group: "
            + ", ".join(dict.fromkeys(sc.group for sc in ALL))
            + ")"
        )
    return [sc for sc in ALL if sc.name in names or sc.group in names]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Benchmark Cairn (started on its embedded default) against nginx, a bare "
        "Python streaming endpoint and the limits of this machine.",
    )
    p.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help="names or groups (default: all)"
    )
    p.add_argument("--quick", action="store_true", help="small sizes, for CI (well under 3 min)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument(
        "--no-install",
        action="store_true",
        help="never install a missing baseline (apt-get nginx, npm ci the tus packages)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    p.add_argument("--tmp", metavar="DIR", default=None, help="where the work dir goes")
    return p


async def _main(args: argparse.Namespace, scenarios: list[Scenario], command: str) -> int:
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGINT is asyncio.run's (it cancels us); SIGTERM too, so that everything started is
    # stopped either way.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    from tests.bench.runner import run

    results, meta = await run(
        scenarios,
        QUICK if args.quick else FULL,
        install=not args.no_install,
        keep=args.keep,
        tmp_root=args.tmp,
        command=command,
    )
    print()
    print(render_text(results))
    json_path, md_path = write_results(results, meta)
    errors = [r.scenario for r in results if r.status == "error"]
    print()
    print(
        f"{meta['mode']} mode: {meta['wall_seconds']:.0f} s in all; results in {md_path} and {json_path.name}"
    )
    if errors:
        print(f"FAILED: {len(errors)} scenario(s) errored: {', '.join(errors)}")
        return 1
    ok = sum(r.status == "ok" for r in results)
    pend = sum(r.status == "pending" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    print(f"{ok} scenario(s) ran, {pend} pending, {skipped} skipped, 0 errored")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["idle"]:
        # Not a scenario: it needs the system to itself (tests/bench/idle.py).
        from tests.bench import idle

        return idle.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.list:
        for sc in ALL:
            state = "PENDING" if sc.run is None else ""
            print(f"{sc.name:<28} {state:<8} {sc.pending or sc.description}")
        return 0
    try:
        scenarios = select(args.scenarios)
    except ValueError as e:
        print(f"python -m tests.bench: error: {e}", file=sys.stderr)
        return 2
    command = (
        "just bench" + (" --quick" if args.quick else "") + "".join(f" {n}" for n in args.scenarios)
    )
    try:
        return asyncio.run(_main(args, scenarios, command))
    except KeyboardInterrupt:
        print("interrupted; everything the bench started has been stopped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("terminated; everything the bench started has been stopped", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
