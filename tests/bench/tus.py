"""tus scenarios: Cairn's tus 1.0 server (/v1/tus) next to the @tus/server reference server.

One client for both: `tus_client.mjs`, tus-js-client in Node (a fresh `node` process per
run; its start-up is not timed), streaming the test file from disk in PATCHes of the
scale's chunk size (64 MiB in full mode), or sending 4 KiB files in their creation request
(creation-with-upload). The baseline is @tus/server with @tus/file-store on the same
machine, started by the bench (`tus_server.mjs`). Cairn gets the Authorization header,
and after each upload the client polls GET /v1/uploads/{id} until it names its file_id:
throughput is reported to the last tus response and, where that differs, until the file
exists.

Without node (or the npm packages) nothing can drive a tus upload: the scenarios are
SKIPPED, not errors. Without @tus/server only the baseline is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.bench import disk
from tests.bench.baselines import NODE_DIR
from tests.bench.core import (
    MiB,
    Result,
    Row,
    Scenario,
    human_bytes,
    latency_rows,
    mb_per_s,
)
from tests.bench.memory import label_of
from tests.bench.procs import run_to_end
from tests.bench.runner import Bench, add_cpu, cpu_ms_note, cpu_note

TUS_SERVER = "@tus/server + file store (tus-js-client)"
CLIENT = NODE_DIR / "tus_client.mjs"
SMALL = 4096
# "Until the file exists" is reported as a row of its own only when it moves the figure.
FILE_ROW_THRESHOLD = 0.01


class TusClientError(RuntimeError):
    pass


async def run_client(opts: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run tus_client.mjs with `opts`; its JSON report. Killed on timeout or cancellation."""
    code, out, err = await run_to_end(
        ["node", str(CLIENT), json.dumps(opts)], timeout, cwd=NODE_DIR
    )
    if code != 0:
        raise TusClientError(
            f"tus-js-client against {opts['endpoint']} exited {code}: "
            + err.decode(errors="replace").strip()[-2000:]
        )
    lines = out.decode().strip().splitlines()
    if not lines:
        raise TusClientError(f"tus-js-client against {opts['endpoint']} printed nothing")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def _cairn_opts(bench: Bench) -> dict[str, Any]:
    assert bench.cairn is not None
    return {
        "endpoint": f"{bench.cairn.url}/v1/tus",
        "headers": bench.cairn.headers,
        "check": bench.cairn.url,
    }


def _ref_opts(bench: Bench) -> dict[str, Any]:
    assert bench.tus is not None
    return {"endpoint": bench.tus.endpoint}


def _node_missing(bench: Bench, res: Result) -> bool:
    if bench.node_ready:
        return False
    res.status = "skipped"
    res.notes.append(f"no tus client: {bench.node_note}")
    return True


# ---------------------------------------------------------------------------- the node server


