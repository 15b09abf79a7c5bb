"""Upload resume state (bus/client/resume.py) against what else may be on disk: the state
file and its temporary are never followed as symbolic links, a folder or file of another
user is refused, and a state file that is not this upload's (copied from another server's
or user's, or of the wrong shape) is not used: above all, a tus URL it names is never sent
the file unless it is the server's own."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bus.client.config import Target
from bus.client.errors import ClientError
from bus.client.resume import ResumeState, state_dir, state_key
from bus.client.tus import _StateStorage
from bus.client.upload import Job, caller_of, job_state
from tests.ports import free_port
from tests.system import System

SERVER = "http://cairn.example"
KEY = state_key("f.bin", 1, 2, SERVER, "ann")
THIS = {"for": KEY, "upload_id": "0b6c1f8e-29c5-4a0e-8f5e-3c1b2a4d5e6f", "chunk_size": 8}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _planted(data: dict[str, Any], key: str = KEY) -> Path:
    state_dir().mkdir(parents=True, mode=0o700)
    path = state_dir() / f"{key}.json"
    path.write_text(json.dumps(data))
    return path


def test_a_state_is_kept_private_and_read_back(tmp_path: Path) -> None:
    ResumeState(KEY, SERVER).update(upload_id="0b6c1f8e-29c5-4a0e-8f5e-3c1b2a4d5e6f", chunk_size=8)
    assert (state_dir().stat().st_mode & 0o777) == 0o700
    assert (state_dir() / f"{KEY}.json").stat().st_mode & 0o077 == 0
    again = ResumeState(KEY, SERVER)
    assert again.get("upload_id") == "0b6c1f8e-29c5-4a0e-8f5e-3c1b2a4d5e6f"
    assert again.get("chunk_size") == 8


def test_a_state_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text(json.dumps({"for": KEY, "tus_url": "http://evil.example/x"}))
    state_dir().mkdir(parents=True, mode=0o700)
    (state_dir() / f"{KEY}.json").symlink_to(victim)
    with pytest.raises(ClientError) as e:
        ResumeState(KEY, SERVER)
    assert e.value.code == "unsafe_state" and "symbolic link" in e.value.message


def test_a_planted_temporary_is_not_written_through(tmp_path: Path) -> None:
    # update() wrote `<key>.json.<pid>.tmp` with open("w"): a link there by that name
    # had the state written into its target.
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    state_dir().mkdir(parents=True, mode=0o700)
    (state_dir() / f"{KEY}.json.{os.getpid()}.tmp").symlink_to(victim)
    state = ResumeState(KEY, SERVER)
    state.update(sha256="0" * 64)
    assert victim.read_bytes() == b"precious"
    assert ResumeState(KEY, SERVER).get("sha256") == "0" * 64


def test_a_folder_others_may_write_to_is_refused(cache: Path) -> None:
    state_dir().mkdir(parents=True)
    state_dir().chmod(0o777)
    with pytest.raises(ClientError) as e:
        ResumeState(KEY, SERVER).update(sha256="0" * 64)
    assert e.value.code == "unsafe_state" and "writable" in e.value.message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs another uid to own the file")
def test_a_state_file_of_another_user_is_refused() -> None:
    path = _planted({"for": KEY})
    os.chown(path, 12345, 12345)
    with pytest.raises(ClientError) as e:
        ResumeState(KEY, SERVER)
    assert e.value.code == "unsafe_state" and "owned by" in e.value.message


@pytest.mark.parametrize(
    "data",
    [
        {"upload_id": "0b6c1f8e-29c5-4a0e-8f5e-3c1b2a4d5e6f"},  # no "for": not known whose
        {"for": state_key("f.bin", 1, 2, "http://other.example", "ann"), "sha256": "0" * 64},
        {"for": KEY, "upload_id": "../../v1/files/x"},
        {"for": KEY, "chunk_size": "big"},
        {"for": KEY, "chunk_size": -1},
        {"for": KEY, "sha256": "not hex"},
        {"for": KEY, "tus_url": "http://evil.example/v1/tus/x"},
        {"for": KEY, "tus_url": SERVER + ".evil.example/v1/tus/x"},
        {"for": KEY, "create_key": 7},
        {"for": KEY, "tus_url": "https://cairn.example/v1/tus/x"},  # another scheme
        {"for": KEY, "tus_url": SERVER + ":81/v1/tus/x"},  # another port
        {"for": KEY, "tus_url": SERVER + "/v1/files/x"},
    ],
)
def test_a_state_not_this_uploads_is_not_used(data: dict[str, Any]) -> None:
    # Asserting only "not used" passed as well with no state read at all (or one looked
    # for under another name): first, a state of this upload in the same file is used.
    path = _planted(THIS)
    assert ResumeState(KEY, SERVER).data == THIS
    path.write_text(json.dumps(data))
    assert ResumeState(KEY, SERVER).data == {}


def test_this_uploads_state_is_used() -> None:
    data = {
        "for": KEY,
        "upload_id": "0b6c1f8e-29c5-4a0e-8f5e-3c1b2a4d5e6f",
        "chunk_size": 8 << 20,
        "sha256": "a" * 64,
        "create_key": "k1",
        "complete_key": None,
        "tus_url": SERVER + "/v1/tus/0b6c1f8e",
    }
    _planted(data)
    assert ResumeState(KEY, SERVER).data == data


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def _any(self) -> None:
        # Said at once (a refusal, the connection closed), so that a client that does
        # come here fails fast instead of waiting on a half-spoken tus.
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    do_HEAD = do_PATCH = do_GET = do_POST = _any

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Rec", (_Recorder,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


async def test_a_copied_tus_state_never_sends_the_file_elsewhere(
    system: System,
    cli_for: Any,
    tmp_path: Path,
    elsewhere: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A state file (from another machine's cache, another server's upload, or planted)
    # naming a tus URL of another host: tuspy resumed there, the file's bytes (and the
    # token) going to whoever that is.
    other, seen = elsewhere
    cli = cli_for("state-copied")
    src = tmp_path / "t.bin"
    src.write_bytes(os.urandom(100))
    st = src.stat()
    target = Target(cli.env["CAIRN_URL"], cli.env["CAIRN_TOKEN"])
    job = Job(src.resolve(), st.st_size, st.st_mtime_ns, src.name, None)
    monkeypatch.setenv("XDG_CACHE_HOME", cli.env["XDG_CACHE_HOME"])
    state = job_state(job, target, caller_of(target), None, None, "tus")
    state.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    # This upload's state ("for" its key) but for the URL: without "for" it was refused
    # for that alone, and the test passed with no check of the URL at all.
    planted = {"for": state.key, "tus_url": f"{other}/v1/tus/abc", "sha256": "0" * 64}
    state.path.write_text(json.dumps(planted))
    done = await cli("upload", str(src), "--tus", "--json")
    assert done.code == 0, done.err
    assert seen == []
    assert json.loads(done.out)["files"][0]["sha256"] != "0" * 64
    assert not state.path.exists()  # the very state the upload used (and removed when done)


def test_a_state_file_that_is_a_fifo_is_refused_at_once() -> None:
    # Opened to read, a FIFO waited for a writer: the upload hung before its first byte.
    state_dir().mkdir(parents=True, mode=0o700)
    os.mkfifo(state_dir() / f"{KEY}.json")
    with pytest.raises(ClientError) as e:
        ResumeState(KEY, SERVER)
    assert e.value.code == "unsafe_state" and "not a regular file" in e.value.message


def test_a_default_port_written_out_is_the_same_server() -> None:
    data = {"for": KEY, "tus_url": "http://cairn.example:80/v1/tus/abc"}
    _planted(data)
    assert ResumeState(KEY, SERVER).data == data


@pytest.mark.parametrize(
    "url", ["http://evil.example/v1/tus/abc", SERVER + ":8080/v1/tus/abc", "not a url"]
)
def test_a_tus_upload_elsewhere_is_not_kept_nor_used(url: str) -> None:
    # tuspy resolves the create's Location and stores it: one on another host would get
    # every PATCH (the file and the token).
    storage = _StateStorage(ResumeState(KEY, SERVER))
    with pytest.raises(ClientError) as e:
        storage.set_item("k", url)
    assert e.value.code == "bad_response"
    assert storage.get_item("k") is None
    storage.set_item("k", SERVER + "/v1/tus/abc")
    assert storage.get_item("k") == SERVER + "/v1/tus/abc"
