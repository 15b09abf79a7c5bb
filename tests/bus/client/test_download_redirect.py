"""`cairn download` from a Cairn with CAIRN_S3_REDIRECT (bus/client/download.py): a full
GET answered 307 to a presigned S3 URL is followed, without the token, and the bytes are
checked against Cairn's sha256 (S3's ETag is an MD5), through a part or to a stream."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
from rich.console import Console

from bus.client import download
from bus.client.config import Target

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
