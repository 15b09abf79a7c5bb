"""tasks.archive: Cairn's compress and extract tasks next to the `zip`, `tar` and `unzip`
CLIs on the very same bytes, in the same run.

N files of random bytes (full: 1,000 files of 1 MiB, as issue 11 asks; quick: 40 of
256 KiB) are written to a directory and uploaded to Cairn once (untimed). Each run then:
- compress, zip, level 0: a `compress` task over the N files (POST to COMPLETED, polled
  every 20 ms) vs `zip -r -0 -q` of the directory;
- compress, tar.gz: the same task with `format: tar.gz` (gzip level 6) vs `tar czf`;
- extract: an `extract` task of Cairn's zip (each member becomes a file) vs `unzip -q` of
  that same archive, downloaded once, into a fresh directory; and the same of Cairn's
  tar.gz vs `tar xzf`.
Throughput is the N files' bytes over the time. Cairn's times include its pick-up
(an idle worker is woken by the task's events, bus/store/pickup.py) and its durability
(every chunk and event is fsynced; the CLIs' output sits in the page cache). The task
worker's peak RSS during the tasks is noted: streamed, it should not grow with the bytes.

tasks.prefix: N small objects (full: 2,000; quick: 200) PUT under one prefix (untimed),
then a `copy` task by bucket + prefix into another bucket and a `delete` task of the
originals, each from POST to COMPLETED, next to what a client does without tasks: the same
N files copied and deleted one request each against nginx's WebDAV (COPY, DELETE; 16 at a
time), in the same run. Without nginx the disk's hard links and unlinks stand in (their
ratio rounds to 0.00x). Cairn's copy and delete are one command and one fsynced event per
object; nginx's are a file copy or unlink each, never fsynced.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.bench import client as native
from tests.bench.core import (
    GiB,
    KiB,
    MiB,
    Result,
    Row,
    Scenario,
    human_bytes,
    mb_per_s,
    summarize,
)
from tests.bench.runner import Bench, add_cpu, cpu_note

TIMEOUT = 900.0  # one task, or one CLI run
POLL = 0.02
# The whole scenario: 1 warm-up + 3 runs of 4 tasks and 4 CLI runs over 1 GiB each. Alone on
# a slow 2-vCPU machine it took 873 s (the tar.gz runs, gzip-bound on both sides, are half
# of it), so the runner's 900 s cut it short in the full run of 2026-12-03.
TIMEOUT_FACTOR = 3.0


def _shape(bench: Bench) -> tuple[int, int]:
    """(files, bytes each)."""
    return (40, 256 * KiB) if bench.scale.name == "quick" else (1000, 1 * MiB)


def _write_files(into: Path, n: int, size: int) -> list[Path]:
    into.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        p = into / f"f{i:05d}.bin"
        if not p.exists() or p.stat().st_size != size:
            p.write_bytes(os.urandom(size))
        out.append(p)
    return out


async def _run_cli(*args: str, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            _, err = await proc.communicate()
    except BaseException:
        proc.kill()  # nor may a CLI outlive the scenario that timed out
        await proc.wait()
        raise
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {proc.returncode}: {err.decode()[-300:]}")
    return took


async def _task(c: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    r = await c.post("/v1/tasks", json=body)
    if r.status_code != 202:
        raise RuntimeError(f"POST /v1/tasks: {r.status_code} {r.text[:300]}")
    tid = r.json()["id"]
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                # Without the 1,000 items' results, as a poller asks (40 KB against 121 KB).
                r = await c.get(f"/v1/tasks/{tid}", params={"results": "false"})
                t: dict[str, Any] = r.json()
                if t["status"] == "COMPLETED":
                    return time.perf_counter() - t0, t
                if t["status"] in ("FAILED", "CANCELLED"):
                    raise RuntimeError(f"task {tid} {t['status']}: {t['error']}")
                await asyncio.sleep(POLL)  # polling the task, as a client does
    except (TimeoutError, asyncio.CancelledError):
        # A task left running would go on loading the machine through the scenarios after
        # this one (the full run of 2026-12-03 measured the command round trip beside it).
        await asyncio.shield(_cancel(c, tid))
        raise


async def _cancel(c: httpx.AsyncClient, tid: str) -> None:
    try:
        await c.post(f"/v1/tasks/{tid}/cancel", timeout=10)
    except httpx.HTTPError as e:
        print(f"  could not cancel task {tid}: {e!r}", flush=True)


async def _upload_all(bench: Bench, files: list[Path]) -> list[str]:
    sem = asyncio.Semaphore(8)
    async with bench.cairn_client() as c:

        async def one(p: Path) -> str:
            async with sem:
                return (await native.native_upload(c, p, name=p.name)).file_id

        return list(await asyncio.gather(*(one(p) for p in files)))


@dataclass
class _Tally:
    """What the timed task runs add up to: CPU, bytes moved, the worker's peak RSS."""

    total: int  # bytes one task moves
    cpu: dict[str, float] = field(default_factory=dict)
    moved: int = 0
    peak: int = 0

    def task_ran(self, into: list[float], took: float, w: Any) -> None:
        into.append(mb_per_s(self.total, took))
        add_cpu(self.cpu, w)
        self.moved += self.total
        if w is not None:
            self.peak = max(self.peak, w.peak.get("tasks", 0))


