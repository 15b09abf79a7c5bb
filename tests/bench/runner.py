"""The run: start everything, run the selected scenarios in order, stop everything.

`Bench` is what scenarios get: the scale, Cairn and the baselines (None when unavailable,
with the reason), the sampler, test files on disk and helpers to keep runs honest (fresh
bytes per run, dirty pages flushed before each measurement).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.bench import client as native
from tests.bench.baselines import BareEndpoint, Nginx, TusServer, ensure_nginx, ensure_node_modules
from tests.bench.cairn import Cairn
from tests.bench.core import MiB, Result, Scale, Scenario, machine_info
from tests.bench.memory import Sampler, Window

GEN_BLOCK = 4 * MiB
PERTURB_STRIDE = 1 * MiB  # every chunk of >= 1 MiB gets fresh bytes on every run
# Every run uploads fresh bytes (see Bench.fresh), and Cairn keeps them: a full run stored
# some 60 GiB in its one `cairn up`, and on this VM the disk ran out during s3.transfer,
# whose local S3 server then answered 500s (three full runs errored that way before the
# cause was found). Below this much free space before a scenario, Cairn starts again on an
# empty data dir (the scenario's notes say so). CAIRN_BENCH_LOW_DISK_GIB sets another
# threshold.
LOW_DISK = int(float(os.environ.get("CAIRN_BENCH_LOW_DISK_GIB") or 24) * 1024 * MiB)


class Bench:
    def __init__(self, scale: Scale, work: Path, *, install: bool) -> None:
        self.scale = scale
        self.work = work
        self.install = install
        self.files = work / "data"
        self.files.mkdir(mode=0o755)
        self.cairn: Cairn | None = None
        self.nginx: Nginx | None = None
        self.nginx_note = "not started"
        self.bare: BareEndpoint | None = None
        self.bare_note = "not started"
        # tus: node + tus-js-client (the client for Cairn and the baseline alike), then the
        # @tus/server baseline; either may be missing without that being an error.
        self.node_ready = False
        self.node_note = "not checked"
        self.tus: TusServer | None = None
        self.tus_note = "not started"
        self.sampler: Sampler | None = None
        self.openapi_paths: set[str] = set()
        # bus.command_rtt_quiet's samples (seconds, per variant), for bus.command_rtt.
        self.quiet_rtt: dict[str, list[float]] | None = None
        self._versions: dict[Path, int] = {}
        self._in_cairn: dict[Path, tuple[int, str]] = {}
        self.cairn_env: dict[str, str] = {}  # what the bench's Cairn is started with

    # ---- clients

    def cairn_client(self, conns: int = 64) -> httpx.AsyncClient:
        assert self.cairn is not None
        return native.client(self.cairn.url, self.cairn.headers, conns)

    # ---- iterations

    def iterations(self, runs: int | None = None) -> Iterator[tuple[int, bool]]:
        """(index, warm-up?) for the warm-ups, then the measured runs (`runs`, else the
        scale's)."""
        for i in range(self.scale.warmup + (self.scale.runs if runs is None else runs)):
            yield i, i < self.scale.warmup

    # ---- test files

    def _generate(self, path: Path, size: int) -> None:
        tmp = path.with_suffix(".gen")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            left = size
            while left:
                block = os.urandom(min(GEN_BLOCK, left))
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
                left -= len(block)
        finally:
            os.close(fd)
        tmp.replace(path)

    async def data(self, name: str, size: int) -> Path:
        """A file of `size` random bytes under the work dir, generated once."""
        path = self.files / name
        if not path.exists() or path.stat().st_size != size:
            await asyncio.to_thread(self._generate, path, size)
            self._versions[path] = 0
        return path

    def _perturb(self, path: Path) -> None:
        nonce = secrets.token_bytes(16)
        fd = os.open(path, os.O_WRONLY)
        try:
            for off in range(0, path.stat().st_size, PERTURB_STRIDE):
                os.pwrite(fd, nonce, off)
        finally:
            os.close(fd)

    async def fresh(self, path: Path) -> None:
        """Give the file new bytes at every MiB, so no run uploads a chunk already stored
        (Cairn's store is content-addressed) and every run writes what it claims to."""
        await asyncio.to_thread(self._perturb, path)
        self._versions[path] = self._versions.get(path, 0) + 1

    def forget_cairn_files(self) -> None:
        """Cairn started again on an empty data dir: no file of an earlier scenario is
        there any more."""
        self._in_cairn.clear()

    def remember_in_cairn(self, path: Path, file_id: str) -> None:
        """`file_id` holds the current bytes of `path` (downloads reuse it)."""
        self._in_cairn[path] = (self._versions.get(path, 0), file_id)

    async def in_cairn(self, path: Path) -> str:
        """The id of a Cairn file with exactly the current bytes of `path`, uploading it
        if no scenario did already."""
        known = self._in_cairn.get(path)
        if known and known[0] == self._versions.get(path, 0):
            return known[1]
        async with self.cairn_client() as c:
            t = await native.native_upload(c, path, name=path.name)
        self.remember_in_cairn(path, t.file_id)
        return t.file_id

    # ---- measurement hygiene

    async def settle(self) -> None:
        """Flush dirty pages before a measurement, so one run's writeback (nginx does not
        fsync) is not billed to the next."""
        await asyncio.to_thread(os.sync)

    @contextlib.contextmanager
    def window(self) -> Iterator[Window | None]:
        if self.sampler is None:
            yield None
            return
        with self.sampler.window() as w:
            yield w


def add_cpu(into: dict[str, float], w: Window | None) -> None:
    if w is not None:
        for k, v in w.cpu_seconds.items():
            into[k] = into.get(k, 0.0) + v


def _largest(cpu: dict[str, float]) -> list[tuple[float, str]]:
    """(CPU seconds, process kind), largest first, leaving out the negligible."""
    return sorted(((v, k) for k, v in cpu.items() if v >= 0.05), reverse=True)


def cpu_ms_note(cpu: dict[str, float], count: int, per: str) -> str:
    """CPU milliseconds per item (file, PUT) by process, largest first."""
    items = ", ".join(f"{k} {1000 * v / count:.1f}" for v, k in _largest(cpu))
    return f"CPU ms per {per}: " + items


def cpu_note(cpu: dict[str, float], per: str) -> str:
    return f"CPU seconds {per}: " + ", ".join(f"{k} {v:.1f}" for v, k in _largest(cpu))


# ---------------------------------------------------------------------------- the run


def _log(msg: str) -> None:
    print(msg, flush=True)


async def _start(bench: Bench, needs: set[str]) -> None:
    if "nginx" in needs:
        binary, note = await asyncio.to_thread(ensure_nginx, bench.install)
        if binary is None:
            bench.nginx_note = note
            _log(f"nginx: unavailable ({note})")
        else:
            ng = Nginx(binary, bench.work, bench.files)
            try:
                await asyncio.to_thread(ng.start)
                bench.nginx = ng
                bench.nginx_note = f"nginx {ng.version} ({note})"
                _log(f"nginx: {ng.version} on 127.0.0.1:{ng.port} ({note})")
            except Exception as e:
                ng.stop()
                bench.nginx_note = f"nginx failed to start: {e}"
                _log(bench.nginx_note)
    if "bare" in needs:
        bare = BareEndpoint(bench.work)
        try:
            await asyncio.to_thread(bare.start)
            bench.bare = bare
            bench.bare_note = "uvicorn + bare ASGI app"
            _log(f"bare endpoint: uvicorn on 127.0.0.1:{bare.port}")
        except Exception as e:
            bare.stop()
            bench.bare_note = f"bare endpoint failed to start: {e}"
            _log(bench.bare_note)
    if "tus" in needs:
        ready, note = await asyncio.to_thread(ensure_node_modules, bench.install)
        bench.node_ready, bench.node_note = ready, note
        if not ready:
            bench.tus_note = note
            _log(f"tus: unavailable ({note})")
        else:
            tus = TusServer(bench.work)
            try:
                await asyncio.to_thread(tus.start)
                bench.tus = tus
                bench.tus_note = note
                _log(f"tus: @tus/server {tus.version} on 127.0.0.1:{tus.port}; {note}")
            except Exception as e:
                tus.stop()
                bench.tus_note = f"@tus/server failed to start: {e}"
                _log(bench.tus_note)
    env: dict[str, str] = {}
    if "fetch" in needs:
        # The origin is on loopback, which fetches refuse by default (SSRF): allow just it.
        env["CAIRN_FETCH_ALLOW_NETWORKS"] = "127.0.0.1/32"
        if bench.scale.name == "quick":
            # The quick file (16 MiB) is under two default segments: smaller ones, so the
            # smoke run goes through the segmented path too.
            env["CAIRN_FETCH_SEGMENT_MIN_BYTES"] = "4M"
    bench.cairn_env = env
    await _start_cairn(bench)


async def _start_cairn(bench: Bench) -> None:
    cairn = Cairn(bench.work, env=bench.cairn_env)
    bench.cairn = cairn
    _log(f"cairn: starting `cairn up` in {cairn.data_dir} ...")
    await asyncio.to_thread(cairn.start)
    _log(f"cairn: ready on {cairn.url} in {cairn.start_seconds:.1f} s")
    bench.sampler = Sampler(cairn.supervisor_pid, cairn.data_dir / "pg")
    bench.sampler.start()
    async with bench.cairn_client() as c:
        waited = await native.wait_commands_flow(c)
        with contextlib.suppress(httpx.HTTPError, ValueError):
            bench.openapi_paths = set((await c.get("/schema/openapi.json")).json()["paths"])
    _log(f"cairn: commands flowing after {waited:.1f} s more")


def _stop(bench: Bench) -> None:
    # Blocking on purpose: this also runs while the run is being cancelled (Ctrl-C).
    if bench.sampler is not None:
        bench.sampler.stop()
    for what in (bench.cairn, bench.nginx, bench.bare, bench.tus):
        if what is not None:
            with contextlib.suppress(Exception):
                what.stop()


async def _renew_cairn_if_disk_low(bench: Bench, res: Result) -> None:
    """Start Cairn again on an empty data dir when the disk runs low (see LOW_DISK)."""
    free = shutil.disk_usage(bench.work).free
    res.extra["disk_free_gib_before"] = round(free / (1024 * MiB), 1)
    if free >= LOW_DISK or bench.cairn is None:
        return
    note = (
        f"{free / (1024 * MiB):.1f} GiB free on the disk: Cairn started again on an empty"
        " data dir before this scenario"
    )
    _log(f"cairn: {note}")
    if bench.sampler is not None:
        bench.sampler.stop()
    await asyncio.to_thread(bench.cairn.stop)
    await asyncio.to_thread(shutil.rmtree, bench.cairn.data_dir, True)
    bench.forget_cairn_files()
    await _start_cairn(bench)
    res.notes.append(note)


async def _run_one(bench: Bench, sc: Scenario) -> Result:
    res = Result(scenario=sc.name, status="ok", description=sc.description)
    if sc.run is not None:
        await _renew_cairn_if_disk_low(bench, res)
    if sc.run is None:
        res.status = "pending"
        res.description = sc.pending or sc.description
        probe = sc.probe
        if probe and any(p == probe or p.startswith(probe + "/") for p in bench.openapi_paths):
            res.notes.append(
                f"Cairn's OpenAPI now has {probe}: the feature looks built, write this scenario"
            )
        return res
    # The previous scenario's dirty pages (its baselines' too: nginx, unzip and the rest do
    # not fsync) are flushed now, not by the kernel's 30 s expiry in the middle of this one,
    # where they slowed every fsync of Cairn's (a command's append among them).
    await bench.settle()
    t0 = time.monotonic()
    res.extra["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    with bench.window() as w:
        try:
            async with asyncio.timeout(sc.timeout(bench.scale.scenario_timeout)):
                await sc.run(bench, res)
        except TimeoutError:
            res.status = "error"
            res.error = (
                f"timed out after {sc.timeout(bench.scale.scenario_timeout):.0f} s\n"
                + traceback.format_exc()
            )
        except Exception:
            res.status = "error"
            res.error = traceback.format_exc()
    res.seconds = time.monotonic() - t0
    if w is not None:
        res.peak_rss = dict(w.peak)
        res.cpu_seconds = {k: round(v, 3) for k, v in w.cpu_seconds.items()}
    return res


def _summary_line(r: Result) -> str:
    if r.status == "pending":
        return f"  {r.scenario:<28} PENDING  {r.description}"
    if r.status == "error":
        last = (r.error or "").strip().splitlines()[-1:] or ["?"]
        return f"  {r.scenario:<28} ERROR    ({r.seconds:.1f} s) {last[0]}"
    if r.status == "skipped":
        return f"  {r.scenario:<28} SKIPPED  {'; '.join(r.notes)}"
    first = r.rows[0] if r.rows else None
    fig = ""
    if first is not None and first.cairn_value is not None:
        fig = f"{first.metric}: {first.cairn_value:.1f} {first.unit}"
        if first.ratio is not None:
            fig += f" ({first.ratio:.2f}x {first.baseline})"
    return f"  {r.scenario:<28} ok       ({r.seconds:.1f} s) {fig}"


async def run(
    scenarios: Sequence[Scenario],
    scale: Scale,
    *,
    install: bool,
    keep: bool,
    tmp_root: str | None,
    command: str,
) -> tuple[list[Result], dict[str, Any]]:
    started = datetime.now(UTC)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="cairn-bench-", dir=tmp_root))
    work.chmod(0o755)  # nginx workers and postgres run as other users
    meta: dict[str, Any] = {
        "mode": scale.name,
        "command": command,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runs": scale.runs,
        "small_runs": scale.small_runs,
        "warmup": scale.warmup,
        "scale": {k: v for k, v in vars(scale).items()},
        "machine": machine_info(work),
        "work_dir": str(work),
    }
    _log(
        f"cairn bench, {scale.name} mode: {len(scenarios)} scenario(s), "
        f"{scale.warmup} warm-up + {scale.runs} runs each ({scale.small_runs} of the 4 KiB "
        f"tus files and object PUTs); work dir {work}"
    )
    bench = Bench(scale, work, install=install)
    results: list[Result] = []
    needs = {n for sc in scenarios if sc.run is not None for n in sc.needs}
    try:
        start_error: str | None = None
        if any(sc.run is not None for sc in scenarios):
            try:
                await _start(bench, needs)
            except Exception:
                start_error = "start-up failed:\n" + traceback.format_exc()
                _log(start_error)
        for sc in scenarios:
            if start_error is not None and sc.run is not None:
                res = Result(sc.name, "error", sc.description, error=start_error)
            else:
                _log(f"{sc.name} ...")
                res = await _run_one(bench, sc)
            results.append(res)
            _log(_summary_line(res))
            if res.status == "error":
                _log("    " + (res.error or "").strip().replace("\n", "\n    "))
    finally:
        _stop(bench)
        meta["wall_seconds"] = time.monotonic() - t0
        meta["cairn_start_seconds"] = bench.cairn.start_seconds if bench.cairn else None
        meta["nginx"] = bench.nginx_note
        meta["bare"] = bench.bare_note
        meta["tus"] = bench.tus_note
        meta["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        if keep:
            _log(f"kept the work dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return results, meta
