"""Where the client finds its server (bus/client/config.py): the config file `cairn login`
writes holds a token, readable by its owner only, whatever was there before; without a
flag, CAIRN_URL or a login, the server is the one `cairn up` starts with this environment."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bus.client import config
from bus.client.errors import ClientError


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


@pytest.fixture
def no_server_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No flag, no CAIRN_URL, no saved login: the URL comes from the local settings."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("CAIRN_URL", "CAIRN_TOKEN", "CAIRN_HOST", "CAIRN_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_settings_the_server_is_the_default_local_one(
    no_server_env: pytest.MonkeyPatch,
) -> None:
    assert config.resolve(None, None).url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        (None, "25900", "http://127.0.0.1:25900"),
        ("0.0.0.0", "25900", "http://127.0.0.1:25900"),
        ("::", None, "http://127.0.0.1:8000"),
        ("10.1.2.3", None, "http://10.1.2.3:8000"),
        ("::1", "9000", "http://[::1]:9000"),
    ],
)
def test_the_local_server_is_where_cairn_up_listens_with_this_environment(
    no_server_env: pytest.MonkeyPatch, host: str | None, port: str | None, url: str
) -> None:
    # The README has a second install set CAIRN_PORT for `up` and every later command: the
    # client went to port 8000 all the same, another user's Cairn on a shared machine.
    if host is not None:
        no_server_env.setenv("CAIRN_HOST", host)
    if port is not None:
        no_server_env.setenv("CAIRN_PORT", port)
    assert config.checked(config.resolve(None, None)).url == url


def test_cairn_url_and_a_saved_login_still_come_before_the_local_settings(
    no_server_env: pytest.MonkeyPatch,
) -> None:
    no_server_env.setenv("CAIRN_PORT", "25900")
    config.save("https://files.example", "secret")
    assert config.resolve(None, None).url == "https://files.example"
    no_server_env.setenv("CAIRN_URL", "http://other.example:81")
    assert config.resolve(None, None).url == "http://other.example:81"
    assert config.resolve("http://flag.example", None).url == "http://flag.example"


def test_a_cairn_port_that_is_no_port_is_a_usage_error_naming_it(
    no_server_env: pytest.MonkeyPatch,
) -> None:
    no_server_env.setenv("CAIRN_PORT", "abc")
    with pytest.raises(ClientError) as e:
        config.checked(config.resolve(None, None))
    assert e.value.code == "invalid_url" and "CAIRN_PORT" in e.value.message
