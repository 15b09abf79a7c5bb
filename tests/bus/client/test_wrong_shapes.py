"""A server (or something pretending to be one) that answers 2xx JSON of the wrong shape: a
list where an object belongs, an object without the fields Cairn sends ("id", "items"...),
strings where numbers belong. Every command ends with one line on stderr, `cairn: error:
bad_response: ...`, and exit 1: never a KeyError or TypeError traceback.

The fake server is a real HTTP server on a port of this test's own (tests/ports.py): the
tus path goes through tuspy, which opens its own connections."""

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

UPLOAD_ID = "0b6c1d2e-3f40-4152-8637-48596a7b8c9d"
FILE_ID = "1c7d2e3f-4051-4263-9748-596a7b8c9dae"

SHAPES: dict[str, Any] = {
    "a-list": [{"id": FILE_ID}],
    "no-fields": {"unexpected": True},
    "wrong-types": {
        "id": 12,
        "file_id": ["x"],
        "items": "none",
        "contents": 3,
        "common_prefixes": 4,
        "size": "big",
        "chunk_size": "big",
        "total_chunks": "many",
        "status": {"s": 1},
        "sha256": 5,
        "name": 6,
        "progress": "half",
        "bytes": "lots",
        "missing_chunks": "all",
        "is_truncated": "maybe",
        "next_cursor": 9,
    },
}


class _Fake(BaseHTTPRequestHandler):
    """Answers tus as tus (tuspy checks headers, not JSON), every other request with the
    server's `shape` as 200 (201 for a POST) JSON; an event stream sends it as an event."""

    shape: Any = None

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Tus-Resumable", "1.0.0")
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def _drain(self) -> int:
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        return n

    def _json(self, status: int = 200) -> None:
        self._drain()
        path = self.path.split("?")[0]
        if path.endswith("/events"):
            data = json.dumps(
                self.shape if not isinstance(self.shape, dict) else {"data": self.shape}
            )
            body = f"id: 1\ndata: {data}\n\n".encode()
            self._answer(200, body, "text/event-stream")
            return
        self._answer(status, json.dumps(self.shape).encode(), "application/json")

    def do_GET(self) -> None:
        self._json()

    def do_HEAD(self) -> None:
        self._answer(200, b"", "application/json")

    def do_DELETE(self) -> None:
        self._json()

    def do_PUT(self) -> None:
        self._json(201)

    def do_POST(self) -> None:
        if self.path.startswith("/v1/tus"):
            self._drain()
            self._answer(201, b"", "text/plain", Location=f"/v1/tus/{UPLOAD_ID}")
            return
        self._json(201)

    def do_PATCH(self) -> None:
        offset = int(self.headers.get("Upload-Offset") or 0) + self._drain()
        self._answer(204, b"", "text/plain", Upload_Offset=str(offset))


@pytest.fixture(params=list(SHAPES))
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Fake", (_Fake,), {"shape": SHAPES[request.param]})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache and config of the test's own; the working directory a scratch one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.bin").write_bytes(b"some bytes to send")
    return tmp_path


COMMANDS = {
    "upload": ["upload", "f.bin"],
    "upload-tus": ["upload", "--tus", "f.bin"],
    "download": ["download", FILE_ID, "-o", "out.bin"],
    "download-key": ["download", "media/a.bin", "-o", "out.bin"],
    "ls-objects": ["ls", "media/photos/"],
    "ls-files": ["ls"],
    "fetch": ["fetch", "https://example.com/x.bin"],
    "fetch-status": ["fetches", "show", UPLOAD_ID],
    "fetches-ls": ["fetches", "ls"],
    "task-status": ["tasks", "show", UPLOAD_ID],
    "tasks-ls": ["tasks", "ls"],
    "events": ["events"],
    "buckets-ls": ["buckets", "ls"],
    "stats": ["stats"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("json_out", [False, True], ids=["table", "json"])
def test_a_wrong_shaped_answer_is_one_line_and_exit_1(
    server: str,
    home: Path,
    command: str,
    json_out: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [*COMMANDS[command], "--url", server, "--token", "t"]
    code = main([*args, "--json"] if json_out else args)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 1, (code, captured.err)
    # An upload names the file that failed (the others would go on).
    start = (
        f"cairn: error: {home / 'f.bin'}: " if command.startswith("upload") else "cairn: error: "
    )
    assert len(lines) == 1 and lines[0].startswith(f"{start}bad_response: "), lines
    if command != "events":  # (an event stream says what it sent instead)
        assert "is --url a Cairn server" in lines[0]
    assert not (home / "out.bin").exists()