class Watch:
    """Peak RSS and CPU seconds of one process (the @tus/server node) over a block."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.cpu = 0.0
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tus-watch", daemon=True)
        self._sample()
        self.idle = self.peak  # before the scenario's first run

    def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def _cpu(self) -> float:
        try:
            t = self.proc.cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    @contextlib.contextmanager
    def running(self) -> Iterator[Watch]:
        self._sample()
        cpu0 = self._cpu()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tus-watch", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=2)
            self._sample()
            self.cpu += self._cpu() - cpu0
            self.runs += 1

    def note(self) -> str:
        return (
            f"@tus/server node process: peak RSS {self.peak / MiB:.0f} MiB (before the "
            f"scenario {self.idle / MiB:.0f} MiB), CPU {self.cpu / max(self.runs, 1):.2f} s "
            "per measured run"
        )


@contextlib.contextmanager
def _watching(watch: Watch | None, measured: bool) -> Iterator[None]:
    """Watch the @tus/server process over a measured run (not over warm-ups)."""
    if watch is None or not measured:
        yield
        return
    with watch.running():
        yield


def _new_watch(bench: Bench) -> Watch | None:
    if bench.tus is None:
        return None
    try:
        return Watch(bench.tus.pid)
    except psutil.Error:
        return None


# ---------------------------------------------------------------------------- breakdown


async def _replies_by_channel(bench: Bench) -> dict[str, float]:
    """The API's cairn_command_replies_total by `via` (notify, kafka), from /metrics."""
    assert bench.cairn is not None
    async with httpx.AsyncClient(base_url=bench.cairn.url, headers=bench.cairn.headers) as c:
        text = (await c.get("/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cairn_command_replies_total{"):
            via = line.split('via="', 1)[1].split('"', 1)[0]
            out[via] = out.get(via, 0.0) + float(line.split()[-1])
    return out


def _broker_rss(bench: Bench) -> int | None:
    """The embedded broker's RSS in bytes (it keeps every record in memory), if it runs."""
    assert bench.cairn is not None
    sup = psutil.Process(bench.cairn.supervisor_pid)
    for p in sup.children(recursive=True):
        if label_of(p, sup.pid) == "tansu":
            with contextlib.suppress(psutil.Error):
                return int(p.memory_info().rss)
    return None


def _ms(s: float) -> str:
    return f"{1000 * s:.0f} ms"


def breakdown(name: str, reports: list[dict[str, Any]]) -> str:
    """Where an upload's time goes, over the measured runs: the creation POST, the PATCHes
    before the last (pure transfer), the last PATCH (for Cairn it also turns the upload into
    a file: re-hash of every piece from the blob store, CompleteUpload, CreateFile)."""
    ups = [u for r in reports for u in r["uploads"]]
    posts = [q["seconds"] for u in ups for q in u["requests"] if q["method"] == "POST"]
    body = [q for u in ups for q in u["requests"][:-1] if q["method"] == "PATCH"]
    last = [u["requests"][-1] for u in ups if u["requests"][-1]["method"] == "PATCH"]
    n_patch = statistics.median(sum(q["method"] == "PATCH" for q in u["requests"]) for u in ups)
    parts = [f"POST {_ms(statistics.median(posts))}" if posts else "no POST"]
    rate = None
    if body:
        per = statistics.median(q["seconds"] for q in body)
        size = statistics.median(q["newOffset"] - q["offset"] for q in body)
        rate = statistics.median(
            (q["newOffset"] - q["offset"]) / max(q["seconds"], 1e-9) for q in body
        )
        parts.append(
            f"{n_patch:.0f} PATCHes per upload, those before the last "
            f"{human_bytes(int(size))} in {_ms(per)} each ({rate / 1e6:.0f} MB/s)"
        )
    if last:
        t_last = statistics.median(q["seconds"] for q in last)
        b_last = statistics.median(q["newOffset"] - q["offset"] for q in last)
        text = f"the last PATCH ({human_bytes(int(b_last))}) {_ms(t_last)}"
        if rate:
            extra = t_last - b_last / rate
            text += f", about {_ms(max(extra, 0.0))} more than its bytes at that rate"
        parts.append(text)
    busy = statistics.median(sum(q["seconds"] for q in u["requests"]) for u in ups)
    wall = statistics.median(u["end"] - u["start"] for u in ups)
    parts.append(f"client time between requests {_ms(max(wall - busy, 0.0))} per upload")
    return f"{name}: " + ", ".join(parts)


# ---------------------------------------------------------------------------- big files


async def _files(
    bench: Bench,
    res: Result,
    paths: list[Path],
    warm: list[Path],
    tag: str,
    metric: str,
) -> None:
    s = bench.scale
    chunk = s.tus_chunk_bytes
    cairn, cairn_file, ref, durable = [], [], [], []
    reports_c: list[dict[str, Any]] = []
    reports_r: list[dict[str, Any]] = []
    client_rss: list[int] = []
    cpu: dict[str, float] = {}
    watch = _new_watch(bench)
    for i, warmup in bench.iterations():
        fs = warm if warmup else paths
        total = sum(f.stat().st_size for f in fs)
        for f in fs:
            await bench.fresh(f)
        await bench.settle()
        common = {"mode": "files", "files": [str(f) for f in fs], "chunkSize": chunk}
        with bench.window() as w:
            rep = await run_client(
                {**_cairn_opts(bench), **common, "tag": f"{tag}-{i}"}, s.scenario_timeout
            )
        for f, u in zip(fs, rep["uploads"], strict=True):
            bench.remember_in_cairn(f, u["fileId"])
        if not warmup:
            add_cpu(cpu, w)
            reports_c.append(rep)
            client_rss.append(int(rep["clientMaxRssBytes"]))
            cairn.append(mb_per_s(total, rep["seconds"]))
            cairn_file.append(mb_per_s(total, rep["fileSeconds"]))
        if bench.tus is not None:
            await bench.settle()
            with _watching(watch, not warmup):
                rep = await run_client({**_ref_opts(bench), **common}, s.scenario_timeout)
            await asyncio.to_thread(bench.tus.clear)
            if not warmup:
                reports_r.append(rep)
                ref.append(mb_per_s(total, rep["seconds"]))
        if not warmup:
            durable.append(await disk.measure(bench, fs))
    note = None if bench.tus else bench.tus_note
    res.rows.append(Row(metric, "MB/s", cairn, TUS_SERVER, ref or None, note))
    res.rows.append(Row(metric, "MB/s", cairn, disk.DISK, durable))
    c_mid, f_mid = statistics.median(cairn), statistics.median(cairn_file)
    ups = [u for r in reports_c for u in r["uploads"]]
    polls = max(u["polls"] for u in ups)
    if polls == 1:
        seen = (
            "the first GET /v1/uploads/{id} after the last tus response named the file_id "
            f"for every upload (Cairn finishes the file before it answers the last PATCH), "
            f"that GET took {_ms(statistics.median(u['lastPoll'] for u in ups))}"
        )
    else:
        seen = f"the file_id took up to {polls} GET /v1/uploads/{{id}} polls (10 ms apart)"
    if abs(c_mid - f_mid) / c_mid > FILE_ROW_THRESHOLD:
        res.rows.append(
            Row(
                f"{metric}, until GET /v1/uploads/{{id}} shows the file",
                "MB/s",
                cairn_file,
                TUS_SERVER,
                ref or None,
                note,
            )
        )
        res.notes.append(f"until the file exists: {seen}")
    else:
        res.notes.append(
            "to the last tus response and until GET /v1/uploads/{id} shows the file the "
            f"figures agree within {100 * FILE_ROW_THRESHOLD:.0f}%: {seen}"
        )
    res.notes.append(breakdown("Cairn", reports_c))
    if reports_r:
        res.notes.append(breakdown("@tus/server", reports_r))
    res.notes.append(
        "how they store bytes: Cairn cuts each PATCH body into pieces of "
        "CAIRN_TUS_PIECE_BYTES (8 MiB), each streamed as it arrives into its own durable "
        "content-addressed blob (temp file, sha256 in threads beside an O_DIRECT write where the "
        "filesystem allows it, fsync, rename, "
        "directory fsyncs), the next piece hashed and written while the previous one is "
        "fsynced, appended in order by AppendBytes in the "
        "background (about once a second or per 5% of the length) and at the end of each "
        "PATCH; the upload's running sha256 is carried through the PATCHes, so the last one "
        "completes (CompleteUpload, CreateFile) without re-reading the file. "
        "@tus/file-store appends the body to one file and never fsyncs"
    )
    runs = len(reports_c)
    res.notes.append(cpu_note({k: v / runs for k, v in cpu.items()}, "per Cairn run"))
    if watch is not None and watch.runs:
        res.notes.append(watch.note())
    res.notes.append(
        f"tus-js-client {human_bytes(chunk)} chunks, one node process, peak RSS "
        f"{max(client_rss) / MiB:.0f} MiB"
    )
    res.extra["tus"] = {"cairn": reports_c, "tus_server": reports_r}


async def tus_single(bench: Bench, res: Result) -> None:
    if _node_missing(bench, res):
        return
    s = bench.scale
    path = await bench.data("up-single", s.single_bytes)
    warm = await bench.data("warm", min(s.warmup_bytes, s.single_bytes))
    await _files(bench, res, [path], [warm], "tus-single", "tus throughput")
    res.notes.insert(0, f"{human_bytes(s.single_bytes)}, one tus upload (one stream)")


async def tus_parallel(bench: Bench, res: Result) -> None:
    if _node_missing(bench, res):
        return
    s = bench.scale
    n = s.parallel_streams
    files = [await bench.data(f"up-par-{k}", s.parallel_bytes) for k in range(n)]
    warm_each = min(s.parallel_bytes, max(MiB, s.warmup_bytes // n))
    warm = [await bench.data(f"warm-par-{k}", warm_each) for k in range(n)]
    await _files(bench, res, files, warm, "tus-par", "tus aggregate throughput")
    res.notes.insert(
        0,
        f"{n} concurrent tus uploads of {human_bytes(s.parallel_bytes)} each, from one "
        "tus-js-client process; wall time from the first request to the last response",
    )


# ---------------------------------------------------------------------------- small files


async def tus_small_files(bench: Bench, res: Result) -> None:
    if _node_missing(bench, res):
        return
    s = bench.scale
    conc = s.small_concurrency
    cairn, ref = [], []
    lat_c: list[float] = []
    lat_r: list[float] = []
    req_c: list[float] = []
    req_r: list[float] = []
    cpu: dict[str, float] = {}
    replies: dict[str, float] = {}  # via -> the API's awaited replies in the measured runs
    rss_start: int | None = None  # the embedded broker's, before the first measured run
    rss_end: int | None = None  # and after the last
    watch = _new_watch(bench)
    done_r = 0
    for i, warmup in bench.iterations(s.small_runs):
        count = min(s.small_files, 2 * conc) if warmup else s.small_files
        common = {
            "mode": "small",
            "size": SMALL,
            "count": count,
            "concurrency": conc,
            "seconds": s.small_seconds,
            "tag": f"tus-small-{i}",
        }
        # The node process, not the measurement, takes up to a poll for the last file.
        timeout = s.small_seconds + 120
        before = await _replies_by_channel(bench)
        if not warmup and rss_start is None:
            rss_start = _broker_rss(bench)
        with bench.window() as w:
            rep = await run_client({**_cairn_opts(bench), **common}, timeout)
        if not rep.get("lastFile", {}).get("fileId"):
            raise AssertionError(f"Cairn's last small tus upload did not become a file: {rep}")
        if not warmup:
            rss_end = _broker_rss(bench)
            after = await _replies_by_channel(bench)
            for via, n in after.items():
                replies[via] = replies.get(via, 0.0) + n - before.get(via, 0.0)
            add_cpu(cpu, w)
            cairn.append(rep["files"] / rep["seconds"])
            lat_c += rep["latencies"]
            req_c.append(rep["requests"] / max(rep["files"], 1))
        if bench.tus is not None:
            with _watching(watch, not warmup):
                rep = await run_client({**_ref_opts(bench), **common}, timeout)
            await asyncio.to_thread(bench.tus.clear)
            if not warmup:
                ref.append(rep["files"] / rep["seconds"])
                lat_r += rep["latencies"]
                req_r.append(rep["requests"] / max(rep["files"], 1))
                done_r += rep["files"]
    note = None if bench.tus else bench.tus_note
    res.rows.append(
        Row("4 KiB files, creation-with-upload", "files/s", cairn, TUS_SERVER, ref or None, note)
    )
    res.rows += latency_rows("latency per file", lat_c, TUS_SERVER, lat_r, note)
    res.notes.append(
        f"{SMALL} B files, {conc} concurrent tus-js-client uploads in one node process, at most "
        f"{s.small_files} files or {s.small_seconds:.0f} s per run ({len(lat_c)} Cairn files, "
        f"{done_r} @tus/server files measured); requests per file: Cairn "
        f"{statistics.median(req_c):.1f}"
        + (f", @tus/server {statistics.median(req_r):.1f}" if req_r else "")
        + " (the POST carries the body and answers with the final offset). In Cairn that "
        "POST is a blob put, then one InitiateUpload that carries the bytes and completes the "
        "upload, with the file created in the actor's same step (one command round trip) "
        "before it answers"
    )
    if rss_start is not None and rss_end is not None and lat_c:
        res.notes.append(
            f"the embedded broker's RSS grew by {(rss_end - rss_start) / MiB:.1f} MiB over the "
            f"measured runs' {len(lat_c)} files ({(rss_end - rss_start) / len(lat_c) / 1024:.1f}"
            " KiB per file; it keeps every record)"
        )
    if replies:
        res.notes.append(
            "the API's command replies in the measured runs, by the copy that answered: "
            + ", ".join(f"{via} {int(n)}" for via, n in sorted(replies.items()))
        )
    if lat_c:
        res.notes.append(cpu_ms_note(cpu, len(lat_c), "Cairn file"))
    if watch is not None and watch.runs:
        res.notes.append(watch.note())


SCENARIOS = [
    Scenario(
        "upload.tus_single",
        "one big file over tus (tus-js-client): Cairn /v1/tus vs @tus/server + file store",
        tus_single,
        needs=frozenset({"tus"}),
    ),
    Scenario(
        "upload.tus_parallel",
        "concurrent tus uploads (tus-js-client): Cairn /v1/tus vs @tus/server + file store",
        tus_parallel,
        needs=frozenset({"tus"}),
    ),
    Scenario(
        "upload.tus_small_files",
        "4 KiB files per second through tus creation-with-upload: Cairn vs @tus/server",
        tus_small_files,
        needs=frozenset({"tus"}),
    ),
]
