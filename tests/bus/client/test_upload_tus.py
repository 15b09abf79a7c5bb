"""`cairn upload --tus` as a subprocess against a running Cairn: the file arrives through
the tus protocol, sha256-verified; Ctrl-C and the same command again resume at the
server's offset, sending only the rest."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tests.system import System, wait_until


async def _content(system: System, user: str, file_id: str) -> bytes:
    async with system.client(user) as c:
        r = await c.get(f"/v1/files/{file_id}/content")
        assert r.status_code == 200
        return r.content


async def test_tus_upload_into_a_bucket(system: System, cli_for: Any, tmp_path: Path) -> None:
    user = "tus-plain"
    cli = cli_for(user)
    assert (await cli("buckets", "create", "tus-things")).code == 0
    data = os.urandom(700_000)
    (tmp_path / "t.bin").write_bytes(data)
    done = await cli(
        "upload",
        str(tmp_path / "t.bin"),
        "--tus",
        "--bucket",
        "tus-things",
        "--chunk-size",
        "256k",
        "--json",
    )
    assert done.code == 0, done.err
    (f,) = json.loads(done.out)["files"]
    assert f["protocol"] == "tus" and f["resumed"] is False
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert f["bytes_sent"] == len(data)
    assert await _content(system, user, f["file_id"]) == data
    async with system.client(user) as c:
        meta = (await c.get(f"/v1/files/{f['file_id']}")).json()
        # It went through tus: the native API shows the same upload, in tus's stream mode.
        up = (await c.get(f"/v1/uploads/{f['upload_id']}")).json()
    assert (meta["name"], meta["bucket"]) == ("t.bin", "tus-things")
    assert up["mode"] == "stream" and up["file_id"] == f["file_id"]

    # The server's refusal is one line with its code, and an exit code.
    refused = await cli("upload", str(tmp_path / "t.bin"), "--tus", "--bucket", "nope-none")
    assert refused.code == 3, refused.err
    assert "cairn: error:" in refused.err and "bucket_not_found: no such bucket" in refused.err


async def test_tus_upload_resumes_after_ctrl_c(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    user = "tus-resume"
    cli = cli_for(user)
    data = os.urandom(8 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    args = ("upload", str(tmp_path / "big.bin"), "--tus", "--chunk-size", "256k", "--json")
    # 8 MiB at 512 KiB/s: 16 s, ample time to see bytes on the server and interrupt.
    proc = await cli.start(*args, "--limit-rate", "512k")
    states = Path(cli.env["XDG_CACHE_HOME"]) / "cairn" / "uploads"

    async def some_bytes_stored() -> Any:
        for state in states.glob("*.json"):
            url = json.loads(state.read_text()).get("tus_url")
            if url:
                async with system.client(user) as c:
                    head = await c.head(url, headers={"Tus-Resumable": "1.0.0"})
                if int(head.headers.get("upload-offset", 0)) >= 512 * 1024:
                    return url
        return None

    url = await wait_until(some_bytes_stored, timeout=60)
    stopped = await cli.interrupt(proc)
    assert stopped.code == 130, stopped.err
    assert "resume" in stopped.err and "Traceback" not in stopped.err
    async with system.client(user) as c:
        head = await c.head(url, headers={"Tus-Resumable": "1.0.0"})
    had = int(head.headers["upload-offset"])
    assert 0 < had < len(data), "interrupted midway"

    done = await cli(*args)
    assert done.code == 0, done.err
    (f,) = json.loads(done.out)["files"]
    assert f["resumed"] is True
    assert url.endswith(f["upload_id"])  # the same tus upload, not a new one
    assert f["bytes_sent"] == len(data) - had  # only what the server did not have
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert await _content(system, user, f["file_id"]) == data
    assert not list(states.glob("*.json"))  # done: the resume state is gone