async def archive(bench: Bench, res: Result) -> None:
    assert bench.cairn is not None
    n, size = _shape(bench)
    total = n * size
    src = bench.work / "tasks-src"
    files = await asyncio.to_thread(_write_files, src, n, size)
    ids = await _upload_all(bench, files)
    have_zip, have_unzip = shutil.which("zip"), shutil.which("unzip")
    zip_c: list[float] = []
    zip_b: list[float] = []
    tgz_c: list[float] = []
    tgz_b: list[float] = []
    ext_c: list[float] = []
    ext_b: list[float] = []
    xtg_c: list[float] = []
    xtg_b: list[float] = []
    tally = _Tally(total)
    out = bench.work / "tasks-out"
    async with httpx.AsyncClient(
        base_url=bench.cairn.url, headers=bench.cairn.headers, timeout=120
    ) as c:
        for i, warmup in bench.iterations():
            for fmt, into, base, cli in (
                ("zip", zip_c, zip_b, ["zip", "-r", "-0", "-q", str(out / "cli.zip"), "."]),
                ("tar.gz", tgz_c, tgz_b, ["tar", "czf", str(out / "cli.tgz"), "."]),
            ):
                body = {
                    "type": "compress",
                    "params": {"files": ids, "format": fmt, "output": {"file_name": f"r{i}.{fmt}"}},
                }
                if fmt == "zip":
                    body["params"]["level"] = 0
                await bench.settle()
                with bench.window() as w:
                    took, t = await _task(c, body)
                if not warmup:
                    tally.task_ran(into, took, w)
                if fmt == "zip":
                    archive_id = t["result_file_ids"][0]
                else:
                    tgz_id = t["result_file_ids"][0]
                if cli[0] == "zip" and not have_zip:
                    continue
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                await bench.settle()
                took = await _run_cli(*cli, cwd=src)
                if not warmup:
                    base.append(mb_per_s(total, took))
            # extract Cairn's zip and tar.gz, in Cairn and with unzip / tar xzf
            extracts: list[tuple[str, str, list[float], list[float], list[str] | None]] = [
                ("x", archive_id, ext_c, ext_b, ["unzip", "-q"] if have_unzip else None),
                ("t", tgz_id, xtg_c, xtg_b, ["tar", "xzf"]),
            ]
            for prefix, archive_fid, into, base, tool in extracts:
                await bench.settle()
                with bench.window() as w:
                    took, t = await _task(
                        c,
                        {
                            "type": "extract",
                            "params": {"file": archive_fid, "output": {"prefix": f"{prefix}{i}-"}},
                        },
                    )
                if t["progress"]["items_done"] != n:
                    raise AssertionError(f"extract made {t['progress']['items_done']} of {n} files")
                if not warmup:
                    tally.task_ran(into, took, w)
                if tool is None:
                    continue
                local = bench.work / f"tasks-cairn.{'zip' if tool[0] == 'unzip' else 'tgz'}"
                async with c.stream("GET", f"/v1/files/{archive_fid}/content") as r:
                    r.raise_for_status()
                    with local.open("wb") as f:
                        async for piece in r.aiter_bytes():
                            f.write(piece)
                if warmup and tool[0] == "unzip":
                    with zipfile.ZipFile(local) as z:
                        if len(z.namelist()) != n or z.testzip() is not None:
                            raise AssertionError("Cairn's zip does not read back whole")
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                await bench.settle()
                if tool[0] == "unzip":
                    took = await _run_cli(*tool, str(local), "-d", str(out))
                else:
                    took = await _run_cli(*tool, str(local), "-C", str(out))
                if not warmup:
                    base.append(mb_per_s(total, took))
    missing = "not installed (apt-get install zip unzip)"
    res.rows += [
        Row(
            "compress, zip stored (level 0)",
            "MB/s",
            zip_c,
            "zip -r -0",
            zip_b or None,
            None if have_zip else f"zip {missing}",
        ),
        Row("compress, tar.gz (gzip 6)", "MB/s", tgz_c, "tar czf", tgz_b or None),
        Row(
            "extract of that zip",
            "MB/s",
            ext_c,
            "unzip",
            ext_b or None,
            None if have_unzip else f"unzip {missing}",
        ),
        Row("extract of that tar.gz", "MB/s", xtg_c, "tar xzf", xtg_b or None),
    ]
    res.notes.append(
        f"{n} files of {human_bytes(size)} ({human_bytes(total)}); Cairn from POST /v1/tasks "
        "to COMPLETED (includes the worker's pick-up, woken by the task's events, and "
        "fsynced chunks and events); the CLIs write to the page cache"
    )
    if tally.moved:
        res.notes.append(
            cpu_note(
                {k: v * GiB / tally.moved for k, v in tally.cpu.items()}, "per GiB through a task"
            )
        )
    if tally.peak:
        res.notes.append(f"task worker peak RSS during the tasks: {tally.peak / 2**20:.0f} MiB")


