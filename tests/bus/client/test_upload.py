"""`cairn upload` as a subprocess against a running Cairn: directories, sha256, and a
resume after Ctrl-C that sends only what the server does not have."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.system import System, wait_until


def _write(path: Path, size: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return data


async def _content(system: System, user: str, file_id: str) -> bytes:
    async with system.client(user) as c:
        r = await c.get(f"/v1/files/{file_id}/content")
        assert r.status_code == 200
        return r.content


async def test_uploads_a_directory_recursively_verified(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("up-dir")
    tree = tmp_path / "tree"
    files = {
        "a.bin": _write(tree / "a.bin", 300_000),
        "sub/b.txt": _write(tree / "sub" / "b.txt", 1),
        "sub/deeper/c.bin": _write(tree / "sub" / "deeper" / "c.bin", 70_000),
    }
    done = await cli("upload", str(tree), "--chunk-size", "64k", "--parallel", "3", "--json")
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert report["failed"] == []
    by_key = {f["key"]: f for f in report["files"]}
    assert set(by_key) == set(files)
    for key, data in files.items():
        f = by_key[key]
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
        assert await _content(system, "up-dir", f["file_id"]) == data
        async with system.client("up-dir") as c:
            meta = (await c.get(f"/v1/files/{f['file_id']}")).json()
        assert meta["metadata"] == {"key": key}
        assert meta["name"] == key.rsplit("/", 1)[-1]
    # The same file again is recognised by its sha256: no bytes sent. Deduplication looks
    # in the files read model (api/idempotency.py), so it waits until a.bin is listed there.
    first = by_key["a.bin"]["file_id"]

    async def listed() -> bool:
        async with system.client("up-dir") as c:
            page = (await c.get("/v1/files", params={"limit": 100})).json()
        return first in {f["id"] for f in page["items"]}

    await wait_until(listed)
    again = await cli("upload", str(tree / "a.bin"), "--json")
    assert again.code == 0, again.err
    (only,) = json.loads(again.out)["files"]
    assert only["deduplicated"] is True and only["bytes_sent"] == 0
    assert only["file_id"] == first


async def test_upload_resumes_after_ctrl_c(system: System, cli_for: Any, tmp_path: Path) -> None:
    user = "up-resume"
    cli = cli_for(user)
    # 8 MiB at 512 KiB/s: 16 s, ample time to see chunks stored (read model) and interrupt.
    data = _write(tmp_path / "big.bin", 8 * 1024 * 1024)
    args = ("upload", str(tmp_path / "big.bin"), "--chunk-size", "256k", "--json")
    proc = await cli.start(*args, "--limit-rate", "512k")

    async def some_chunks_stored() -> Any:
        async with system.client(user) as c:
            items = (await c.get("/v1/uploads")).json()["items"]
        return items if items and items[0]["chunks_received"] >= 2 else None

    (upload,) = await wait_until(some_chunks_stored, timeout=60)
    stopped = await cli.interrupt(proc)
    assert stopped.code == 130, stopped.err
    assert "resume" in stopped.err and "Traceback" not in stopped.err
    async with system.client(user) as c:
        state = (await c.get(f"/v1/uploads/{upload['id']}")).json()
    assert state["status"] in ("INITIATED", "IN_PROGRESS")
    assert state["missing_chunks"], "interrupted before the end"
    had = state["bytes_received"]

    done = await cli(*args)
    assert done.code == 0, done.err
    (f,) = json.loads(done.out)["files"]
    assert f["resumed"] is True
    assert f["upload_id"] == upload["id"]
    # Only what the server did not have when the second run asked, which may be more than
    # `had`: a chunk whose body was all sent before Ctrl-C is stored after the client has
    # gone, and the read model may lag behind the store.
    held = len(data) - f["bytes_sent"]
    assert had <= held < len(data) and held % (256 * 1024) == 0, (had, held)
    stored = await system.pool.fetch(
        "SELECT data->>'index' AS i FROM eventstore.events"
        " WHERE stream_id = $1 AND event_type = 'UploadChunkStored'",
        f"upload-{upload['id']}",
    )
    assert sorted(int(r["i"]) for r in stored) == list(range(32))  # each chunk stored once
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert await _content(system, user, f["file_id"]) == data
    # Done: the resume state is gone, so a third run starts (and dedups) afresh.
    assert not list((Path(cli.env["XDG_CACHE_HOME"]) / "cairn" / "uploads").glob("*.json"))


async def test_upload_errors_are_one_line_with_exit_codes(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("up-err")
    _write(tmp_path / "f.bin", 10)
    missing = await cli("upload", str(tmp_path / "nope"))
    assert missing.code == 1
    assert "not_a_file" in missing.err
    no_bucket = await cli("upload", str(tmp_path / "f.bin"), "--bucket", "no-such-bucket")
    assert no_bucket.code == 3 and "bucket_not_found" in no_bucket.err
    assert no_bucket.out == ""  # nothing uploaded: no empty table
    bad_token = await cli("upload", str(tmp_path / "f.bin"), CAIRN_TOKEN="not-a-jwt")
    assert bad_token.code == 4, bad_token.err
    assert "cairn: error:" in bad_token.err
    gone = await cli("upload", str(tmp_path / "f.bin"), CAIRN_URL="http://127.0.0.1:9")
    assert gone.code == 7, gone.err
    assert "unreachable" in gone.err


async def test_progress_bars_on_a_terminal(system: System, cli_for: Any, tmp_path: Path) -> None:
    """On a terminal (a pty from util-linux `script`) the bars render and the transfer
    completes; elsewhere (every other test) they are off."""
    if shutil.which("script") is None:
        pytest.skip("util-linux `script` is not installed")
    cli = cli_for("up-tty")
    data = _write(tmp_path / "tty.bin", 600_000)
    out = tmp_path / "tty.back"
    for args in (
        ["upload", str(tmp_path / "tty.bin"), "--chunk-size", "64k"],
        ["download", "{id}", "-o", str(out)],
    ):
        if args[0] == "download":
            async with system.client("up-tty") as c:
                # The files list is a read model: wait for the projector to show the file.

                async def listed() -> list[Any]:
                    items: list[Any] = (await c.get("/v1/files")).json()["items"]
                    return items

                args[1] = (await wait_until(listed, timeout=60))[0]["id"]
        command = shlex.join([sys.executable, "-m", "bus.run.cli", *args])
        proc = await asyncio.create_subprocess_exec(
            "script",
            "-qec",
            command,
            "/dev/null",
            cwd=Path(__file__).resolve().parents[3],
            env={**cli.env, "TERM": "xterm-256color"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        raw, _ = await asyncio.wait_for(proc.communicate(), 120)
        text = raw.decode(errors="replace")
        assert proc.returncode == 0, text
        assert "Traceback" not in text
        assert "━" in text  # a Rich bar was drawn
    assert out.read_bytes() == data


async def test_an_upload_refused_for_a_missing_bucket_goes_through_once_it_exists(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    # The refused create's answer is stored under its Idempotency-Key and would be replayed
    # for a day; the client keeps no key of a refusal, so the same command works once the
    # bucket is there (the README's "the same command resumes it").
    user = "obj-later"
    cli = cli_for(user)
    data = os.urandom(3_000)
    (tmp_path / "late.bin").write_bytes(data)
    refused = await cli("upload", str(tmp_path / "late.bin"), "--bucket", "later")
    assert refused.code == 3 and "bucket_not_found" in refused.err
    assert (await cli("buckets", "create", "later")).code == 0
    done = await cli("upload", str(tmp_path / "late.bin"), "--bucket", "later", "--json")
    assert done.code == 0, done.err
    async with system.client(user) as c:
        r = await c.get("/v1/buckets/later/objects/late.bin")
    assert r.status_code == 200 and r.content == data
