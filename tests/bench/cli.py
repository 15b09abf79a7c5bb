"""The `cairn` CLI's transfers next to curl against the same server.

cli.upload: `cairn upload FILE` (a subprocess, as a user runs it: interpreter start, the
sha256 pass, create, the chunk PUTs, complete and the client's sha256 check), and the
same with `--tus` (tuspy: one PATCH per chunk with its sha1 Upload-Checksum; full mode
only, so that CI's quick run stays short), vs curl
doing the native API by hand: create, one `curl -T` per chunk (pre-split, untimed),
complete. Both use the same chunk size; the file gets fresh bytes before every run
(otherwise the second upload of the same content is deduplicated and sends nothing).

cli.download: `cairn download ID -o FILE` (writes a .part, fsyncs, verifies the sha256,
renames) vs `curl -o FILE` of the same content URL; both write to disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.baselines import CurlError, curl_download, run_curl
from tests.bench.core import MiB, Result, Row, Scenario, human_bytes, mb_per_s
from tests.bench.runner import Bench

CHUNK = 64 * MiB
TIMEOUT = 900.0
ROOT = Path(__file__).resolve().parents[2]
CURL = "curl (native API by hand)"


async def _cairn(bench: Bench, *args: str, stdin: Path | None = None) -> dict[str, Any]:
    assert bench.cairn is not None
    env = {
        **os.environ,
        "CAIRN_URL": bench.cairn.url,
        "CAIRN_TOKEN": bench.cairn.token,
        "XDG_CACHE_HOME": str(bench.work / "cli-cache"),
        "XDG_CONFIG_HOME": str(bench.work / "cli-config"),
    }
    # `cairn upload -` reads a pipe of `stdin`; every other command an empty stdin.
    with (stdin or Path(os.devnull)).open("rb") as source:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bus.run.cli",
            *args,
            "--json",
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE if stdin else source,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        if stdin is None:
            out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        else:
            out, err = await asyncio.wait_for(_pipe(proc, source), TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"cairn {args[0]} exited {proc.returncode}: {err.decode().strip()}")
    return dict(json.loads(out))


async def _pipe(proc: asyncio.subprocess.Process, source: Any) -> tuple[bytes, bytes]:
    """Feed `source` into the process's stdin through a pipe, as `cat FILE | cairn` would,
    while its output is read."""
    assert proc.stdin is not None

    async def feed() -> None:
        assert proc.stdin is not None
        while block := await asyncio.to_thread(source.read, MiB):
            proc.stdin.write(block)
            await proc.stdin.drain()
        proc.stdin.close()

    feeding = asyncio.create_task(feed())
    out, err = await _read_both(proc)
    await feeding
    return out, err


async def _read_both(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    assert proc.stdout is not None and proc.stderr is not None
    out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
    await proc.wait()
    return out, err


def _split(path: Path, into: Path) -> list[Path]:
    into.mkdir(exist_ok=True)
    parts = []
    with path.open("rb") as f:
        k = 0
        while block := f.read(CHUNK):
            part = into / f"part.{k}"
            part.write_bytes(block)
            parts.append(part)
            k += 1
    return parts


async def _curl_upload(bench: Bench, path: Path, parts: list[Path]) -> None:
    assert bench.cairn is not None
    async with bench.cairn_client() as c:
        r = await c.post(
            "/v1/uploads",
            json={"file_name": path.name, "file_size": path.stat().st_size, "chunk_size": CHUNK},
        )
        r.raise_for_status()
        upload_id = r.json()["id"]
        auth = [f"-H{k}: {v}" for k, v in bench.cairn.headers.items()]
        for k, part in enumerate(parts):
            url = f"{bench.cairn.url}/v1/uploads/{upload_id}/chunks/{k}"
            code = await run_curl(
                ["-sS", "-T", str(part), "-o", "/dev/null", "-w", "%{http_code}", *auth, url],
                TIMEOUT,
            )
            if code.strip() != "201":
                raise CurlError(f"PUT {url}: HTTP {code.strip()}")
        (await c.post(f"/v1/uploads/{upload_id}/complete")).raise_for_status()


async def upload(bench: Bench, res: Result) -> None:
    size = bench.scale.single_bytes
    path = await bench.data("cli-up", size)
    cli: list[float] = []
    tus: list[float] = []
    piped: list[float] = []
    curl: list[float] = []
    for _, warmup in bench.iterations():
        # --tus in full mode only: CI's quick run keeps its one CLI upload per iteration.
        # `cairn upload -`, the file piped in (no size, no sha256 before the bytes: tus
        # with a deferred length), in full mode too.
        full = bench.scale.name != "quick"
        variants: list[tuple[tuple[str, ...], list[float]]] = [((), cli)]
        if full:
            variants += [(("--tus",), tus), (("-",), piped)]
        for extra, into in variants:
            await bench.fresh(path)
            await bench.settle()
            t0 = time.perf_counter()
            if extra == ("-",):
                report = await _cairn(
                    bench,
                    "upload",
                    "-",
                    "--name",
                    path.name,
                    "--chunk-size",
                    str(CHUNK),
                    stdin=path,
                )
            else:
                report = await _cairn(
                    bench, "upload", str(path), "--chunk-size", str(CHUNK), *extra
                )
            seconds = time.perf_counter() - t0
            (f,) = report["files"]
            if f["deduplicated"] or f["bytes_sent"] != size:
                raise AssertionError(f"the CLI sent {f['bytes_sent']} of {size} bytes")
            if not warmup:
                into.append(mb_per_s(size, seconds))
        await bench.fresh(path)
        parts = await asyncio.to_thread(_split, path, bench.work / "cli-parts")
        await bench.settle()
        t0 = time.perf_counter()
        await _curl_upload(bench, path, parts)
        seconds = time.perf_counter() - t0
        for part in parts:
            part.unlink()
        if not warmup:
            curl.append(mb_per_s(size, seconds))
    res.rows.append(Row("upload throughput", "MB/s", cli, CURL, curl))
    if tus:
        res.rows.append(Row("upload throughput, --tus", "MB/s", tus, CURL, curl))
    if piped:
        res.rows.append(
            Row("upload throughput, piped into `cairn upload -`", "MB/s", piped, CURL, curl)
        )
    res.notes.append(
        f"{human_bytes(size)}, {human_bytes(CHUNK)} chunks, one stream; the CLI's time "
        "includes its sha256 pass over the file and the interpreter's start"
    )


async def download(bench: Bench, res: Result) -> None:
    assert bench.cairn is not None
    size = bench.scale.download_bytes
    path = await bench.data("cli-down", size)
    fid = await bench.in_cairn(path)
    out = bench.work / "cli-down.out"
    url = f"{bench.cairn.url}/v1/files/{fid}/content"
    cli, curl = [], []
    for _, warmup in bench.iterations():
        await bench.settle()
        t0 = time.perf_counter()
        result = await _cairn(bench, "download", fid, "-o", str(out))
        seconds = time.perf_counter() - t0
        if result["size"] != size or result["resumed_from"] != 0:
            raise AssertionError(f"unexpected CLI download result {result}")
        out.unlink()
        if not warmup:
            cli.append(mb_per_s(size, seconds))
        await bench.settle()
        t0 = time.perf_counter()
        await curl_download(url, size, TIMEOUT, headers=bench.cairn.headers, output=out)
        seconds = time.perf_counter() - t0
        out.unlink()
        if not warmup:
            curl.append(mb_per_s(size, seconds))
    res.rows.append(Row("download throughput", "MB/s", cli, "curl -o FILE", curl))
    res.notes.append(
        f"{human_bytes(size)}, one stream; the CLI's time includes its fsync, the sha256 "
        "check and the interpreter's start"
    )


SCENARIOS = [
    Scenario(
        "cli.upload",
        "`cairn upload` (native and --tus) of one file vs curl on the native API",
        upload,
    ),
    Scenario("cli.download", "`cairn download` of one file vs curl -o", download),
]
