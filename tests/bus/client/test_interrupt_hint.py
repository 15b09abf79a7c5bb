"""What Ctrl-C says (bus/client/commands.py run): resume only where a run again does."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from bus.client import commands
from bus.client.errors import Interrupted


def _stopped(**args: object) -> int:
    def func(a: argparse.Namespace, out: object) -> int:
        raise Interrupted()

    return commands.run(func, argparse.Namespace(json=False, **args))


def test_a_download_to_a_stream_is_not_said_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `-o -` and a FIFO keep no part: "run the same command again to resume" was untrue.
    os.mkfifo(tmp_path / "pipe")
    for output in ("-", str(tmp_path / "pipe")):
        assert _stopped(command="download", output=output) == 130
        assert capsys.readouterr().err == (
            "cairn: interrupted; a download to a stream cannot be resumed\n"
        )
    for output in (None, str(tmp_path), str(tmp_path / "f.bin")):
        assert _stopped(command="download", output=output) == 130
        assert (
            capsys.readouterr().err == "cairn: interrupted; run the same command again to resume\n"
        )
