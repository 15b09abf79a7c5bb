"""What every scenario shares: the two scales, the result model, statistics and the report."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from tests.bench.runner import Bench

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Scale:
    """How big and how many: `quick` smoke-tests the harness in CI, `full` gives real figures."""

    name: str
    warmup: int  # warm-up iterations, not measured
    runs: int  # measured iterations; the table shows their median
    # ... of the 4 KiB tus files and object PUTs: runs of a few seconds each, whose rates
    # swing with the VM's CPU from one run to the next (Cairn's and the peer's alike), so
    # more of them, still alternating with the baseline, for a median that holds still.
    small_runs: int
    # Warm-ups of the big transfers use a file of at most this size: they exist to warm
    # connections, caches and code paths, not to move another GiB.
    warmup_bytes: int
    single_bytes: int  # upload.single
    parallel_streams: int  # upload.parallel and download.parallel
    parallel_bytes: int  # each stream of the parallel scenarios
    small_files: int  # upload.small_files: files per run (at most)
    small_concurrency: int
    small_seconds: float  # ... and at most this long per run
    tus_chunk_bytes: int  # upload.tus_single / tus_parallel: tus-js-client's chunkSize
    download_bytes: int  # download.single
    rtt_samples: int  # bus.command_rtt: commands per variant
    projection_events: int  # bus.append_to_projection: events per run
    growth_small: int  # memory.growth: the two sizes compared
    growth_large: int
    list_objects: int  # objects.list: objects in the listed bucket (files in nginx's dirs)
    # objects.list: seconds per way and run, the ways taking turns listing (nginx lists a
    # quick run's 1,000 names in a few milliseconds: one listing alone is too short).
    list_seconds: float
    scenario_timeout: float  # seconds; a scenario over it is an error


# CI's smoke test of the harness (every scenario runs, none may error; no figure counts):
# one run each, no warm-up, to keep CI's half-hour.
QUICK = Scale(
    name="quick",
    warmup=0,
    runs=1,
    small_runs=1,
    warmup_bytes=4 * MiB,
    single_bytes=16 * MiB,
    parallel_streams=8,
    parallel_bytes=4 * MiB,
    small_files=32,
    small_concurrency=16,
    small_seconds=10.0,
    tus_chunk_bytes=8 * MiB,  # so that the 16 MiB file still takes several PATCHes
    download_bytes=16 * MiB,
    rtt_samples=20,
    projection_events=200,
    growth_small=4 * MiB,
    growth_large=48 * MiB,
    list_objects=1000,
    list_seconds=1.0,
    scenario_timeout=60.0,
)

FULL = Scale(
    name="full",
    warmup=1,
    runs=3,
    small_runs=7,
    warmup_bytes=64 * MiB,
    single_bytes=1 * GiB,
    parallel_streams=8,
    parallel_bytes=256 * MiB,
    small_files=1000,
    small_concurrency=32,
    small_seconds=30.0,
    tus_chunk_bytes=64 * MiB,
    download_bytes=1 * GiB,
    rtt_samples=150,
    projection_events=5000,
    growth_small=64 * MiB,
    growth_large=1 * GiB,
    list_objects=10_000,
    list_seconds=3.0,
    scenario_timeout=900.0,
)


# ---------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the table: a Cairn figure and (optionally) one baseline it is compared to."""

    metric: str
    unit: str
    cairn: list[float]
    baseline: str | None = None  # the baseline's name
    baseline_values: list[float] | None = None
    baseline_note: str | None = None  # e.g. why the baseline is unavailable
    higher_is_better: bool = True
    # "median": the table shows the median of the per-run values; "value": a single
    # figure already computed over pooled samples (p50/p99 latency).
    kind: str = "median"

    @property
    def cairn_value(self) -> float | None:
        return summarize(self.cairn)

    @property
    def baseline_value(self) -> float | None:
        return summarize(self.baseline_values or [])

    @property
    def ratio(self) -> float | None:
        c, b = self.cairn_value, self.baseline_value
        if c is None or b is None or b == 0:
            return None
        return c / b


