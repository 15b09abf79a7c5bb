"""A file changed between two runs of `cairn upload` while keeping its size and mtime
(`cp -p`, `rsync -t`, `touch -r` of another version): the resume state cannot see it, so
the server's or the client's sha256 check does. That run fails; the next one must start
afresh instead of failing the same way for ever."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.system import System, wait_until


@pytest.mark.parametrize("tus", [False, True])
async def test_a_file_changed_under_its_resume_state_is_uploaded_afresh_next_time(
    tus: bool, system: System, cli_for: Any, tmp_path: Path
) -> None:
    user = f"changed-{'tus' if tus else 'native'}"
    cli = cli_for(user)
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(4 * 1024 * 1024))
    args = ("upload", str(path), "--chunk-size", "256k", "--json", *(["--tus"] if tus else []))
    # 4 MiB at 512 KiB/s: 8 s, ample time to see a state with bytes sent and interrupt.
    proc = await cli.start(*args, "--limit-rate", "512k")
    states = Path(cli.env["XDG_CACHE_HOME"]) / "cairn" / "uploads"

    async def some_bytes_sent() -> Any:
        async with system.client(user) as c:
            items = (await c.get("/v1/uploads")).json()["items"]
        return items if items and items[0]["bytes_received"] >= 512 * 1024 else None

    await wait_until(some_bytes_sent, timeout=60)
    assert (await cli.interrupt(proc)).code == 130
    assert list(states.glob("*.json"))

    st = path.stat()
    changed = os.urandom(st.st_size)
    path.write_bytes(changed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same size and mtime

    mixed = await cli(*args)  # the old bytes on the server, then the new ones
    assert mixed.code == 6, mixed.err
    assert "mismatch" in mixed.err and "Traceback" not in mixed.err
    # Before: the state (old sha256, the upload and its complete's key) was kept, and
    # every later run replayed the same failure.
    again = await cli(*args)
    assert again.code == 0, again.err
    (f,) = json.loads(again.out)["files"]
    assert f["resumed"] is False
    assert f["sha256"] == hashlib.sha256(changed).hexdigest()
    async with system.client(user) as c:
        assert (await c.get(f"/v1/files/{f['file_id']}/content")).content == changed
    assert not list(states.glob("*.json"))
