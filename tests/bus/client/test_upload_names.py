"""`cairn upload` of a file whose name is not UTF-8 (an archive's Latin-1 names): the
command stops with a one-line error naming the file (its odd byte shown as an escape),
before anything is sent. It said `bad_response: an answer is not shaped as Cairn's`,
blaming the server for a request it could not encode. A `--meta` value that is not UTF-8
is a usage error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


def latin1_file(folder: Path) -> Path:
    """`caf\\xe9.txt`: a name Python reads as `caf\\udce9.txt`."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.txt")
    with open(raw, "wb") as f:
        f.write(b"hello")
    return Path(os.fsdecode(raw))


async def files_of(system: System, user: str) -> int:
    async with system.client(user) as c:
        return len((await c.get("/v1/files")).json()["items"])


@pytest.mark.parametrize("how", ["file", "directory", "into-a-bucket"])
async def test_a_name_that_is_not_utf8_stops_the_command_naming_it(
    system: System, cli_for: Any, tmp_path: Path, how: str
) -> None:
    user = f"latin1-{how}"
    cli = cli_for(user)
    tree = tmp_path / "tree"
    bad = latin1_file(tree)
    (tree / "fine.txt").write_bytes(b"fine")
    if how == "file":
        done = await cli("upload", str(bad))
    elif how == "directory":
        done = await cli("upload", str(tree))
    else:
        assert (await cli("buckets", "create", f"b-{how}")).code == 0
        done = await cli("upload", str(bad), "--bucket", f"b-{how}")
    assert done.code == 1, done.err
    assert "invalid_file_name" in done.err and "caf\\udce9.txt" in done.err, done.err
    assert "bad_response" not in done.err
    assert len(done.err.splitlines()) == 1, done.err
    assert await files_of(system, user) == 0  # nothing sent, not even fine.txt


async def test_a_meta_value_that_is_not_utf8_is_a_usage_error(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    fine = tmp_path / "fine.txt"
    fine.write_bytes(b"fine")
    done = await cli_for("latin1-meta")("upload", str(fine), "--meta", "note=caf\udce9")
    assert done.code == 2, done.err
    assert "not UTF-8" in done.err and "bad_response" not in done.err
