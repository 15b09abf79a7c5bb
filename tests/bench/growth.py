"""memory.growth: does any Cairn process need memory in proportion to the file it moves?

One upload and one download of a small file, then of a large one (full mode: 64 MiB and
1 GiB; quick: 4 and 48 MiB), each in its own sampling window. A process is flagged when its
peak RSS during the large transfer exceeds that during the small one by more than
max(GROWTH_FLOOR, GROWTH_SHARE x the size difference): streaming code holds a few buffers
whatever the size, so its peak must not follow the file.
"""

from __future__ import annotations

from tests.bench import client as native
from tests.bench.baselines import curl_download
from tests.bench.core import PROCESS_ORDER, MiB, Result, Row, Scenario, human_bytes
from tests.bench.runner import Bench

GROWTH_FLOOR = 24 * MiB
GROWTH_SHARE = 0.05
TIMEOUT = 600.0


def _mib(n: int | None) -> str:
    return "—" if n is None else f"{n / MiB:,.0f}"


async def growth(bench: Bench, res: Result) -> None:
    assert bench.cairn is not None
    s = bench.scale
    small = await bench.data("growth-small", s.growth_small)
    large_name = "up-single" if s.growth_large == s.single_bytes else "growth-large"
    large = await bench.data(large_name, s.growth_large)
    peaks: dict[tuple[str, str], dict[str, int]] = {}
    async with bench.cairn_client() as c:
        for size_label, path in (("small", small), ("large", large)):
            await bench.fresh(path)
            await bench.settle()
            with bench.window() as w:
                t = await native.native_upload(c, path, name=f"growth-{size_label}.bin")
            peaks[("upload", size_label)] = dict(w.peak) if w else {}
            bench.remember_in_cairn(path, t.file_id)
            url = f"{bench.cairn.url}/v1/files/{t.file_id}/content"
            with bench.window() as w:
                await curl_download(url, path.stat().st_size, TIMEOUT, headers=bench.cairn.headers)
            peaks[("download", size_label)] = dict(w.peak) if w else {}
    threshold = max(GROWTH_FLOOR, int(GROWTH_SHARE * (s.growth_large - s.growth_small)))
    seen = {k for p in peaks.values() for k in p}
    labels = [k for k in PROCESS_ORDER if k in seen] + sorted(seen - set(PROCESS_ORDER))
    flagged: list[str] = []
    table = []
    for label in labels:
        cells = [label]
        verdicts = []
        for op in ("upload", "download"):
            lo = peaks[(op, "small")].get(label)
            hi = peaks[(op, "large")].get(label)
            delta = None if lo is None or hi is None else hi - lo
            cells += [_mib(lo), _mib(hi), "—" if delta is None else f"{delta / MiB:+,.0f}"]
            if delta is not None and delta > threshold:
                verdicts.append(op)
                flagged.append(f"{label} ({op} {delta / MiB:+,.0f} MiB)")
        cells.append(("**yes**: " + ", ".join(verdicts)) if verdicts else "no")
        table.append(cells)
        if label == "api":
            for op in ("upload", "download"):
                lo = peaks[(op, "small")].get(label, 0)
                hi = peaks[(op, "large")].get(label, 0)
                res.rows.append(
                    Row(
                        f"api peak RSS growth, {op} {human_bytes(s.growth_small)} → {human_bytes(s.growth_large)}",
                        "MiB",
                        [(hi - lo) / MiB],
                        higher_is_better=False,
                    )
                )
    head = [
        "Process",
        f"upload {human_bytes(s.growth_small)}",
        f"upload {human_bytes(s.growth_large)}",
        "Δ",
        f"download {human_bytes(s.growth_small)}",
        f"download {human_bytes(s.growth_large)}",
        "Δ",
        "grows with file size?",
    ]
    md = [
        f"Memory growth with file size (peak RSS in MiB; flagged above +{threshold / MiB:.0f} MiB):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(" --- " for _ in head) + "|",
        *("| " + " | ".join(r) + " |" for r in table),
    ]
    res.extra["growth"] = {
        "threshold_bytes": threshold,
        "peaks": {f"{op}-{sz}": p for (op, sz), p in peaks.items()},
        "flagged": flagged,
        "markdown": "\n".join(md),
    }
    res.notes.append(
        "processes whose peak RSS grows with file size: "
        + (", ".join(flagged) if flagged else f"none (threshold +{threshold / MiB:.0f} MiB)")
    )


SCENARIOS = [
    Scenario(
        "memory.growth",
        "peak RSS of every Cairn process for a small vs a large upload and download",
        growth,
    ),
]
