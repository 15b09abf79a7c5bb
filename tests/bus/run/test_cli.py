"""The `cairn` command line: tokens, and the start-up errors `cairn up` gives before starting anything."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from bus.run.cli import DEFAULT_TOKEN_TTL, main
from bus.run.embedded import EmbeddedKafka
from bus.run.supervisor import DataDirLock
from tests.ports import free_port

CAIRN_VARS = (
    "CAIRN_JWT_SECRET",
    "CAIRN_JWT_PUBLIC_KEY",
    "CAIRN_DATABASE_URL",
    "CAIRN_KAFKA_BOOTSTRAP",
)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in CAIRN_VARS:
        monkeypatch.delenv(name, raising=False)
    d = tmp_path / "data"
    monkeypatch.setenv("CAIRN_DATA_DIR", str(d))
    return d


def _token(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["token", *args]) == 0
    return capsys.readouterr().out.strip()


def test_token_verifies_with_the_generated_secret(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = int(time.time())
    token = _token(capsys, "alice", "--admin")
    secret = (data_dir / "jwt-secret").read_text().strip()
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["admin"]
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == DEFAULT_TOKEN_TTL
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-secret-" + "x" * 32, algorithms=["HS256"])


def test_token_without_admin_and_with_ttl(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _token(capsys, "bob", "--ttl", "60")
    claims = jwt.decode(token, (data_dir / "jwt-secret").read_text().strip(), algorithms=["HS256"])
    assert claims["sub"] == "bob"
    assert claims["roles"] == []
    assert claims["exp"] - claims["iat"] == 60


def test_generated_secret_is_stable_across_calls(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _token(capsys, "alice")
    secret = (data_dir / "jwt-secret").read_text()
    second = _token(capsys, "alice")
    assert (data_dir / "jwt-secret").read_text() == secret
    assert (data_dir / "jwt-secret").stat().st_mode & 0o077 == 0  # not readable by others
    for token in (first, second):
        assert jwt.decode(token, secret.strip(), algorithms=["HS256"])["sub"] == "alice"


def test_token_uses_configured_secret(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAIRN_JWT_SECRET", "configured-" + "s" * 32)
    token = _token(capsys, "carol")
    assert jwt.decode(token, "configured-" + "s" * 32, algorithms=["HS256"])["sub"] == "carol"
    assert not (data_dir / "jwt-secret").exists()


def test_unknown_kind_is_a_usage_error(data_dir: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "nope"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["up", "--only", "api,nope"])
    assert e.value.code == 2


# ------------------------------------------------------------ `cairn up` refusing to start
# Run as subprocesses: `up` configures logging and signal handling for the whole process.


def _up(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in CAIRN_VARS}
    full.update(
        CAIRN_DATA_DIR=str(data_dir),
        CAIRN_PORT=str(free_port()),
        CAIRN_EMBEDDED_PG_PORT=str(free_port()),
        CAIRN_EMBEDDED_KAFKA_PORT=str(free_port()),
    )
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bus.run.cli", "up"],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    "variable", ["CAIRN_EMBEDDED_PG_PORT", "CAIRN_EMBEDDED_KAFKA_PORT", "CAIRN_PORT"]
)
def test_up_names_the_variable_of_a_busy_port(
    tmp_path: Path, busy_port: int, variable: str
) -> None:
    result = _up(tmp_path / "data", **{variable: str(busy_port)})
    assert result.returncode == 1, result.stderr
    assert variable in result.stderr
    assert str(busy_port) in result.stderr
    assert not (tmp_path / "data" / "pg").exists()  # refused before starting anything


def test_up_refuses_a_data_dir_in_use(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path / "data")
    lock.acquire()
    try:
        result = _up(tmp_path / "data")
    finally:
        lock.release()
    assert result.returncode == 1, result.stderr
    assert "already using data dir" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CAIRN_PORT", "abc"),
        ("CAIRN_UPLOAD_TTL", "-5"),
        ("CAIRN_QUOTA_BYTES", "lots"),
        ("CAIRN_BLOB_STORE", "ftp://host/x"),
        ("CAIRN_API_KEYS", "key-without-a-user"),
    ],
)
def test_up_refuses_a_bad_value_in_one_line_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = _up(tmp_path / "data", **{variable: value})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cairn: error: " + variable), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "pg").exists()  # refused before starting anything


@pytest.mark.parametrize("command", [["up"], ["migrate"], ["run", "relay"]])
def test_an_unreachable_database_is_one_line_naming_the_variable(
    tmp_path: Path, command: list[str]
) -> None:
    dead = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k not in CAIRN_VARS}
    env.update(
        CAIRN_DATA_DIR=str(tmp_path / "data"),
        CAIRN_PORT=str(free_port()),
        CAIRN_EMBEDDED_KAFKA_PORT=str(free_port()),
        CAIRN_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        CAIRN_DATABASE_URL=f"postgresql://cairn:s3cret@127.0.0.1:{dead}/cairn",
    )
    result = subprocess.run(
        [sys.executable, "-m", "bus.run.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("cairn: error:")]
    assert errors == [errors[0]] and f"CAIRN_DATABASE_URL (127.0.0.1:{dead}/cairn)" in errors[0]
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr  # the password is never printed


def test_replay_logs_json_on_stderr_and_prints_only_its_result(
    db_url: str, kafka_server: EmbeddedKafka, tmp_path: Path
) -> None:
    """The operator commands never configured logging: `cairn replay` wrote its
    `relay.replayed` line in structlog's default console format to stdout, between the
    output a script reads, where the README promises JSON on stderr (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in CAIRN_VARS and k != "CAIRN_LOG_JSON"}
    env.update(
        CAIRN_DATA_DIR=str(tmp_path / "data"),
        CAIRN_DATABASE_URL=db_url,
        CAIRN_KAFKA_BOOTSTRAP=kafka_server.bootstrap,
        CAIRN_KAFKA_IDEMPOTENCE="false",
        CAIRN_TOPIC_PREFIX=f"r{os.getpid()}{time.monotonic_ns()}",
        CAIRN_LOG_LEVEL="info",
    )
    result = subprocess.run(
        [sys.executable, "-m", "bus.run.cli", "replay", "--from", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "republished 0 events from position 0\n"
    [line] = [json.loads(x) for x in result.stderr.splitlines() if "relay.replayed" in x]
    assert line["event"] == "relay.replayed" and line["level"] == "info", line


# ESC[2J (clear the screen), CR (back to the line's start), the one-byte CSI and a
# right-to-left override, each in a name an operator command prints.
NASTY = "x\x1b[2J\r\x9b2J\u202egpj.exe"
SHOWN = "x\\x1b[2J\\x0d\\x9b2J\\u202egpj.exe"


def test_token_shows_a_data_dir_holding_terminal_controls_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in CAIRN_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CAIRN_DATA_DIR", str(tmp_path / NASTY))
    token = _token(capsys, "alice")
    assert main(["token", "bob"]) == 0 and token  # the secret exists now: no note
    monkeypatch.setenv("CAIRN_DATA_DIR", str(tmp_path / NASTY / "fresh"))
    assert main(["token", "carol"]) == 0
    err = capsys.readouterr().err
    assert f"{SHOWN}/fresh yet" in err, err
    for raw in ("\x1b", "\r", "\x9b", "\u202e"):
        assert raw not in err, repr(err)
