"""`cairn download` against the real API in a folder others may write to: a planted
`<dest>.part` symbolic link is refused, not followed, and a name the server gives never
replaces a file (or a link) already there unless --overwrite says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bus.client.planted import PART, plant_link
from tests.system import System


async def test_a_planted_part_link_is_refused(system: System, cli_for: Any, tmp_path: Path) -> None:
    cli = cli_for("planted-part")
    file_id, data = await cli.uploaded(tmp_path / "p.bin", 50_000)
    shared = tmp_path / "shared"
    shared.mkdir()
    victim = tmp_path / "victim.rc"
    link = plant_link(shared / "out.bin", PART, victim, b"alias ls='ls -F'\n")
    done = await cli("download", file_id, "-o", str(shared / "out.bin"))
    assert done.code == 1, done.err
    assert "cairn: error: unsafe_part:" in done.err and "symbolic link" in done.err
    assert victim.read_bytes() == b"alias ls='ls -F'\n"
    assert not (shared / "out.bin").exists()
    link.unlink()
    again = await cli("download", file_id, "-o", str(shared / "out.bin"))
    assert again.code == 0, again.err
    assert (shared / "out.bin").read_bytes() == data


async def test_the_servers_name_never_replaces_a_file(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    # The name is the server's (or another user's: an object's key): `cairn download ID`
    # replaced whatever ./<name> was, without a word.
    cli = cli_for("no-clobber")
    file_id, data = await cli.uploaded(tmp_path / "notes.txt", 10_000)
    cli.cwd = tmp_path / "here"
    cli.cwd.mkdir()
    mine = cli.cwd / "notes.txt"
    mine.write_bytes(b"my own notes")
    for args in ((), ("-o", str(cli.cwd)), ("-o", f"{cli.cwd}/")):
        done = await cli("download", file_id, *args)
        assert done.code == 1, done.err
        assert "cairn: error: file_exists:" in done.err and "--overwrite" in done.err
        assert mine.read_bytes() == b"my own notes"
    assert sorted(p.name for p in cli.cwd.iterdir()) == ["notes.txt"]  # no part either
    # A link by that name (dangling, even) is not written through either.
    elsewhere = tmp_path / "elsewhere.txt"
    link = cli.cwd / "link" / "notes.txt"
    link.parent.mkdir()
    link.symlink_to(elsewhere)
    done = await cli("download", file_id, "-o", str(link.parent))
    assert done.code == 1 and "file_exists" in done.err, done.err
    assert not elsewhere.exists()
    # --overwrite says so; the link itself is replaced, never its target.
    done = await cli("download", file_id, "-o", str(link.parent), "--overwrite")
    assert done.code == 0, done.err
    assert not link.is_symlink() and link.read_bytes() == data
    assert not elsewhere.exists()
    done = await cli("download", file_id, "--overwrite")
    assert done.code == 0, done.err
    assert mine.read_bytes() == data
    # A path named with -o is the user's own choice: replaced as before.
    named = cli.cwd / "named.txt"
    named.write_bytes(b"old")
    done = await cli("download", file_id, "-o", str(named))
    assert done.code == 0, done.err
    assert named.read_bytes() == data
