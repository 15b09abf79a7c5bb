"""The config file `cairn login` writes (bus/client/config.py) holds a token: readable by
its owner only, whatever was there before."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bus.client import config


@pytest.mark.parametrize("before", ["config.json", "config.tmp"])
def test_the_token_is_saved_0600_over_a_wider_file(
    before: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A config.tmp left with 0666 (a crash, a hand edit) kept its mode under O_CREAT, and
    # was renamed over config.json: the token readable by every user.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "cairn").mkdir()
    wide = tmp_path / "cairn" / before
    wide.write_text("{}")
    wide.chmod(0o666)
    path = config.save("https://files.example/", "secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "https://files.example", "token": "secret"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]
