"""Answers no Cairn sends, as raw bytes: JSON cut off midway, nested past any parser's
depth, numbers too large for any use (or for a float), negative sizes, a sha256 that is
not one. Every command ends with one line on stderr and a non-zero exit, never a
traceback (tests/bus/client/test_wrong_shapes.py has the well-formed wrong shapes)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bus.run.cli import main
from tests.ports import free_port

FILE_ID = "1c7d2e3f-4051-4263-9748-596a7b8c9dae"
HUGE = 10**400


def _file(**over: Any) -> dict[str, Any]:
    item = {
        "id": FILE_ID,
        "name": "a.bin",
        "size": 10,
        "sha256": "0" * 64,
        "content_type": "application/octet-stream",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "status": "COMPLETED",
        "bucket": None,
        "metadata": {},
    }
    return {**item, **over}


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


BODIES: dict[str, bytes] = {
    "truncated": b'{"id": "' + FILE_ID.encode() + b'", "name": "a.b',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "digits": b'{"size": ' + b"9" * 5000 + b"}",
    "huge-size": _dump({**_file(size=HUGE), "items": [_file(size=HUGE)]}),
    "float-size": b'{"size": 1e999, "items": [{"size": 1e999}]}',
    "negative-size": _dump({**_file(size=-5), "items": [_file(size=-5)]}),
    "huge-times": _dump(
        {**_file(created_at="99999-01-01T00:00:00Z"), "items": [_file(created_at=HUGE)]}
    ),
    "bad-sha": _dump(_file(sha256="../../x")),
    "bad-id": _dump({**_file(id="../../v1/files"), "items": [_file(id="../../v1/files")]}),
}

# Answers no command can read at all.
UNREADABLE = {BODIES[k] for k in ("truncated", "deep", "deep-object", "digits")}

# Metadata a download cannot check bytes against: refused before any is asked for.
NO_FILE = {BODIES[k] for k in ("huge-size", "float-size", "negative-size", "bad-sha", "bad-id")}

COMMANDS = {
    "download": ["download", FILE_ID, "-o", "out.bin"],
    "ls-files": ["ls"],
    "ls-objects": ["ls", "media/"],
    "stats": ["stats"],
    "buckets-ls": ["buckets", "ls"],
    "tasks-ls": ["tasks", "ls"],
    "fetches-ls": ["fetches", "ls"],
    "sign": ["sign", FILE_ID],
}


class _Raw(BaseHTTPRequestHandler):
    body = b""

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0].endswith("/content"):
            body, ctype = b"x" * 10, "application/octet-stream"
        else:
            body, ctype = self.body, "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


class _Url(str):
    body: bytes


@pytest.fixture(params=list(BODIES))
def server(request: pytest.FixtureRequest) -> Iterator[_Url]:
    handler = type("Raw", (_Raw,), {"body": BODIES[request.param]})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = _Url(f"http://127.0.0.1:{httpd.server_address[1]}")
        url.body = BODIES[request.param]
        yield url
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_bad_answer_is_one_line_and_a_failure(
    server: _Url,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    code = main([*COMMANDS[command], "--url", server, "--token", "t"])  # no traceback
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    if code == 0:
        # A list may show an odd value as it is (a size of 10**400 bytes, a year 99999):
        # not an answer to act on, only to show. Never a download.
        assert command != "download" and server.body not in UNREADABLE, captured.err
        assert lines == [], lines
        return
    assert len(lines) == 1 and lines[0].startswith("cairn: error: "), lines
    assert not (tmp_path / "out.bin").exists()
    if server.body in UNREADABLE or (command == "download" and server.body in NO_FILE):
        assert "bad_response" in lines[0], lines
