"""Where `cairn download` writes: `-o -` (stdout), a device or a FIFO written in place, a
path ending in `/` as a directory, and a destination that cannot take the file refused
before any byte is fetched (never a whole download left as a `.part`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bus.client import download
from bus.client.errors import ClientError
from tests.system import System

FILE_ID = "e5bf2729-5a92-5477-93d7-4c8febdebc52"


async def test_dash_is_stdout(system: System, cli_for: Any, tmp_path: Path) -> None:
    cli = cli_for("dest-stdout")
    file_id, data = await cli.uploaded(tmp_path / "s.bin", 300_000)
    cli.cwd = tmp_path / "here"
    cli.cwd.mkdir()
    proc = await cli.start("download", file_id, "-o", "-")
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert out == data  # the bytes alone on stdout; the summary is on stderr
    assert list(cli.cwd.iterdir()) == []  # no file named "-", no part
    both = await cli("download", file_id, "-o", "-", "--json")
    assert both.code == 2, both.err  # the bytes and the JSON cannot share stdout


async def test_a_fifo_is_written_in_place(system: System, cli_for: Any, tmp_path: Path) -> None:
    # `-o /dev/null` or `-o /dev/stdout` did `rename(part, dest)`: as root, the device
    # itself was replaced by a regular file. A FIFO shows it without touching /dev.
    cli = cli_for("dest-fifo")
    file_id, data = await cli.uploaded(tmp_path / "f.bin", 20_000)  # within a pipe's buffer
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        done = await cli("download", file_id, "-o", str(fifo))
        assert done.code == 0, done.err
        assert stat.S_ISFIFO(fifo.lstat().st_mode)
        assert os.read(reader, 1 << 20) == data
    finally:
        os.close(reader)
    assert not (tmp_path / "pipe.part").exists()


async def test_destinations_checked_first(system: System, cli_for: Any, tmp_path: Path) -> None:
    cli = cli_for("dest-dir")
    file_id, data = await cli.uploaded(tmp_path / "d.bin", 100_000)
    cli.cwd = tmp_path / "here"
    (cli.cwd / "d.bin").mkdir(parents=True)  # the file's name is taken by a directory
    taken = await cli("download", file_id)
    assert taken.code == 1, taken.err
    assert "cairn: error: is_a_directory: d.bin: is a directory" in taken.err
    assert sorted(p.name for p in cli.cwd.iterdir()) == ["d.bin"]  # no d.bin.part
    missing = await cli("download", file_id, "-o", "no/such/x.bin")
    assert missing.code == 1 and "no_such_directory" in missing.err, missing.err
    # A trailing / says "directory": created, the file put in it by its name.
    into = await cli("download", file_id, "-o", "new/")
    assert into.code == 0, into.err
    assert (cli.cwd / "new" / "d.bin").read_bytes() == data


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("../../.bashrc", ".bashrc"),  # a server's (or a hostile proxy's) name: not a path
        ("/etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("a\x1b]0;x\x07.txt", "a\\x1b]0;x\\x07.txt"),  # an object key's last segment
        ("plain name [1].txt", "plain name [1].txt"),
    ],
)
def test_the_servers_name_names_a_file_here(
    name: str, kept: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Path(meta["name"]) was the destination: `../../.bashrc` wrote the download (and its
    # .part) two folders up, `/etc/passwd` over the absolute path.
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    meta = {"id": FILE_ID, "name": name}
    assert download.destination(meta, None) == Path(kept)
    assert download.destination(meta, "into/") == Path("into", kept)


@pytest.mark.parametrize("name", ["..", ".", "", "x/..", "dir/"])
def test_a_name_that_names_no_file_asks_for_o(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An object keyed `x/..` is named `..` by the server: refused at once, -o says where.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClientError) as e:
        download.destination({"id": FILE_ID, "name": name}, None)
    assert e.value.code == "invalid_name" and "-o PATH" in e.value.message
    assert download.destination({"id": FILE_ID, "name": name}, "f.bin") == Path("f.bin")
    assert list(tmp_path.iterdir()) == []
