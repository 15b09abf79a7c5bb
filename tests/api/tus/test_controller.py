"""tus 1.0 end to end: the protocol rule by rule over httpx (and a raw socket), then real
clients (tuspy, sync and async; tus-js-client under Node) including an upload killed
mid-way and resumed by a fresh process.

Most tests share one system (module scope) and keep apart by using their own user; the
`edge` API instance (same database and bus) trusts proxy headers and has a 2 s TTL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from api import running_digests
from api.tus import appender, pieces
from bus.actors.commandbus import CommandBus
from bus.blobs.factory import open_blob_store
from bus.kafka.clients import make_consumer
from domain.commands import AppendBytes, InitiateUpload
from domain.policies import completion_file_id
from tests.system import System, start_system, wait_until

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}
CLIENTS = Path(__file__).resolve().parents[2] / "tus_clients"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def edge(shared_system: System) -> AsyncIterator[System]:
    """A second API process of the shared system: behind a trusted proxy, 2 s upload TTL."""
    settings = dataclasses.replace(shared_system.settings, trust_proxy=True, upload_ttl=2.0)
    s = await start_system(settings, shared_system.pool, kinds=("api",))
    try:
        yield s
    finally:
        await s.shutdown()


def md(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


async def create(
    c: httpx.AsyncClient,
    length: int | None,
    *,
    metadata: str | None = None,
    body: bytes | None = None,
    **headers: str,
) -> str:
    """POST /v1/tus; return the upload's Location."""
    h = dict(OCTETS if body is not None else TUS)
    if length is None:
        h["Upload-Defer-Length"] = "1"
    else:
        h["Upload-Length"] = str(length)
    if metadata is not None:
        h["Upload-Metadata"] = metadata
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    r = await c.post("/v1/tus", headers=h, content=body)
    assert r.status_code == 201, r.text
    return r.headers["location"]


async def patch(
    c: httpx.AsyncClient, url: str, offset: int, data: bytes, **headers: str
) -> httpx.Response:
    h = {**OCTETS, "Upload-Offset": str(offset)}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return await c.patch(url, headers=h, content=data)


async def offset_of(c: httpx.AsyncClient, url: str) -> int:
    r = await c.head(url, headers=TUS)
    assert r.status_code == 200, r.status_code
    return int(r.headers["upload-offset"])


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


async def listed(c: httpx.AsyncClient, url: str, **expected: Any) -> dict[str, Any]:
    """The upload's row in the read model (GET /v1/uploads), once it shows `expected`."""

    async def row() -> dict[str, Any] | None:
        items = (await c.get("/v1/uploads", params={"limit": 1000})).json()["items"]
        found = next((u for u in items if u["id"] == upload_id(url)), None)
        ok = found is not None and all(found[k] == v for k, v in expected.items())
        return found if ok else None

    return await wait_until(row)


async def file_of(c: httpx.AsyncClient, url: str) -> tuple[dict[str, Any], bytes]:
    """The finished upload (native view) and its file's bytes."""
    up = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
    assert up["status"] == "COMPLETED" and up["file_id"], up
    r = await c.get(f"/v1/files/{up['file_id']}/content")
    assert r.status_code == 200, r.text
    return up, r.content


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


# ---- core --------------------------------------------------------------------------------


async def test_options_discovery(shared_system: System) -> None:
    async with shared_system.client(None) as c:  # discovery needs no credentials
        for path in ("/v1/tus", "/v1/tus/whatever"):
            r = await c.options(path)
            assert r.status_code == 204, r.text
            assert r.headers["tus-resumable"] == "1.0.0"
            assert r.headers["tus-version"] == "1.0.0"
            extensions = r.headers["tus-extension"].split(",")
            assert set(extensions) == {
                "creation",
                "creation-with-upload",
                "creation-defer-length",
                "expiration",
                "checksum",
                "checksum-trailer",
                "termination",
                "concatenation",
            }
            assert int(r.headers["tus-max-size"]) == pieces.max_size(shared_system.settings)
            # the documented maximum upload (CAIRN_MAX_UPLOAD_BYTES, 1 TiB by default)
            assert int(r.headers["tus-max-size"]) == shared_system.settings.max_upload_bytes
            assert shared_system.settings.max_upload_bytes == 1 << 40
            assert {"sha1", "sha256", "md5"} <= set(r.headers["tus-checksum-algorithm"].split(","))


async def test_version_auth_and_other_users(shared_system: System) -> None:
    async with shared_system.client("v-alice") as c, shared_system.client("v-bob") as bob:
        for hdrs in ({"Tus-Resumable": "0.2.2"}, {}):
            r = await c.post("/v1/tus", headers={**hdrs, "Upload-Length": "5"})
            assert r.status_code == 412
            assert r.headers["tus-version"] == "1.0.0" and r.headers["tus-resumable"] == "1.0.0"
            assert r.json()["error"]["code"] == "unsupported_tus_version"
        url = await create(c, 5)
        r = await c.head(url, headers={"Tus-Resumable": "2.0.0"})
        assert r.status_code == 412 and r.headers["tus-version"] == "1.0.0"
        async with shared_system.client(None) as anon:
            r = await anon.post("/v1/tus", headers={**TUS, "Upload-Length": "5"})
            assert r.status_code == 401 and r.headers["tus-resumable"] == "1.0.0"
            assert (await anon.head(url, headers=TUS)).status_code == 401
        # Someone else's upload is indistinguishable from one that does not exist.
        assert (await bob.head(url, headers=TUS)).status_code == 404
        assert (await patch(bob, url, 0, b"12345")).status_code == 404
        assert (await bob.delete(url, headers=TUS)).status_code == 404
        r = await bob.post(
            "/v1/tus", headers={**TUS, "Upload-Concat": f"final;{url}", "Upload-Length": "5"}
        )
        assert r.status_code == 400
        assert (await c.head("/v1/tus/not-a-uuid", headers=TUS)).status_code == 404
        assert await offset_of(c, url) == 0


