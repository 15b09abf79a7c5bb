"""Real download clients against a running Cairn: `curl -C -` resume, `aria2c -x 8 -s 8`
segmented download, `wget -c`, and REDbot's HTTP checks on a file URL.

Each client's result is verified by sha256 against the uploaded bytes. A test is skipped,
saying why, only when its binary is absent (.ci/run installs them with apt-get)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.api.answers import user
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHUNK = 4096
SIZE = 3 * 1024 * 1024 + 77  # many chunks of the upload's 4 KiB... see `big`
DATA = os.urandom(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(
            f"{binary} is not installed (apt-get install {binary.replace('aria2c', 'aria2')})"
        )
    return path


async def run(*argv: str, cwd: Path | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(errors="replace")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def big(shared_system: System) -> AsyncIterator[tuple[System, str, str]]:
    """(system, file URL, Authorization header) of DATA, uploaded in 64 KiB chunks."""
    me = user()
    async with shared_system.client(me) as c:
        r = await c.post(
            "/v1/uploads", json={"file_name": "big.bin", "file_size": SIZE, "chunk_size": 65536}
        )
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        for i in range(0, SIZE, 65536):
            put = await c.put(f"/v1/uploads/{uid}/chunks/{i // 65536}", content=DATA[i : i + 65536])
            assert put.status_code == 201
        done = await c.post(f"/v1/uploads/{uid}/complete")
        assert done.status_code == 200, done.text
        fid = done.json()["file_id"]
    yield (
        shared_system,
        f"{shared_system.url}/v1/files/{fid}/content",
        f"Authorization: Bearer {shared_system.token(me)}",
    )


async def test_curl_resumes_a_cut_download(big: tuple[System, str, str], tmp_path: Path) -> None:
    curl = need("curl")
    _, url, auth = big
    out = tmp_path / "part.bin"
    out.write_bytes(DATA[:1_000_003])  # what an interrupted download left behind
    code, log = await run(curl, "-sS", "-f", "-C", "-", "-H", auth, "-o", str(out), url)
    assert code == 0, log
    assert sha256_of(out) == SHA


async def test_aria2c_segmented_download(big: tuple[System, str, str], tmp_path: Path) -> None:
    aria2c = need("aria2c")
    _, url, auth = big
    code, log = await run(
        aria2c,
        "-x", "8", "-s", "8", "-k", "1M",
        "--header", auth,
        "--allow-overwrite=true", "--auto-file-renaming=false",
        "--console-log-level=warn", "--summary-interval=0",
        "-d", str(tmp_path), "-o", "got.bin",
        url,
    )  # fmt: skip
    assert code == 0, log
    assert sha256_of(tmp_path / "got.bin") == SHA


async def test_wget_continues_a_partial_file(big: tuple[System, str, str], tmp_path: Path) -> None:
    wget = need("wget")
    _, url, auth = big
    out = tmp_path / "w.bin"
    out.write_bytes(DATA[:2_000_000])
    code, log = await run(wget, "-q", "-c", "--header", auth, "-O", str(out), url)
    assert code == 0, log
    assert sha256_of(out) == SHA


async def test_redbot_finds_nothing_wrong(big: tuple[System, str, str]) -> None:
    _, url, auth = big
    code, out = await run(sys.executable, "-m", "tests.api.clients.redbot_check", url, auth)
    assert code == 0, out
    report = json.loads(out)
    assert int(report["status"]) == 200
    bad = [n for n in report["notes"] if n["level"] == "bad"]
    assert bad == [], json.dumps(report["notes"], indent=1)
    assert [n for n in report["notes"] if n["level"] == "warning"] == []
    good = {n["summary"] for n in report["notes"] if n["level"] == "good"}
    # REDbot ran its range and validation checks and they passed.
    assert {
        "A ranged request returned the correct partial content.",
        "If-None-Match conditional requests are supported.",
        "If-Modified-Since conditional requests are supported.",
        "The Content-Length header is correct.",
    } <= good, good
