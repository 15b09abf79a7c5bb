"""Ctrl-C while `cairn` is still starting (importing, about a second) ends with one line
and exit 130, as it does once a command runs, not with a traceback out of an import.

The KeyboardInterrupt is raised where a SIGINT in that second raises it, in the import
of the CLI, by an import hook: a real signal cannot be aimed at that window."""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

import pytest

from bus.run import entry


class _CtrlCDuring(importlib.abc.MetaPathFinder):
    def __init__(self, module: str) -> None:
        self.module = module

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == self.module:
            raise KeyboardInterrupt
        return None


@pytest.mark.parametrize("module", ["bus.run.cli", "bus.client.commands"])
def test_ctrl_c_while_importing(
    module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for loaded in ("bus.run.cli", module):
        monkeypatch.delitem(sys.modules, loaded, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_CtrlCDuring(module), *sys.meta_path])
    monkeypatch.setattr(sys, "argv", ["cairn", "ls"])
    assert entry.main() == 130
    assert capsys.readouterr().err == "cairn: interrupted\n"
