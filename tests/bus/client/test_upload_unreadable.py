"""`cairn upload` of what it cannot read: a directory of a tree it cannot list stops the
command with its name (it was skipped, exit 0, its files never sent), and a file it
cannot open fails on one line naming it once, the other files going on.

Unreadable to root only without the capabilities that bypass file modes: as root the
command runs under `setpriv` with them dropped."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.system import System


def _unprivileged(cli: Any) -> None:
    if os.geteuid() != 0:
        return
    if shutil.which("setpriv") is None:
        pytest.skip("as root, needs setpriv to drop CAP_DAC_OVERRIDE")
    cli.prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


async def test_an_unlistable_directory_is_an_error(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("unreadable-dir")
    _unprivileged(cli)
    tree = tmp_path / "tree"
    (tree / "locked").mkdir(parents=True)
    (tree / "locked" / "a.txt").write_bytes(b"a")
    (tree / "b.txt").write_bytes(b"b")
    (tree / "locked").chmod(0)
    try:
        done = await cli("upload", str(tree), "--json")
    finally:
        (tree / "locked").chmod(0o755)
    assert done.code == 1, done.err
    assert f"cairn: error: io_error: {tree / 'locked'}: cannot read the directory" in done.err


async def test_an_unreadable_file_fails_alone(system: System, cli_for: Any, tmp_path: Path) -> None:
    cli = cli_for("unreadable-file")
    _unprivileged(cli)
    secret, fine = tmp_path / "secret.txt", tmp_path / "fine.txt"
    secret.write_bytes(b"s")
    fine.write_bytes(b"f")
    secret.chmod(0)
    done = await cli("upload", str(secret), str(fine), "--json")
    assert done.code == 1, done.err
    assert [f["path"] for f in json.loads(done.out)["files"]] == [str(fine)]
    assert f"cairn: error: {secret}: io_error: Permission denied\n" in done.err


async def test_what_is_not_a_file_in_a_tree_is_skipped_with_a_warning(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    # Before, a broken symlink or a FIFO in a tree was left out without a word.
    cli = cli_for("tree-oddities")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_bytes(b"a")
    (tree / "gone").symlink_to(tree / "nowhere")
    os.mkfifo(tree / "pipe")
    done = await cli("upload", str(tree), "--json")
    assert done.code == 0, done.err
    assert [f["path"] for f in json.loads(done.out)["files"]] == [str(tree / "a.txt")]
    assert f"cairn: warning: {tree / 'gone'}: a broken symbolic link, skipped\n" in done.err
    assert f"cairn: warning: {tree / 'pipe'}: not a regular file, skipped\n" in done.err


async def test_a_warning_shows_a_names_controls_as_escapes(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    # A tree unpacked from someone else's archive may name a file with ESC and CR in it:
    # the warning naming it wrote them to the terminal as they were (output.printable).
    cli = cli_for("tree-controls")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_bytes(b"a")
    (tree / "x\x1b[2J\ry").symlink_to(tree / "nowhere")
    done = await cli("upload", str(tree), "--json")
    assert done.code == 0, done.err
    assert "\x1b" not in done.err and "\r" not in done.err
    assert f"cairn: warning: {tree}/x\\x1b[2J\\x0dy: a broken symbolic link, skipped\n" in done.err