async def test_create_head_patch_complete_and_download(shared_system: System) -> None:
    data = os.urandom(3 * MiB + 777)
    async with shared_system.client("core-alice") as c:
        meta = md(filename="notes ü.txt", filetype="text/plain", project="cairn") + ",empty"
        t0 = datetime.now(UTC)
        r = await c.post(
            "/v1/tus", headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta}
        )
        assert r.status_code == 201 and r.headers["tus-resumable"] == "1.0.0"
        url = r.headers["location"]
        assert url.startswith("/v1/tus/") and len(upload_id(url)) == 36
        expires = parsedate_to_datetime(r.headers["upload-expires"])
        assert abs(expires - (t0 + timedelta(days=1))) < timedelta(minutes=1)

        r = await c.head(url, headers=TUS)
        assert r.status_code == 200 and r.content == b""
        assert r.headers["upload-offset"] == "0"
        assert r.headers["upload-length"] == str(len(data))
        assert r.headers["cache-control"] == "no-store"
        assert "upload-defer-length" not in r.headers
        back = dict(item.partition(" ")[::2] for item in r.headers["upload-metadata"].split(","))
        assert base64.b64decode(back["filename"]).decode() == "notes ü.txt"
        assert back["empty"] == ""

        # Native view of the same upload, before any byte.
        up = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
        assert up["status"] == "INITIATED" and up["file_size"] == len(data)
        assert up["mode"] == "stream" and up["missing_chunks"] == []

        r = await patch(c, url, 0, data[: 2 * MiB + 5])
        assert r.status_code == 204, r.text
        assert r.headers["upload-offset"] == str(2 * MiB + 5) and "upload-expires" in r.headers
        assert await offset_of(c, url) == 2 * MiB + 5
        r = await patch(c, url, 2 * MiB + 5, data[2 * MiB + 5 :])
        assert r.status_code == 204 and r.headers["upload-offset"] == str(len(data))

        up, content = await file_of(c, url)
        assert content == data
        meta_file = (await c.get(f"/v1/files/{up['file_id']}")).json()
        assert meta_file["name"] == "notes ü.txt" and meta_file["content_type"] == "text/plain"
        assert meta_file["metadata"]["project"] == "cairn"
        assert meta_file["sha256"] == hashlib.sha256(data).hexdigest()
        r = await c.head(url, headers=TUS)
        assert r.headers["upload-offset"] == str(len(data)) and "upload-expires" not in r.headers
        # The read model catches up with the same numbers.
        row = await listed(c, url, status="COMPLETED")
        assert row["bytes_received"] == len(data) and row["mode"] == "stream"
        assert row["file_id"] == up["file_id"]


async def test_patch_refusals_change_nothing(shared_system: System) -> None:
    async with shared_system.client("refuse-alice") as c:
        url = await create(c, 10)
        r = await c.patch(
            url,
            headers={**TUS, "Content-Type": "application/octet-stream", "Upload-Offset": "0"},
            content=b"12345",
        )
        assert r.status_code == 415
        r = await patch(c, url, 3, b"12345")
        assert r.status_code == 409 and r.json()["error"]["details"]["expected_offset"] == 0
        assert (await patch(c, url, 0, b"x" * 11)).status_code == 413
        r = await c.patch(url, headers={**OCTETS}, content=b"1")
        assert r.status_code == 400  # no Upload-Offset
        assert await offset_of(c, url) == 0
        assert (await patch(c, url, 0, b"12345")).status_code == 204
        assert (await patch(c, url, 0, b"12345")).status_code == 409
        assert await offset_of(c, url) == 5
        # 413 on creation past the maximum size.
        r = await c.post(
            "/v1/tus",
            headers={**TUS, "Upload-Length": str(pieces.max_size(shared_system.settings) + 1)},
        )
        assert r.status_code == 413
        r = await c.post("/v1/tus", headers={**TUS})
        assert r.status_code == 400  # neither Upload-Length nor Upload-Defer-Length
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "-1"})
        assert r.status_code == 400
        for bad in (
            "a !!",
            "filename YQ==,filename Yg==",  # a key twice: tus wants them unique
            "k YQBi",  # a NUL in the value ("a\0b"): nothing could store it
            "ü YQ==".encode(),  # a key not ASCII: it was kept as "Ã¼" (its UTF-8 as Latin-1)
            "ключ YQ==".encode(),
        ):
            r = await c.post(
                "/v1/tus", headers={**TUS, "Upload-Length": "1", "Upload-Metadata": bad}
            )
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_metadata", bad


def test_pieces_grow_with_the_offset_so_the_manifest_reaches_the_maximum_upload() -> None:
    assert pieces.piece_at(0) == MiB and pieces.piece_at(2 * 1024 * MiB) == 2 * MiB
    sizes = [pieces.piece_at(i << 30) for i in range(0, 1100, 7)]
    assert sizes == sorted(sizes) and max(sizes) == pieces.MAX_PIECE == 64 * MiB
    full = pieces.pieces_between(0, 1 << 40)
    assert full <= pieces.MAX_PIECES * 3 // 4  # a quarter left for each PATCH's short tail
    assert pieces.reach(pieces.MAX_PIECES) >= 1 << 40
    # CAIRN_TUS_PIECE_BYTES raises the floor; the growth and the ceiling stay.
    assert pieces.piece_at(0, 8 * MiB) == 8 * MiB and pieces.piece_at(32 << 30, 8 * MiB) == 17 * MiB
    assert pieces.piece_at(1 << 40, 8 * MiB) == pieces.MAX_PIECE
    assert pieces.pieces_between(0, 1 << 30, 8 * MiB) == 128
    assert pieces.reach(pieces.MAX_PIECES, 8 * MiB) >= 1 << 40