@dataclass
class Result:
    scenario: str
    status: str  # ok | error | pending | skipped
    description: str = ""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    peak_rss: dict[str, int] = field(default_factory=dict)  # label -> bytes
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # label -> s
    extra: dict[str, Any] = field(default_factory=dict)


ScenarioFn = Callable[["Bench", Result], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: ScenarioFn | None = None  # None: the feature is not built yet (PENDING)
    pending: str | None = None  # why it is pending
    needs: frozenset[str] = frozenset()  # "nginx", "bare", "tus", "fetch"
    # For a pending scenario: the path its feature adds to Cairn's OpenAPI, if any.
    probe: str | None = None
    # Seconds on top of the scale's scenario timeout, for a scenario that starts a system
    # of its own (s3.transfer: a second `cairn up` and the local S3 server).
    extra_timeout: float = 0.0
    # A multiple of the scale's scenario timeout, for a scenario whose work is long in every
    # mode (tasks.archive: 16 tasks and 16 CLI runs over 1 GiB each in full mode).
    timeout_factor: float = 1.0

    def timeout(self, scenario_timeout: float) -> float:
        return scenario_timeout * self.timeout_factor + self.extra_timeout

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]


# ---------------------------------------------------------------------------- statistics


def summarize(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); p in [0, 100]."""
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def latency_rows(
    metric: str,
    seconds: Sequence[float],
    baseline: str | None = None,
    baseline_seconds: Sequence[float] | None = None,
    note: str | None = None,
    variant: str = "",
) -> list[Row]:
    """`metric p50` and `metric p99` rows (then `, variant` if given) in ms of pooled
    samples in seconds, each against the baseline's samples when there are any (lower is
    better)."""
    return [
        Row(
            f"{metric} p{p}{f', {variant}' if variant else ''}",
            "ms",
            [1000 * percentile(seconds, p)],
            baseline,
            [1000 * percentile(baseline_seconds, p)] if baseline_seconds else None,
            note,
            higher_is_better=False,
            kind="value",
        )
        for p in (50, 99)
    ]


def mb_per_s(nbytes: int, seconds: float) -> float:
    """Throughput in MB/s (10^6 bytes per second, like curl and dd)."""
    return nbytes / max(seconds, 1e-9) / 1e6


def human_bytes(n: int) -> str:
    if n >= GiB and n % GiB == 0:
        return f"{n // GiB} GiB"
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} B"


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if unit == "MiB" or abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_spread(values: Sequence[float], unit: str = "") -> str:
    """The median, with the min-max range when there are several runs (this shows noise)."""
    mid = fmt(summarize(values), unit)
    if len(values) < 2:
        return mid
    return f"{mid} ({fmt(min(values), unit)}-{fmt(max(values), unit)})"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}x"


# ---------------------------------------------------------------------------- the machine


def _first_line(cmd: list[str]) -> str | None:
    exe = shutil.which(cmd[0])
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, *cmd[1:]], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def machine_info(tmp: Path) -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    disk = shutil.disk_usage(tmp)
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / GiB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "disk_free_gib": round(disk.free / GiB, 1),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "curl": " ".join((_first_line(["curl", "--version"]) or "").split()[:2]) or None,
    }


# ---------------------------------------------------------------------------- the report

PROCESS_ORDER = (
    "api",
    "actors",
    "relay",
    "projector",
    "handlers",
    "supervisor",
    "postgres",
    "tansu",
)


def _labels(results: Sequence[Result]) -> list[str]:
    seen = {k for r in results for k in r.peak_rss}
    return [k for k in PROCESS_ORDER if k in seen] + sorted(seen - set(PROCESS_ORDER))


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    """The main table: one line per (scenario, metric, baseline)."""
    out: list[list[str]] = []
    for r in results:
        if r.status == "pending":
            out.append([r.scenario, "PENDING", "—", "—", "—", "—"])
            continue
        if r.status == "error":
            out.append([r.scenario, "ERROR", "—", "—", "—", "—"])
            continue
        if r.status == "skipped":
            out.append([r.scenario, "SKIPPED", "—", "—", "—", "—"])
            continue
        for row in r.rows:
            metric = f"{row.metric} ({row.unit})"
            if row.baseline is None:
                base, bval = "—", "—"
            elif row.baseline_values:
                base, bval = row.baseline, fmt_spread(row.baseline_values, row.unit)
            else:
                base, bval = row.baseline, f"unavailable: {row.baseline_note or 'not measured'}"
            out.append(
                [
                    r.scenario,
                    metric,
                    fmt_spread(row.cairn, row.unit),
                    base,
                    bval,
                    fmt_ratio(row.ratio),
                ]
            )
    return out


TABLE_HEAD = ["Scenario", "Metric", "Cairn", "Baseline", "Baseline value", "Cairn / baseline"]


def render_text(results: Sequence[Result]) -> str:
    rows = [TABLE_HEAD, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEAD))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _baselines(meta: dict[str, Any]) -> str:
    """The baselines the run started (those its scenarios did not need say "not started")."""
    parts = [meta.get("nginx") or "nginx unavailable", meta["machine"].get("curl") or "no curl"]
    if meta.get("tus") not in (None, "not started"):
        parts.append(f"tus: {meta['tus']}")
    return "; ".join(p for p in parts if p != "not started")


def render_markdown(results: Sequence[Result], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    parts = [
        f"## Cairn benchmark ({meta['mode']} mode)",
        "",
        f"{meta['started_at']} · `{meta['command']}` · {meta['wall_seconds']:.0f} s in all "
        f"(Cairn up in {meta.get('cairn_start_seconds', 0):.1f} s)",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; load average at start {m['loadavg_start']}. "
        f"Baselines: {_baselines(meta)}.",
        "",
        f"Each figure is the median of {meta['runs']} runs after {meta['warmup']} warm-up "
        f"({meta['small_runs']} for the 4 KiB tus files and object PUTs), "
        "with the range over the runs in brackets (latency percentiles pool every sample). "
        "Ratio = Cairn / baseline (medians): for MB/s and per-second figures below 1 means "
        "Cairn is slower; for ms above 1 means it is slower.",
        "",
        _md_table(TABLE_HEAD, table_rows(results)),
    ]
    pending = [r for r in results if r.status == "pending"]
    if pending:
        parts += ["", "Pending (feature not built yet, nothing measured):", ""]
        parts += [f"- `{r.scenario}`: {r.description}" for r in pending]
    notes = [(r.scenario, n) for r in results for n in r.notes]
    if notes:
        parts += ["", "Notes:", ""] + [f"- `{s}`: {n}" for s, n in notes]
    labels = _labels(results)
    if labels:
        mem_rows = [
            [r.scenario]
            + [fmt(r.peak_rss[k] / MiB, "MiB") if k in r.peak_rss else "—" for k in labels]
            for r in results
            if r.peak_rss
        ]
        parts += [
            "",
            "Peak RSS per Cairn process and scenario (MiB; postgres = its largest process):",
            "",
            _md_table(["Scenario", *labels], mem_rows),
        ]
    growth = next((r.extra.get("growth") for r in results if r.extra.get("growth")), None)
    if growth:
        parts += ["", growth["markdown"]]
    errors = [r for r in results if r.status == "error"]
    if errors:
        parts += ["", "Errors:", ""]
        parts += [f"- `{r.scenario}`: {(r.error or '').strip().splitlines()[-1]}" for r in errors]
    return "\n".join(parts) + "\n"


def write_results(results: Sequence[Result], meta: dict[str, Any]) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = meta["started_at"].replace(":", "").replace("-", "").replace("T", "-")[:15]
    base = RESULTS_DIR / f"bench-{meta['mode']}-{stamp}"
    payload = {
        "meta": meta,
        "results": [
            {
                **{k: v for k, v in asdict(r).items() if k != "rows"},
                "rows": [
                    {
                        **asdict(row),
                        "cairn_median": row.cairn_value,
                        "baseline_median": row.baseline_value,
                        "ratio": row.ratio,
                    }
                    for row in r.rows
                ],
            }
            for r in results
        ],
    }
    json_path = base.with_suffix(".json")
    md_path = base.with_suffix(".md")
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    md_path.write_text(render_markdown(results, meta))
    for p in (json_path, md_path):
        shutil.copyfile(p, RESULTS_DIR / f"latest-{meta['mode']}{p.suffix}")
    return json_path, md_path
