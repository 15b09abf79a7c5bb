"""The download's `<dest>.part` and `<dest>.part.json` against what else may be on disk
(bus/client/download.py): a symbolic link planted in a shared folder is never followed,
a part of another user is not written into, and a part.json naming another file, server
or version (or a part longer than the file) is no resume; the server's answer to a
ranged GET (200, a 206 of another range or version, 416) never leaves wrong bytes in the
destination."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from bus.client import download
from bus.client.config import Target
from bus.client.errors import ClientError
from tests.bus.client.planted import PART, SIDECAR, beside, plant_link, plant_part

FILE_ID = "e5bf2729-5a92-5477-93d7-4c8febdebc52"
URL = "http://cairn.example"
DATA = bytes(range(256)) * 400
SHA = hashlib.sha256(DATA).hexdigest()
ETAG = f'"{SHA}"'
META = {"id": FILE_ID, "name": "f.bin", "size": len(DATA), "sha256": SHA}
EVIL = b"#!/bin/sh\nrm -rf ~\n".ljust(len(DATA), b"#")
OTHER = DATA[::-1]  # another file's bytes (or another version's), the same size


def _server(
    seen: list[httpx.Request], answer: Any = None, served: list[int] | None = None
) -> httpx.Client:
    """Cairn's content answers (Range + If-Range as api/http serves them), unless
    `answer(request)` gives another; `served` gets the length of each body sent."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        response = respond(request)
        if served is not None:
            served.append(len(response.content))
        return response

    def respond(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v1/files/{FILE_ID}/content"
        if answer is not None:
            got = answer(request)
            if got is not None:
                return got
        rng = request.headers.get("Range")
        if rng and request.headers.get("If-Range") == ETAG:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(DATA):
                return httpx.Response(416, headers={"Content-Range": f"bytes */{len(DATA)}"})
            return httpx.Response(
                206,
                headers={
                    "ETag": ETAG,
                    "Content-Range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}",
                },
                content=DATA[start:],
            )
        return httpx.Response(200, headers={"ETag": ETAG}, content=DATA)

    return httpx.Client(base_url=URL, transport=httpx.MockTransport(handler))


def _download(client: httpx.Client, dest: Path) -> dict[str, Any]:
    return download.download(
        client, Target(URL, "t"), META, dest, limit_rate=None, console=Console(file=io.StringIO())
    )


def _planted(tmp_path: Path, data: bytes, **over: Any) -> Path:
    """`f.bin.part` of `data` with a resume state for this file, server and ETag (but what
    `over` changes); returns `f.bin`, the destination."""
    dest = tmp_path / "f.bin"
    plant_part(dest, data, **{"file_id": FILE_ID, "url": URL, "etag": ETAG, **over})
    return dest


def _a_right_state_resumes(folder: Path) -> None:
    """A part of this file's first 5000 bytes with its resume state (this file, this
    server, this version), in `folder`, is resumed: the rest asked for and sent, nothing
    else. What a test of a state that is no resume first shows, so that it cannot pass
    by there being no resume at all."""
    folder.mkdir()
    dest = _planted(folder, DATA[:5000])
    seen: list[httpx.Request] = []
    served: list[int] = []
    with _server(seen, served=served) as client:
        result = _download(client, dest)
    assert [r.headers.get("Range") for r in seen] == ["bytes=5000-"]
    assert served == [len(DATA) - 5000]
    assert result["resumed_from"] == 5000 and dest.read_bytes() == DATA


@pytest.mark.parametrize("suffix", [PART, SIDECAR])
def test_a_part_or_sidecar_that_is_a_symlink_is_not_followed(tmp_path: Path, suffix: str) -> None:
    # `part.open("wb")` followed it: another local user's `f.bin.part -> ~/.bashrc` in a
    # shared folder had the download written over the victim's file.
    dest = tmp_path / "f.bin"
    victim = tmp_path / "victim"
    plant_link(dest, suffix, victim, b"precious")
    seen: list[httpx.Request] = []
    with _server(seen) as client, pytest.raises(ClientError) as e:
        _download(client, dest)
    assert e.value.code == "unsafe_part", e.value.message
    assert f"f.bin{suffix}" in e.value.message and "symbolic link" in e.value.message
    assert victim.read_bytes() == b"precious"
    assert not dest.exists()
    assert seen == []  # refused before a byte was asked for


def test_a_dangling_part_symlink_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    dest = tmp_path / "f.bin"
    plant_link(dest, PART, target)
    with _server([]) as client, pytest.raises(ClientError) as e:
        _download(client, dest)
    assert e.value.code == "unsafe_part"
    assert not target.exists()  # O_CREAT through the link would have made it


def test_a_planted_part_and_sidecar_never_become_the_file(tmp_path: Path) -> None:
    # The whole file on disk already (size == the file's), the sidecar's ETag its own
    # sha256: the server answers 416 to `Range: bytes=<size>-` (one that ignores If-Range
    # does), and the 416 branch checked the part against the sidecar's ETag, so the
    # planted bytes were renamed over the destination as "verified".
    dest = _planted(tmp_path, EVIL, etag=f'"{hashlib.sha256(EVIL).hexdigest()}"')

    def ignores_if_range(request: httpx.Request) -> httpx.Response | None:
        if request.headers.get("Range"):
            return httpx.Response(416, headers={"Content-Range": f"bytes */{len(DATA)}"})
        return None

    seen: list[httpx.Request] = []
    with _server(seen, ignores_if_range) as client:
        result = _download(client, dest)
    assert dest.read_bytes() == DATA
    assert result["resumed_from"] == 0
    assert "Range" not in seen[-1].headers  # the sidecar's other ETag is no resume


@pytest.mark.parametrize(
    "over",
    [
        {"file_id": "0" * 8 + FILE_ID[8:]},
        {"url": "http://other.example"},
        {"etag": '"' + "a" * 64 + '"'},
    ],
    ids=["another-file", "another-server", "another-version"],
)
def test_a_sidecar_of_another_file_server_or_version_is_no_resume(
    tmp_path: Path, over: dict[str, str]
) -> None:
    # Asserting only "no Range, the right bytes" passed as well with no resume at all
    # (or a part.json the client never read: another name): first, the same part.json
    # with that one field right is a resume.
    _a_right_state_resumes(tmp_path / "right")
    # Then with it wrong: the part (here of other bytes, as another file's or version's
    # would be) is not resumed but replaced, the whole file sent from byte 0. Appended
    # to, it would end in a sha256 mismatch.
    (tmp_path / "wrong").mkdir()
    dest = _planted(tmp_path / "wrong", OTHER[:5000], **over)
    seen: list[httpx.Request] = []
    served: list[int] = []
    with _server(seen, served=served) as client:
        result = _download(client, dest)
    assert [r.headers.get("Range") for r in seen] == [None]
    assert served == [len(DATA)]
    assert result["resumed_from"] == 0 and dest.read_bytes() == DATA
    assert not beside(dest, PART).exists() and not beside(dest, SIDECAR).exists()


def test_a_part_longer_than_the_file_is_no_resume(tmp_path: Path) -> None:
    _a_right_state_resumes(tmp_path / "right")  # (else this passes with no resume at all)
    (tmp_path / "longer").mkdir()
    dest = _planted(tmp_path / "longer", DATA + b"more")
    seen: list[httpx.Request] = []
    served: list[int] = []
    with _server(seen, served=served) as client:
        result = _download(client, dest)
    assert [r.headers.get("Range") for r in seen] == [None]
    assert served == [len(DATA)]
    assert result["resumed_from"] == 0 and dest.read_bytes() == DATA


def test_a_resume_asks_if_range_with_the_files_etag(tmp_path: Path) -> None:
    dest = _planted(tmp_path, DATA[:7000])
    seen: list[httpx.Request] = []
    with _server(seen) as client:
        result = _download(client, dest)
    assert seen[0].headers["Range"] == "bytes=7000-"
    assert seen[0].headers["If-Range"] == ETAG
    assert result["resumed_from"] == 7000 and dest.read_bytes() == DATA
    assert not beside(dest, SIDECAR).exists()


def test_a_200_to_a_range_restarts_from_zero(tmp_path: Path) -> None:
    dest = _planted(tmp_path, DATA[:7000])
    with _server([], lambda r: httpx.Response(200, headers={"ETag": ETAG}, content=DATA)) as c:
        result = _download(c, dest)
    assert result["resumed_from"] == 0 and dest.read_bytes() == DATA


@pytest.mark.parametrize(
    "headers",
    [
        {"ETag": ETAG, "Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}"},  # other range
        {"ETag": '"' + "b" * 64 + '"', "Content-Range": f"bytes 7000-{len(DATA) - 1}/{len(DATA)}"},
        {"ETag": ETAG, "Content-Range": f"bytes 7000-{len(DATA) - 1}/{len(DATA) + 1}"},
        {"ETag": ETAG},  # no Content-Range
    ],
)
def test_a_206_of_another_range_or_version_is_not_appended(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    # A 206 that is not the asked-for rest of this version: its bytes were written from
    # offset 0 (another range) or appended to the old part (another ETag), a download
    # that could only end in a sha256 mismatch; now said as what it is, the part kept
    # only if it still may be resumed (never appended to).
    dest = _planted(tmp_path, DATA[:7000])
    part = beside(dest, PART)
    with _server([], lambda r: httpx.Response(206, headers=headers, content=DATA[7000:])) as c:
        with pytest.raises(ClientError) as e:
            _download(c, dest)
    assert e.value.code == "bad_response", e.value.message
    assert not dest.exists()
    assert not part.exists() or part.read_bytes() == DATA[:7000]


def test_a_416_with_a_part_that_does_not_match_leaves_no_file(tmp_path: Path) -> None:
    dest = _planted(tmp_path, EVIL[:-1])

    def always_416(request: httpx.Request) -> httpx.Response:
        return httpx.Response(416, headers={"Content-Range": f"bytes */{len(DATA)}"})

    with _server([], always_416) as client, pytest.raises(ClientError) as e:
        _download(client, dest)
    assert e.value.exit_code != 0
    assert not dest.exists()
    assert not beside(dest, PART).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs another uid to own the part")
def test_a_part_of_another_user_is_not_written_into(tmp_path: Path) -> None:
    # A regular file another user planted (writable to all: they can change it under us).
    dest = _planted(tmp_path, DATA[:7000])
    part = beside(dest, PART)
    os.chown(part, 12345, 12345)
    part.chmod(0o666)
    with _server([]) as client, pytest.raises(ClientError) as e:
        _download(client, dest)
    assert e.value.code == "unsafe_part" and "owned by" in e.value.message
    assert part.read_bytes() == DATA[:7000]
    assert not dest.exists()


@pytest.mark.parametrize("name", ["f.bin.part", "f.bin.part.json"])
def test_a_planted_fifo_neither_hangs_nor_is_used(tmp_path: Path, name: str) -> None:
    # Opening a FIFO to read waits for a writer: a `f.bin.part.json` FIFO held the
    # download for ever.
    dest = tmp_path / "f.bin"
    os.mkfifo(tmp_path / name)
    outcome: list[Any] = []

    def run() -> None:
        try:
            with _server([]) as client:
                outcome.append(_download(client, dest))
        except ClientError as e:
            outcome.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock it (a writer for the reader it waits on), then fail
        os.close(os.open(tmp_path / name, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(30)
        pytest.fail(f"{name} as a FIFO: the download waited on it")
    (got,) = outcome
    if name == "f.bin.part":
        assert isinstance(got, ClientError) and got.code == "unsafe_part"
        assert "not a regular file" in got.message
        assert not dest.exists()
    else:  # not a part.json to read: replaced by this run's own
        assert not isinstance(got, ClientError), got
        assert dest.read_bytes() == DATA
