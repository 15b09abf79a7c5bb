"""bus/config/private.py: owner-only directories and files, and what it leaves alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bus.config.private import private_dir, private_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_directory_is_owner_only_an_existing_one_is_left_alone(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which made 0755 directories
    try:
        made = private_dir(tmp_path / "parent" / "data")
        assert made == tmp_path / "parent" / "data" and mode(made) == 0o700
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        shared.chmod(0o755)
        private_dir(shared)
        assert mode(shared) == 0o755  # the operator's own directory: not re-permissioned
    finally:
        os.umask(old)


def test_a_file_is_made_owner_only_and_keeps_its_content(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        new = private_file(tmp_path / "new.log")
        assert mode(new) == 0o600 and new.read_bytes() == b""
        earlier = tmp_path / "postgres.log"
        earlier.write_bytes(b"a line from an earlier start\n")
        earlier.chmod(0o644)
        private_file(earlier)
        assert mode(earlier) == 0o600
        assert earlier.read_bytes() == b"a line from an earlier start\n"
    finally:
        os.umask(old)
