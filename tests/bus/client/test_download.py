"""`cairn download` as a subprocess: verified bytes, a resume after Ctrl-C with Range +
If-Range, and a clean restart when the part on disk belongs to other content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.bus.client.planted import plant_part
from tests.system import System, wait_until


async def test_download_verified_to_a_path_and_a_directory(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("down-plain")
    file_id, data = await cli.uploaded(tmp_path / "src.bin", 500_000)
    out = tmp_path / "out.bin"
    done = await cli("download", file_id, "-o", str(out), "--json")
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert out.read_bytes() == data
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["resumed_from"] == 0
    assert not (tmp_path / "out.bin.part").exists()
    into = tmp_path / "dir"
    into.mkdir()
    done = await cli("download", file_id, "-o", str(into))
    assert done.code == 0, done.err
    assert (into / "src.bin").read_bytes() == data
    assert "sha256 verified" in done.err


async def test_download_resumes_after_ctrl_c(system: System, cli_for: Any, tmp_path: Path) -> None:
    cli = cli_for("down-resume")
    file_id, data = await cli.uploaded(tmp_path / "src.bin", 4 * 1024 * 1024)
    out = tmp_path / "back.bin"
    part = tmp_path / "back.bin.part"
    args = ("download", file_id, "-o", str(out), "--json")
    proc = await cli.start(*args, "--limit-rate", "512k")

    async def part_written() -> bool:
        return part.exists() and part.stat().st_size >= 1024 * 1024

    await wait_until(part_written, timeout=60)
    stopped = await cli.interrupt(proc)
    assert stopped.code == 130, stopped.err
    assert not out.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(data)
    assert part.read_bytes() == data[:kept]

    done = await cli(*args)
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["resumed_from"] == kept
    assert out.read_bytes() == data
    assert not part.exists()


async def test_download_restarts_when_the_part_is_of_other_content(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("down-changed")
    file_id, data = await cli.uploaded(tmp_path / "src.bin", 300_000)
    out = tmp_path / "x.bin"
    # A part left by an earlier version of the content: its part.json's other ETag is no
    # resume (the client asks for the whole file, never sends that ETag), and the whole
    # file replaces the stale bytes. (Appended to them, it would end in a mismatch.)
    plant_part(
        out, b"stale" * 1000, file_id=file_id, url=cli.env["CAIRN_URL"], etag='"' + "0" * 64 + '"'
    )
    done = await cli("download", file_id, "-o", str(out), "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["resumed_from"] == 0
    assert out.read_bytes() == data


async def test_download_errors(system: System, cli_for: Any, tmp_path: Path) -> None:
    cli = cli_for("down-err")
    missing = await cli("download", "00000000-0000-4000-8000-000000000000", "--json")
    assert missing.code == 3
    assert json.loads(missing.out)["status"] == 404
    assert "cairn: error: file_not_found: no such file" in missing.err
    other_user_file, _ = await cli_for("down-err-other").uploaded(tmp_path / "src.bin", 10)
    theirs = await cli("download", other_user_file, "-o", str(tmp_path / "t"))
    assert theirs.code == 3, theirs.err
    bad = await cli("download", "not-an-id")
    assert bad.code == 2 and "neither a file id nor BUCKET/KEY" in bad.err
