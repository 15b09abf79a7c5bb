"""`cairn upload` against a server that answers an upload's chunk layout wrongly: a chunk
size of 0 or below, more chunks than the file can have (10**10: a list built of them took
the machine's memory), missing chunks that are not chunks of the file (-1 seeked before the
file's start: `io_error: Invalid argument`; one past the end sent an empty PUT). Each is
one `bad_response` line naming the file, exit 1, and no chunk sent for it."""

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
SIZE = 2500  # three chunks of 1000


class _Fake(BaseHTTPRequestHandler):
    created: dict[str, Any] = {}
    missing: Any = None
    puts: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        if self.path.endswith("/complete"):
            details = {"missing_chunks": self.missing}
            err = {"code": "chunks_missing", "message": "chunks missing", "details": details}
            self._json(409, {"error": err})
        else:
            self._json(201, {"id": UPLOAD_ID, **self.created})

    def do_GET(self) -> None:
        self.puts.append(self.path)  # (no GET is expected either)
        self._json(404, {})

    def do_PUT(self) -> None:
        self.puts.append(self.path)
        self._json(200, {"received": True})

    def do_DELETE(self) -> None:
        self._json(204, {})


CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "chunk-size-0": ({"chunk_size": 0, "total_chunks": 3}, []),
    "chunk-size-negative": ({"chunk_size": -1000, "total_chunks": 3}, []),
    "too-many-chunks": ({"chunk_size": 1000, "total_chunks": 10**10}, []),
    "negative-total": ({"chunk_size": 1000, "total_chunks": -1}, []),
    "missing-negative": ({"chunk_size": 1000, "total_chunks": 3}, [-1]),
    "missing-past-the-end": ({"chunk_size": 1000, "total_chunks": 3}, [3]),
    "missing-not-a-number": ({"chunk_size": 1000, "total_chunks": 3}, ["0"]),
    "missing-not-a-list": ({"chunk_size": 1000, "total_chunks": 3}, {"0": 1}),
    # Every later request's path: `../../files/x/chunks/0` is another resource.
    "id-not-an-id": ({"id": "../../files/x", "chunk_size": 1000, "total_chunks": 3}, []),
}


@pytest.fixture(params=list(CASES))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, list[str]]]:
    created, missing = CASES[request.param]
    puts: list[str] = []
    handler = type("Fake", (_Fake,), {"created": created, "missing": missing, "puts": puts})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", request.param, puts
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_a_wrong_chunk_layout_is_one_line_and_no_chunk_sent(
    server: tuple[str, str, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, case, puts = server
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "f.bin").write_bytes(b"x" * SIZE)
    code = main(["upload", str(tmp_path / "f.bin"), "--url", url, "--token", "t"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 1, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"cairn: error: {tmp_path / 'f.bin'}: bad_response: "), lines
    if case.startswith("missing"):  # the three real chunks went; nothing for the bogus one
        assert sorted(puts) == [f"/v1/uploads/{UPLOAD_ID}/chunks/{i}" for i in range(3)]
    else:
        assert puts == []