def _prefix_shape(bench: Bench) -> int:
    """Objects per run of tasks.prefix."""
    return 200 if bench.scale.name == "quick" else 2000


async def _put_objects(c: httpx.AsyncClient, bucket: str, prefix: str, n: int) -> None:
    """`n` objects of 16 bytes under `prefix` (untimed setup), listed once the read model
    has them all (a task by bucket + prefix is resolved from it when it is created)."""
    sem = asyncio.Semaphore(16)

    async def put(i: int) -> None:
        async with sem:
            r = await c.put(f"/v1/buckets/{bucket}/objects/{prefix}{i:06d}", content=b"x" * 16)
            r.raise_for_status()

    await asyncio.gather(*(put(i) for i in range(n)))
    async with asyncio.timeout(TIMEOUT):
        while True:
            r = await c.get("/v1/files", params={"bucket": bucket, "prefix": prefix, "limit": 1})
            if int(r.headers.get("X-Total-Count", 0)) >= n:
                return
            await asyncio.sleep(POLL)  # waiting for the projector, as a client does


def _disk_files(into: Path, n: int) -> list[Path]:
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    out = []
    for i in range(n):
        p = into / f"{i:06d}"
        p.write_bytes(b"x" * 16)
        out.append(p)
    os.sync()
    return out


