"""`cairn download` against answers other than Cairn's plain 200 (bus/client/download.py):
a full GET answered 307 to a presigned S3 URL (CAIRN_S3_REDIRECT) is followed, without the
token, the bytes checked against Cairn's sha256 (S3's ETag is an MD5), through a part or
to a stream; a body longer than the file is not read to its end."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from bus.client import download
from bus.client.config import Target
from bus.client.errors import ClientError

FILE_ID = "e5bf2729-5a92-5477-93d7-4c8febdebc52"
DATA = bytes(range(256)) * 1000
META = {
    "id": FILE_ID,
    "name": "f.bin",
    "size": len(DATA),
    "sha256": hashlib.sha256(DATA).hexdigest(),
}
S3 = "http://s3.example/blobs/abc?X-Amz-Signature=sig"


def _client(seen: list[httpx.Request]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "cairn.example":
            assert request.url.path == f"/v1/files/{FILE_ID}/content"
            return httpx.Response(307, headers={"Location": S3, "Cache-Control": "no-store"})
        return httpx.Response(
            200, headers={"ETag": '"' + hashlib.md5(DATA).hexdigest() + '"'}, content=DATA
        )

    return httpx.Client(
        base_url="http://cairn.example",
        headers={"Authorization": "Bearer secret"},
        transport=httpx.MockTransport(handler),
    )


def test_a_redirect_to_s3_is_followed_without_the_token(tmp_path: Path) -> None:
    # The 307's empty body was written as the file: sha256 mismatch, exit 6, every time.
    seen: list[httpx.Request] = []
    dest = tmp_path / "f.bin"
    quiet = Console(file=io.StringIO())
    with _client(seen) as client:
        result = download.download(
            client,
            Target("http://cairn.example", "secret"),
            META,
            dest,
            limit_rate=None,
            console=quiet,
        )
    assert dest.read_bytes() == DATA and result["sha256"] == META["sha256"]
    assert [str(r.url) for r in seen] == [f"http://cairn.example/v1/files/{FILE_ID}/content", S3]
    assert seen[0].headers["Authorization"] == "Bearer secret"
    assert "Authorization" not in seen[1].headers  # the presigned URL is its own credential
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]

    seen.clear()  # `-o -`, a FIFO, a device: the same, to a stream
    with _client(seen) as client, (tmp_path / "stream").open("wb") as out:
        download.download_to(client, META, out, "-", limit_rate=None, console=quiet)
    assert (tmp_path / "stream").read_bytes() == DATA and "Authorization" not in seen[1].headers


def test_a_body_longer_than_the_file_is_cut_not_written_to_the_end(tmp_path: Path) -> None:
    # A hostile or broken server's body without a length, going on: it was written whole
    # (a disk filled), then refused. Now reading stops at the file's size.
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while sent < 64 * len(DATA):
            sent += 1 << 16
            yield b"\0" * (1 << 16)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    quiet = Console(file=io.StringIO())
    dest = tmp_path / "f.bin"
    with httpx.Client(base_url="http://cairn.example", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ClientError) as e:
            download.download(
                c, Target("http://cairn.example", None), META, dest, limit_rate=None, console=quiet
            )
        assert e.value.exit_code == 6
        assert list(tmp_path.iterdir()) == []  # nothing half-written, no part
        assert sent < 8 * len(DATA)
        sent = 0
        with (tmp_path / "stream").open("wb") as out, pytest.raises(ClientError) as e:
            download.download_to(c, META, out, "-", limit_rate=None, console=quiet)
        assert e.value.exit_code == 6
        assert (tmp_path / "stream").stat().st_size <= len(DATA) and sent < 8 * len(DATA)