async def test_pieces_per_upload_are_bounded(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest travels whole on the bus: tiny PATCHes cannot grow one without bound."""
    monkeypatch.setattr(pieces, "MAX_PIECES", 3)  # the API runs in this process
    async with shared_system.client("pieces-alice") as c:
        r = await c.options("/v1/tus")
        # three quarters of the pieces full-size (CAIRN_TUS_PIECE_BYTES at the start), the
        # rest for tails
        assert int(r.headers["tus-max-size"]) == 2 * shared_system.settings.tus_piece_bytes
        url = await create(c, 10)
        for i in range(3):
            assert (await patch(c, url, i, b"x")).status_code == 204
        r = await patch(c, url, 3, b"x")
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_pieces"
        assert await offset_of(c, url) == 3


async def test_completion_uses_the_digest_carried_through_the_patches(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes that came through this API process in order were hashed as they arrived:
    completion does not read the file back, and the file's sha256 is that of its bytes.
    When a PATCH went elsewhere (here: the carried state forgotten, as in another process),
    completion hashes the stored bytes as before."""
    import api.completion as completion

    rehashed: list[str] = []
    real = completion.hash_manifest

    async def counting(*args: Any, **kw: Any) -> str:
        digest = await real(*args, **kw)
        rehashed.append(digest)
        return digest

    monkeypatch.setattr(completion, "hash_manifest", counting)  # the API runs in this process
    piece = shared_system.settings.tus_piece_bytes
    data = os.urandom(2 * piece + 123)
    cuts = [0, 7, piece + 3, 2 * piece, len(data)]  # PATCHes ending mid-piece and on one
    async with shared_system.client("carry-alice") as c:
        url = await create(c, len(data))
        for a, b in itertools.pairwise(cuts):
            assert (await patch(c, url, a, data[a:b])).status_code == 204
        up, content = await file_of(c, url)
        meta = (await c.get(f"/v1/files/{up['file_id']}")).json()
        assert content == data and meta["sha256"] == hashlib.sha256(data).hexdigest()
        assert rehashed == []

        other = os.urandom(piece + 5)
        url = await create(c, len(other))
        assert (await patch(c, url, 0, other[:100])).status_code == 204
        # The next PATCH as if on another process:
        running_digests.RUNNING_DIGESTS.pop(upload_id(url))
        assert (await patch(c, url, 100, other[100:])).status_code == 204
        up, content = await file_of(c, url)
        meta = (await c.get(f"/v1/files/{up['file_id']}")).json()
        assert content == other and meta["sha256"] == hashlib.sha256(other).hexdigest()
        assert rehashed == [meta["sha256"]]


async def test_a_piece_is_hashed_and_written_while_the_previous_is_made_durable(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One PATCH of three pieces against a store whose commits (fsync, rename, directory
    fsync) are slow: each next piece's put opens its file before the previous piece is
    durable, never more than MAX_STORING commits run at once, and the pieces still join
    the upload in body order, with the checksum and the running digest exact."""
    from bus.blobs.local import LocalBlobStore

    events: list[tuple[str, int]] = []  # ("open" | "commit-start" | "commit-end", count)
    committing = 0
    most = 0
    lock = threading.Lock()  # the store's commits run in its threads
    real_open, real_commit = LocalBlobStore._open_tmp, LocalBlobStore._commit

    def opening(self: LocalBlobStore) -> Any:
        with lock:
            events.append(("open", committing))
        return real_open(self)

    def commit(self: LocalBlobStore, *args: Any) -> Any:
        nonlocal committing, most
        with lock:
            committing += 1
            most = max(most, committing)
            events.append(("commit-start", committing))
        time.sleep(0.3)  # a slow disk: the next piece must not wait for this
        try:
            return real_commit(self, *args)
        finally:
            with lock:
                committing -= 1
                events.append(("commit-end", committing))

    monkeypatch.setattr(LocalBlobStore, "_open_tmp", opening)  # the API runs in this process
    monkeypatch.setattr(LocalBlobStore, "_commit", commit)
    piece = shared_system.settings.tus_piece_bytes
    assert piece > 256 * 1024  # each piece a streamed put (bus/blobs/local.py SMALL_PUT)
    data = os.urandom(3 * piece)
    async with shared_system.client("overlap-alice") as c:
        url = await create(c, len(data))
        r = await patch(c, url, 0, data, Upload_Checksum=checksum("sha256", data))
        assert r.status_code == 204 and r.headers["upload-offset"] == str(len(data))
        up, content = await file_of(c, url)
        meta = (await c.get(f"/v1/files/{up['file_id']}")).json()
    assert content == data and meta["sha256"] == hashlib.sha256(data).hexdigest()
    opens = [n for kind, n in events if kind == "open"]
    assert len(opens) == 3 and opens[0] == 0
    assert max(opens[1:]) >= 1, f"every piece waited for the previous one's commit: {events}"
    assert most <= appender.MAX_STORING


async def test_checksums(shared_system: System) -> None:
    data = os.urandom(2 * MiB + 100)
    async with shared_system.client("sum-alice") as c:
        url = await create(c, len(data))
        bad = f"sha256 {base64.b64encode(hashlib.sha256(b'other').digest()).decode()}"
        r = await patch(c, url, 0, data[:MiB], Upload_Checksum=bad)
        assert r.status_code == 460 and r.json()["error"]["code"] == "checksum_mismatch"
        assert await offset_of(c, url) == 0  # the PATCH's bytes were discarded
        r = await patch(c, url, 0, data[:10], Upload_Checksum="crc32 AAAAAA==")
        assert r.status_code == 400
        r = await patch(c, url, 0, data[:10], Upload_Checksum="sha1 not-base64!")
        assert r.status_code == 400
        assert await offset_of(c, url) == 0
        # A multi-piece body verified as a whole, then one in md5, then sha1.
        first = data[: MiB + MiB // 2]
        r = await patch(c, url, 0, first, Upload_Checksum=checksum("sha256", first))
        assert r.status_code == 204 and r.headers["upload-offset"] == str(len(first))
        second = data[len(first) : len(first) + 1000]
        r = await patch(c, url, len(first), second, Upload_Checksum=checksum("md5", second))
        assert r.status_code == 204
        rest = data[len(first) + 1000 :]
        r = await patch(c, url, len(first) + 1000, rest, Upload_Checksum=checksum("sha1", rest))
        assert r.status_code == 204
        _, content = await file_of(c, url)
        assert content == data


async def _chunked_patch_with_trailer(
    system: System, url: str, offset: int, data: bytes, trailer: str | None
) -> int:
    """A raw HTTP/1.1 PATCH with a chunked body and (optionally) an Upload-Checksum trailer:
    httpx cannot send trailers."""
    s = system.settings
    reader, writer = await asyncio.open_connection(s.host, s.port)
    try:
        head = (
            f"PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {system.token('trail')}\r\n"
            "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: {offset}\r\nTransfer-Encoding: chunked\r\nTrailer: Upload-Checksum\r\n\r\n"
        )
        body = b"".join(
            b"%x\r\n" % len(data[i : i + 1000]) + data[i : i + 1000] + b"\r\n"
            for i in range(0, len(data), 1000)
        )
        end = b"0\r\n" + (f"Upload-Checksum: {trailer}\r\n".encode() if trailer else b"") + b"\r\n"
        writer.write(head.encode() + body + end)
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_checksum_trailer(shared_system: System) -> None:
    data = os.urandom(5000)
    async with shared_system.client("trail") as c:
        url = await create(c, len(data))
        path = "/" + url.split("/", 3)[3] if url.startswith("http") else url
        # a wrong digest in the trailer: 460, nothing kept
        status = await _chunked_patch_with_trailer(
            shared_system, path, 0, data[:3000], checksum("sha1", b"other")
        )
        assert status == 460
        assert await offset_of(c, url) == 0
        # announced but never sent: refused, nothing kept
        assert await _chunked_patch_with_trailer(shared_system, path, 0, data[:3000], None) == 400
        assert await offset_of(c, url) == 0
        # the right digest: appended
        assert (
            await _chunked_patch_with_trailer(
                shared_system, path, 0, data[:3000], checksum("sha256", data[:3000])
            )
            == 204
        )
        assert await offset_of(c, url) == 3000
        assert (
            await _chunked_patch_with_trailer(
                shared_system, path, 3000, data[3000:], checksum("md5", data[3000:])
            )
            == 204
        )
        _, body = await file_of(c, url)
        assert body == data


async def test_length_zero_completes_at_once(shared_system: System) -> None:
    async with shared_system.client("zero-alice") as c:
        url = await create(c, 0, metadata=md(filename="empty.txt"))
        r = await c.head(url, headers=TUS)
        assert r.headers["upload-offset"] == "0" and r.headers["upload-length"] == "0"
        up, content = await file_of(c, url)
        assert content == b""
        f = (await c.get(f"/v1/files/{up['file_id']}")).json()
        assert f["size"] == 0 and f["name"] == "empty.txt"


async def test_creation_with_upload(shared_system: System) -> None:
    data = os.urandom(MiB + 4321)
    async with shared_system.client("cwu-alice") as c:
        # The whole file in the creation request: complete at once.
        r = await c.post(
            "/v1/tus",
            headers={**OCTETS, "Upload-Length": str(len(data))},
            content=data,
        )
        assert r.status_code == 201 and r.headers["upload-offset"] == str(len(data))
        _, content = await file_of(c, r.headers["location"])
        assert content == data
        # Part of it, with a checksum; the rest by PATCH.
        head_part = data[:5000]
        url = await create(
            c, len(data), body=head_part, Upload_Checksum=checksum("sha1", head_part)
        )
        assert await offset_of(c, url) == 5000
        assert (await patch(c, url, 5000, data[5000:])).status_code == 204
        _, content = await file_of(c, url)
        assert content == data
        # A wrong checksum on creation: 460, the upload exists (Location) with nothing in it.
        r = await c.post(
            "/v1/tus",
            headers={
                **OCTETS,
                "Upload-Length": str(len(data)),
                "Upload-Checksum": checksum("sha1", b"nope"),
            },
            content=head_part,
        )
        assert r.status_code == 460 and await offset_of(c, r.headers["location"]) == 0


async def test_a_creation_body_past_its_length_creates_nothing(shared_system: System) -> None:
    """Content-Length past Upload-Length is known before anything is created: 413, and no
    upload left behind (one of length 0 was even completed into an empty file)."""
    async with shared_system.client("past-alice") as c:
        for length, body in ((0, b"abc"), (2, b"abc"), (MiB, os.urandom(MiB + 1))):
            r = await c.post(
                "/v1/tus", headers={**OCTETS, "Upload-Length": str(length)}, content=body
            )
            assert r.status_code == 413 and r.json()["error"]["code"] == "length_exceeded"
            assert "location" not in r.headers
        created = await shared_system.pool.fetchval(
            "SELECT count(*) FROM eventstore.events"
            " WHERE event_type = 'UploadInitiated' AND owner = 'past-alice'"
        )
        assert created == 0


async def test_deferred_length(shared_system: System) -> None:
    data = os.urandom(MiB + 10)
    async with shared_system.client("defer-alice") as c:
        url = await create(c, None, metadata=md(filename="later.bin"))
        r = await c.head(url, headers=TUS)
        assert r.headers["upload-defer-length"] == "1" and "upload-length" not in r.headers
        up = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
        assert up["file_size"] is None and up["eta_seconds"] is None
        assert (await patch(c, url, 0, data[:MiB])).status_code == 204
        # tus-js-client's way: the length with the last bytes...
        row = await listed(c, url, bytes_received=MiB)
        assert row["file_size"] is None and row["progress"] == 0.0
        r = await patch(c, url, MiB, data[MiB:], Upload_Length=str(len(data)))
        assert r.status_code == 204
        _, content = await file_of(c, url)
        assert content == data
        row = await listed(c, url, status="COMPLETED")
        assert row["file_size"] == row["bytes_received"] == len(data) and row["progress"] == 100.0
        # ...or in an empty PATCH of its own, once everything has been sent.
        url = await create(c, None)
        assert (await patch(c, url, 0, data)).status_code == 204
        assert (
            await patch(c, url, len(data), b"", Upload_Length=str(len(data) + 1))
        ).status_code == 204
        assert (
            await patch(c, url, len(data), b"!", Upload_Length=str(len(data) + 1))
        ).status_code == 204
        _, content = await file_of(c, url)
        assert content == data + b"!"


async def test_a_length_declared_with_a_body_past_it_is_refused_unchanged(
    shared_system: System,
) -> None:
    """Upload-Length in a PATCH whose Content-Length goes past it: 413 before the length is
    declared, so the client can still send the length it meant (it was declared, and the
    upload stuck at it)."""
    async with shared_system.client("declare-alice") as c:
        url = await create(c, None)
        assert (await patch(c, url, 0, b"12345")).status_code == 204
        r = await patch(c, url, 5, b"67890", Upload_Length="7")
        assert r.status_code == 413 and r.json()["error"]["code"] == "length_exceeded"
        r = await patch(c, url, 5, b"67890", Upload_Length="4")  # short of the offset
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_file_size"
        r = await c.head(url, headers=TUS)
        assert r.headers["upload-defer-length"] == "1" and r.headers["upload-offset"] == "5"
        assert (await patch(c, url, 5, b"67890", Upload_Length="10")).status_code == 204
        _, content = await file_of(c, url)
        assert content == b"1234567890"


async def test_termination_and_method_override(shared_system: System) -> None:
    async with shared_system.client("term-alice") as c:
        url = await create(c, 10)
        ov = {**OCTETS, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}
        r = await c.post(url, headers=ov, content=b"hello")
        assert r.status_code == 204 and r.headers["upload-offset"] == "5"
        r = await c.post(url, headers={**TUS, "X-HTTP-Method-Override": "HEAD"})
        assert r.status_code == 200 and r.headers["upload-offset"] == "5"
        r = await c.post(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
        assert r.status_code == 204
        assert (await c.head(url, headers=TUS)).status_code == 404
        assert (await patch(c, url, 5, b"world")).status_code == 404
        assert (await c.delete(url, headers=TUS)).status_code == 404
        url = await create(c, 10)
        assert (await c.delete(url, headers=TUS)).status_code == 204
        assert (await c.get(f"/v1/uploads/{upload_id(url)}")).json()["status"] == "ABORTED"


async def test_concatenation(shared_system: System) -> None:
    a, b = os.urandom(MiB + 3), os.urandom(2000)
    async with shared_system.client("cat-alice") as c, shared_system.client("cat-bob") as bob:
        pa = await create(c, len(a), Upload_Concat="partial")
        pb = await create(c, len(b), Upload_Concat="partial")
        r = await c.head(pa, headers=TUS)
        assert r.headers["upload-concat"] == "partial"
        assert (await patch(c, pa, 0, a)).status_code == 204
        # An unfinished part cannot be concatenated.
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Concat": f"final;{pa} {pb}"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "concat_part_unfinished"
        assert (await patch(c, pb, 0, b)).status_code == 204
        # A full partial is never a file by itself: finished, with no file of its own.
        up = (await c.get(f"/v1/uploads/{upload_id(pb)}")).json()
        assert up["status"] == "PARTIAL_COMPLETE" and up["file_id"] is None and up["partial"]
        # Not someone else's parts.
        r = await bob.post("/v1/tus", headers={**TUS, "Upload-Concat": f"final;{pa} {pb}"})
        assert r.status_code == 400
        absolute = f"{shared_system.url}{pb}"  # clients may send absolute URLs
        r = await c.post(
            "/v1/tus",
            headers={
                **TUS,
                "Upload-Concat": f"final;{pa} {absolute}",
                "Upload-Metadata": md(filename="joined.bin"),
            },
        )
        assert r.status_code == 201, r.text
        final = r.headers["location"]
        r = await c.head(final, headers=TUS)
        assert r.headers["upload-offset"] == r.headers["upload-length"] == str(len(a) + len(b))
        assert r.headers["upload-concat"] == f"final;{pa} {pb}"
        assert (await patch(c, final, len(a) + len(b), b"x")).status_code == 403
        up, content = await file_of(c, final)
        assert content == a + b and up["mode"] == "final"
        row = await listed(c, final, status="COMPLETED")
        assert row["bytes_received"] == len(a) + len(b) and row["mode"] == "final"
        assert (await listed(c, pa, bytes_received=len(a)))["partial"] is True
        f = (await c.get(f"/v1/files/{up['file_id']}")).json()
        assert f["name"] == "joined.bin" and f["size"] == len(a) + len(b)
        # The same parts may make another final upload: no bytes move either way.
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Concat": f"final;{pb} {pb} {pa}"})
        assert r.status_code == 201
        _, content = await file_of(c, r.headers["location"])
        assert content == b + b + a
        for garbage in ("final;/v1/files/x", f"final;http://[::1{pa}", f"final;http://[zz]{pa}"):
            r = await c.post("/v1/tus", headers={**TUS, "Upload-Concat": garbage})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_concat", garbage


async def test_proxy_headers(shared_system: System, edge: System) -> None:
    spoof = {
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "Forwarded": 'proto=https;host="evil.example"',
    }
    async with shared_system.client("proxy-alice") as c:
        url = await create(c, 1, **{k.replace("-", "_"): v for k, v in spoof.items()})
        assert url.startswith("/v1/tus/")  # nothing the client sent ends up in it
    async with edge.client("proxy-alice") as c:
        # Behind the edge (which trusts its proxy): the forwarded host and scheme, RFC 7239
        # `Forwarded` over the X- headers, and the edge's own URL when none is sent or the
        # host is not a host.
        for forwarded, base in (
            (
                {"X-Forwarded-Host": "files.example.com", "X-Forwarded-Proto": "https"},
                "https://files.example.com",
            ),
            (
                {
                    "X-Forwarded-Host": "ignored.example",
                    "Forwarded": 'for=10.0.0.1;proto=https;host="cdn.example:8443", for=10.0.0.2',
                },
                "https://cdn.example:8443",
            ),
            ({}, edge.url),
            ({"X-Forwarded-Host": "bad host\\x"}, edge.url),
        ):
            r = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "1", **forwarded})
            assert r.headers["location"].startswith(f"{base}/v1/tus/"), (forwarded, r.headers)


async def test_expiration(shared_system: System, edge: System) -> None:
    async with shared_system.client("exp-alice") as c, edge.client("exp-alice") as short:
        url = await create(c, 10)
        assert (await patch(c, url, 0, b"12345")).status_code == 204

        async def gone() -> bool:
            return (await short.head(url, headers=TUS)).status_code == 410

        await wait_until(gone, timeout=15, interval=0.2)
        # Expired for good, whatever the TTL of the API instance asked next.
        assert (await c.head(url, headers=TUS)).status_code == 410
        assert (await patch(c, url, 5, b"67890")).status_code == 410
        up = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
        assert up["status"] == "EXPIRED"


async def test_every_state_change_is_an_event(shared_system: System) -> None:
    s = shared_system.settings
    async with shared_system.client("ev-alice") as c:
        done = await create(c, 6, Upload_Concat="partial")
        assert (await patch(c, done, 0, b"abc")).status_code == 204
        assert (await patch(c, done, 3, b"def")).status_code == 204
        final = await create(c, None, Upload_Concat=f"final;{done}")
        gone = await create(c, None)
        assert (await c.delete(gone, headers=TUS)).status_code == 204
    ids = {upload_id(u) for u in (done, final, gone)}
    consumer = make_consumer(s, s.topic("uploads"), group_id=None)
    await consumer.start()
    seen: list[dict[str, Any]] = []
    try:

        async def got_all() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                seen.extend(orjson.loads(r.value) for r in recs if r.key.decode() in ids)
            return {e["type"] for e in seen} >= {
                "UploadInitiated",
                "UploadBytesAppended",
                "UploadCompleted",
                "UploadAborted",
            }

        await wait_until(got_all)
    finally:
        await consumer.stop()
    by = {i: [e for e in seen if e["stream_id"] == f"upload-{i}"] for i in ids}
    appended = [e["data"] for e in by[upload_id(done)] if e["type"] == "UploadBytesAppended"]
    assert [(d["offset"], d["size"]) for d in appended] == [(0, 3), (3, 3)]
    assert [e["type"] for e in by[upload_id(final)]] == ["UploadInitiated", "UploadCompleted"]
    assert [e["type"] for e in by[upload_id(gone)]] == ["UploadInitiated", "UploadAborted"]


# ---- interruptions and races ------------------------------------------------------------


async def raw_patch_cut_off(system: System, token: str, url: str, body: bytes, length: int) -> None:
    """PATCH by hand: headers announcing `length` bytes, then `body` (shorter), then EOF."""
    reader, writer = await asyncio.open_connection(system.settings.host, system.settings.port)
    head = (
        f"PATCH {url} HTTP/1.1\r\nHost: {system.settings.host}\r\n"
        f"Authorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    writer.write(head.encode())
    writer.write(body)
    await writer.drain()
    # Half-close: everything written arrives, then the server sees the body end early.
    writer.write_eof()
    await reader.read()  # the server hangs up
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def resume(c: httpx.AsyncClient, url: str, data: bytes) -> None:
    """What a tus client does: ask the offset, send the rest; again on a 409."""
    for _ in range(20):
        offset = await offset_of(c, url)
        r = await patch(c, url, offset, data[offset:])
        if r.status_code == 204:
            return
        assert r.status_code == 409, r.text
    raise AssertionError("never resumed")


async def test_patch_cut_off_keeps_durable_bytes(shared_system: System) -> None:
    n = 3
    data = os.urandom(8 * MiB)
    sent = n * MiB + 512 * 1024
    async with shared_system.client("cut-alice") as c:
        url = await create(c, len(data))
        await raw_patch_cut_off(
            shared_system, shared_system.token("cut-alice"), url, data[:sent], len(data)
        )

        async def kept() -> int:
            return await offset_of(c, url) >= n * MiB

        await wait_until(kept, timeout=20)
        # Never more than what was sent (uvicorn may drop what it had buffered at the EOF).
        assert n * MiB <= await offset_of(c, url) <= sent
        await resume(c, url, data)
        _, content = await file_of(c, url)
        assert content == data


async def test_racing_patches_one_wins(shared_system: System) -> None:
    length = 3 * MiB
    bodies = [os.urandom(length), os.urandom(length)]
    async with shared_system.client("race-alice") as c:
        url = await create(c, length)
        results = await asyncio.gather(*(patch(c, url, 0, b) for b in bodies))
        statuses = [r.status_code for r in results]
        assert sorted(statuses) == [204, 409], [r.text for r in results]
        winner = bodies[statuses.index(204)]
        _, content = await file_of(c, url)
        assert content == winner  # never interleaved


# ---- real clients -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_clients() -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed: the tus-js-client tests need them")
    if not (CLIENTS / "node_modules" / "tus-js-client").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, check=True, timeout=300
        )
    return CLIENTS


def tusclient() -> Any:
    return pytest.importorskip("tusclient.client", reason="tuspy (a dev dependency) is missing")


async def test_tuspy_sync_and_async(shared_system: System, tmp_path: Path) -> None:
    tus = tusclient()
    from tusclient.uploader import AsyncUploader

    class Sha256Uploader(AsyncUploader):  # type: ignore[misc]
        CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)

    data = os.urandom(3 * MiB + 99)
    path = tmp_path / "tuspy.bin"
    path.write_bytes(data)
    endpoint = f"{shared_system.url}/v1/tus"
    token = shared_system.token("tuspy-alice")
    client = tus.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})

    def sync_upload() -> str:
        up = client.uploader(
            str(path), chunk_size=MiB, metadata={"filename": "sync.bin"}, upload_checksum=True
        )
        up.upload()
        return str(up.url)

    url = await asyncio.to_thread(sync_upload)  # requests blocks: not on the server's loop
    async with shared_system.client("tuspy-alice") as c:
        _, content = await file_of(c, url)
        assert content == data
        up = Sha256Uploader(
            str(path),
            client=client,
            chunk_size=2 * MiB,
            metadata={"filename": "async.bin"},
            upload_checksum=True,
        )
        await up.upload()
        _, content = await file_of(c, str(up.url))
        assert content == data


LINGER = 10.0  # seconds a tus-js-client that reported success may take to exit


async def run_node(node: Path, opts: dict[str, Any], timeout: float = 60) -> list[dict[str, Any]]:
    """Run tests/tus_clients/upload.mjs to its end; its stdout events, the last a success.

    Output is kept as it arrives, so that a client still running at the timeout is killed
    and the failure shows what it printed and its request trace (stderr): where it hung.
    A client that reported success but lingers (Node's own shutdown, after the last
    response) is given LINGER seconds, then killed: the callers check the server's file."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(node / "upload.mjs"),
        json.dumps(opts),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out: list[bytes] = []
    err: list[bytes] = []
    reported = asyncio.Event()

    async def collect(stream: asyncio.StreamReader | None, into: list[bytes]) -> None:
        assert stream is not None
        while line := await stream.readline():
            into.append(line)
            if into is out and line.strip() and json.loads(line)["event"] in ("success", "error"):
                reported.set()

    readers = asyncio.gather(collect(proc.stdout, out), collect(proc.stderr, err))
    said, exited = asyncio.ensure_future(reported.wait()), asyncio.ensure_future(proc.wait())
    # Until the client reports its end or exits (a crash says nothing), at most `timeout`.
    await asyncio.wait({said, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    said.cancel()
    if not exited.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), LINGER if reported.is_set() else 0)
    if not exited.done():
        proc.kill()
        await exited
        await readers
        if not reported.is_set():
            raise AssertionError(
                f"tus-js-client still running after {timeout} s; stdout: "
                f"{b''.join(out).decode()!r}; trace: {b''.join(err).decode()!r}"
            )
        warnings.warn(
            f"tus-js-client lingered {LINGER} s after its last event; killed", stacklevel=1
        )
    await readers
    lines = [json.loads(x) for x in out if x.strip()]
    assert lines and lines[-1]["event"] == "success", (lines, err)
    assert proc.returncode in (0, -signal.SIGKILL), (proc.returncode, lines, err)
    return lines


async def test_tus_js_client(shared_system: System, node_clients: Path, tmp_path: Path) -> None:
    data = os.urandom(5 * MiB + 12345)
    path = tmp_path / "js.bin"
    path.write_bytes(data)
    base = {
        "endpoint": f"{shared_system.url}/v1/tus",
        "token": shared_system.token("js-alice"),
        "file": str(path),
        "metadata": {"filename": "js.bin", "filetype": "application/x-test"},
    }
    runs = [
        {"chunkSize": MiB},
        {"uploadDataDuringCreation": True, "chunkSize": 2 * MiB},
        {"parallelUploads": 3},
        {"deferred": True, "chunkSize": 2 * MiB, "overridePatchMethod": True},
    ]
    results = await asyncio.gather(*(run_node(node_clients, {**base, **r}) for r in runs))
    async with shared_system.client("js-alice") as c:
        for lines in results:
            up, content = await file_of(c, lines[-1]["url"])
            assert content == data
            f = (await c.get(f"/v1/files/{up['file_id']}")).json()
            assert f["name"] == "js.bin" and f["content_type"] == "application/x-test"
        parallel = (await c.get(f"/v1/uploads/{upload_id(results[2][-1]['url'])}")).json()
        assert parallel["mode"] == "final"


async def read_events_until(
    proc: asyncio.subprocess.Process, event: str, timeout: float = 30
) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    end = time.monotonic() + timeout
    while not lines or lines[-1]["event"] != event:
        raw = await asyncio.wait_for(proc.stdout.readline(), max(end - time.monotonic(), 0.1))
        assert raw, f"the client ended before {event!r}: {lines}"
        lines.append(json.loads(raw))
        assert lines[-1]["event"] not in ("error", "success") or event == lines[-1]["event"], lines
    return lines


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def test_killed_node_client_resumed_by_a_fresh_one(
    shared_system: System, node_clients: Path, tmp_path: Path
) -> None:
    data = os.urandom(6 * MiB + 5)
    path = tmp_path / "resume.bin"
    path.write_bytes(data)
    opts = {
        "endpoint": f"{shared_system.url}/v1/tus",
        "token": shared_system.token("kill-alice"),
        "file": str(path),
        "chunkSize": 2 * MiB,
        "storage": str(tmp_path / "tus-urls.json"),
        "metadata": {"filename": "resume.bin"},
    }
    # 1.5 MiB into its second PATCH (of 2 MiB) the client goes silent, and is killed.
    first = await asyncio.create_subprocess_exec(
        "node",
        str(node_clients / "upload.mjs"),
        json.dumps({**opts, "stallAt": 3 * MiB + MiB // 2}),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        lines = await read_events_until(first, "stalled")
    finally:
        await kill(first)
    url = next(x["url"] for x in lines if x["event"] == "url")
    async with shared_system.client("kill-alice") as c:
        assert await offset_of(c, url) >= 2 * MiB  # the first PATCH, at least
        lines = await run_node(node_clients, opts)
        assert lines[0] == {"event": "resuming", "url": url}  # found by fingerprint
        assert lines[-1]["url"] == url
        _, content = await file_of(c, url)
        assert content == data


async def test_killed_tuspy_client_resumed_by_a_fresh_one(
    shared_system: System, tmp_path: Path
) -> None:
    tusclient()
    data = os.urandom(4 * MiB + 1)
    path = tmp_path / "py.bin"
    path.write_bytes(data)
    opts = {
        "endpoint": f"{shared_system.url}/v1/tus",
        "token": shared_system.token("pykill-alice"),
        "file": str(path),
        "chunk_size": MiB,
        "storage": str(tmp_path / "tuspy-urls.json"),
    }
    script = str(CLIENTS / "tuspy_upload.py")
    first = await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        json.dumps({**opts, "pause_after_chunks": 2}),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        lines = await read_events_until(first, "paused")
    finally:
        await kill(first)
    url = lines[-1]["url"]
    assert lines[-1]["offset"] == 2 * MiB
    second = await asyncio.create_subprocess_exec(
        sys.executable, script, json.dumps(opts), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(second.communicate(), 60)
    lines = [json.loads(x) for x in out.decode().splitlines()]
    assert lines[0] == {"event": "start", "url": url, "offset": 2 * MiB}  # resumed, not anew
    assert lines[-1]["event"] == "success" and second.returncode == 0
    async with shared_system.client("pykill-alice") as c:
        _, content = await file_of(c, url)
        assert content == data


# ---- the handler finishes what a crashed API left --------------------------------------


async def test_handler_completes_uploads_the_api_left_full(shared_system: System) -> None:
    """The API "dies" right after appending the last bytes (or after initiating a final
    upload), before completing: the files handler completes the upload from its events."""
    s = shared_system.settings
    blobs = open_blob_store(s.blobs_url, s)
    bus = CommandBus(s)
    await bus.start()

    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    try:
        async with shared_system.client("crash-alice") as c:
            data = os.urandom(1000)
            url = await create(c, len(data))
            digest, size = await blobs.put_stream(one(data))
            await bus.send(
                AppendBytes(
                    aggregate_id=upload_id(url),
                    caller="crash-alice",
                    at=datetime.now(UTC),
                    offset=0,
                    pieces=[{"sha256": digest, "size": size}],
                )
            )
            part = await create(c, len(data), Upload_Concat="partial")
            assert (await patch(c, part, 0, data)).status_code == 204
            final_id = str(uuid.uuid4())
            await bus.send(
                InitiateUpload(
                    aggregate_id=final_id,
                    caller="crash-alice",
                    at=datetime.now(UTC),
                    file_name="final.bin",
                    file_size=2 * size,
                    chunk_size=MiB,
                    mode="final",
                    parts=[upload_id(part), upload_id(part)],
                    manifest=[{"sha256": digest, "size": size}] * 2,
                )
            )
            for uid, expected in ((upload_id(url), data), (final_id, data + data)):

                async def finished(uid: str = uid) -> dict[str, Any] | None:
                    up = (await c.get(f"/v1/uploads/{uid}")).json()
                    return up if up["status"] == "COMPLETED" else None

                up = await wait_until(finished)
                # The handler's doing: no API call completed it.
                assert up["file_id"] == completion_file_id(uid)

                async def content(up: dict[str, Any] = up) -> bytes | None:
                    r = await c.get(f"/v1/files/{up['file_id']}/content")
                    return r.content if r.status_code == 200 else None

                assert await wait_until(content) == expected
    finally:
        await bus.stop()


async def test_cors_preflight_and_exposed_tus_headers(shared_system: System) -> None:
    """Browser clients (tus-js-client, Uppy) need the preflight answered and the tus
    headers exposed, or they cannot read Location and Upload-Offset."""
    async with shared_system.client(None) as anon, shared_system.client("browser") as c:
        r = await anon.options(
            "/v1/tus",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "tus-resumable,upload-length,authorization",
            },
        )
        assert r.status_code in (200, 204)
        assert r.headers["access-control-allow-origin"] in ("*", "https://app.example")
        url = await create(c, 3)
        r = await c.head(url, headers={**TUS, "Origin": "https://app.example"})
        exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
        assert {"upload-offset", "upload-length", "location", "tus-resumable"} <= exposed