def _link_all(files: list[Path], into: Path) -> float:
    """Hard links of `files` in a new directory, and the directory fsynced: a copy that
    moves no bytes, as Cairn's (the manifest shared)."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    t0 = time.perf_counter()
    for f in files:
        os.link(f, into / f.name)
    fd = os.open(into, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def _unlink_all(files: list[Path]) -> float:
    """`files` unlinked and their directory fsynced."""
    t0 = time.perf_counter()
    for f in files:
        f.unlink()
    fd = os.open(files[0].parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


async def _nginx_copy_delete(nginx: Any, n: int, i: int) -> tuple[float, float]:
    """N files of 16 bytes PUT to nginx's WebDAV (untimed), then COPYed to another
    directory and the originals DELETEd, one request each, 16 at a time: what a client
    does without tasks. The objects/s of either."""
    base = nginx.put_url(f"prefix-{i}-{os.getpid()}")
    sem = asyncio.Semaphore(16)
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=120, limits=limits) as c:

        async def each(make: Any) -> float:
            async def one(k: int) -> None:
                async with sem:
                    r = await make(k)
                    if r.status_code >= 300:
                        raise RuntimeError(f"nginx: {r.status_code} {r.text[:200]}")

            t0 = time.perf_counter()
            await asyncio.gather(*(one(k) for k in range(n)))
            return n / (time.perf_counter() - t0)

        await each(lambda k: c.put(f"{base}/src/{k:06d}", content=b"x" * 16))
        # COPY does not make the destination's directory (create_full_put_path is PUT's).
        (await c.put(f"{base}/dst/.keep", content=b"")).raise_for_status()
        copy = await each(
            lambda k: c.request(
                "COPY", f"{base}/src/{k:06d}", headers={"Destination": f"{base}/dst/{k:06d}"}
            )
        )
        delete = await each(lambda k: c.delete(f"{base}/src/{k:06d}"))
        for k in range(n):  # the copies too, so the runs do not pile up files (untimed)
            await c.delete(f"{base}/dst/{k:06d}")
    return copy, delete


async def prefix(bench: Bench, res: Result) -> None:
    """Copy, then delete, N small objects by bucket + prefix, as tasks, next to a client
    copying and deleting N files one request each against nginx (the disk's link and
    unlink without nginx)."""
    assert bench.cairn is not None
    n = _prefix_shape(bench)
    copy_c: list[float] = []
    copy_b: list[float] = []
    del_c: list[float] = []
    del_b: list[float] = []
    cpu: dict[str, float] = {}
    async with httpx.AsyncClient(
        base_url=bench.cairn.url, headers=bench.cairn.headers, timeout=120
    ) as c:
        for i, warmup in bench.iterations():
            src, dst = f"bench-p{i}-{os.getpid()}", f"bench-q{i}-{os.getpid()}"
            for name in (src, dst):
                r = await c.post("/v1/buckets", json={"name": name})
                if r.status_code != 201:
                    raise RuntimeError(f"POST /v1/buckets: {r.status_code} {r.text[:300]}")
            await _put_objects(c, src, "p-", n)
            await bench.settle()
            with bench.window() as w:
                took, t = await _task(
                    c,
                    {
                        "type": "copy",
                        "params": {"bucket": src, "prefix": "p-", "to": {"bucket": dst}},
                    },
                )
            if t["progress"]["items_done"] != n:
                raise AssertionError(f"copy did {t['progress']['items_done']} of {n}")
            if not warmup:
                copy_c.append(n / took)
                add_cpu(cpu, w)
            await bench.settle()
            with bench.window() as w:
                took, t = await _task(
                    c, {"type": "delete", "params": {"bucket": src, "prefix": "p-"}}
                )
            if t["progress"]["items_done"] != n:
                raise AssertionError(f"delete did {t['progress']['items_done']} of {n}")
            if not warmup:
                del_c.append(n / took)
                add_cpu(cpu, w)
            await bench.settle()
            if bench.nginx:
                copy_rate, del_rate = await _nginx_copy_delete(bench.nginx, n, i)
            else:
                files = await asyncio.to_thread(_disk_files, bench.work / "prefix-src", n)
                copy_rate = n / await asyncio.to_thread(_link_all, files, bench.work / "prefix-dst")
                await bench.settle()
                del_rate = n / await asyncio.to_thread(_unlink_all, files)
            if not warmup:
                copy_b.append(copy_rate)
                del_b.append(del_rate)
    if bench.nginx:
        copy_base, del_base = "nginx WebDAV COPY, 16 clients", "nginx WebDAV DELETE, 16 clients"
    else:
        copy_base, del_base = "disk: link + fsync dir", "disk: unlink + fsync dir"
        res.notes.append(f"no nginx, so the disk stands in: {bench.nginx_note}")
    res.rows += [
        Row("copy task by prefix", "objects/s", copy_c, copy_base, copy_b),
        Row("delete task by prefix", "objects/s", del_c, del_base, del_b),
    ]
    res.notes.append(
        f"{n} objects of 16 B under one prefix; Cairn from POST /v1/tasks to COMPLETED (one "
        "command and one fsynced event per object); the baseline copies or deletes as many "
        "files one request each (nginx does not fsync)"
    )
    for what, mine, other in (("copy", copy_c, copy_b), ("delete", del_c, del_b)):
        c_rate, o_rate = summarize(mine), summarize(other)
        if c_rate and o_rate:
            res.notes.append(
                f"{what}: {1000 / c_rate:.2f} ms per object against the baseline's "
                f"{1000 / o_rate:.3f} ms"
            )
    if cpu:
        res.notes.append(cpu_note(cpu, "over the measured tasks"))


SCENARIOS = [
    Scenario(
        "tasks.prefix",
        "copy and delete tasks of many small objects by bucket + prefix vs nginx WebDAV COPY / DELETE",
        prefix,
        needs=frozenset({"nginx"}),
        timeout_factor=TIMEOUT_FACTOR,
    ),
    Scenario(
        "tasks.archive",
        "compress (zip, tar.gz) and extract tasks vs zip -r -0, tar czf, unzip and tar xzf",
        archive,
        timeout_factor=TIMEOUT_FACTOR,
    ),
]
