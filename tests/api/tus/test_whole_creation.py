"""tus creation-with-upload of a whole small file (issue 13): one command creates the
upload with its bytes and completes it (then the file follows), instead of initiate,
append and complete one after another. What a client sees is unchanged (tests/api/
test_controller.py); here: that it really is one decision, and that whatever cuts it short still
leaves the upload a resumable client expects."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Any

import pytest

import api.completion as completion
from api.context import AppContext
from bus.store.eventstore import PostgresEventStore
from tests.system import System, wait_until

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


async def test_a_small_file_is_one_command(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    rehashed: list[str] = []
    real = completion.hash_manifest

    async def counting(*args: Any, **kw: Any) -> str:
        rehashed.append(digest := await real(*args, **kw))
        return digest

    monkeypatch.setattr(completion, "hash_manifest", counting)  # the API runs in this process
    sent = sent_by_the_api(monkeypatch)
    data = os.urandom(4096)
    async with shared_system.client("whole-alice") as c:
        r = await c.post(
            "/v1/tus",
            headers={
                **OCTETS,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": "filename YS5iaW4=",
            },
            content=data,
        )
        assert r.status_code == 201, r.text
        assert r.headers["upload-offset"] == str(len(data))
        url = r.headers["location"]
        up = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
        assert up["status"] == "COMPLETED" and up["file_id"]
        meta = (await c.get(f"/v1/files/{up['file_id']}")).json()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["name"] == "a.bin"
        assert (await c.get(f"/v1/files/{up['file_id']}/content")).content == data
    assert rehashed == []  # the digest was taken as the bytes arrived
    # The file followed in the actor's same step (domain.policies.follow_ups): the API sent
    # one command in all.
    assert sent == ["InitiateUpload"]
    events = await PostgresEventStore(shared_system.pool).read_stream(f"upload-{upload_id(url)}")
    assert [e.type for e in events] == ["UploadInitiated", "UploadBytesAppended", "UploadCompleted"]
    # All three from one command: one causation.
    assert len({e.causation_id for e in events}) == 1


def sent_by_the_api(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The types of the commands the API sends from now on (it runs in this process)."""
    sent: list[str] = []
    real = AppContext.send

    async def recording(self: AppContext, request: Any, cmd: Any) -> Any:
        sent.append(cmd.type)
        return await real(self, request, cmd)

    monkeypatch.setattr(AppContext, "send", recording)
    return sent


async def test_the_file_takes_the_type_its_bytes_show_and_follows_a_tus_completion(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = sent_by_the_api(monkeypatch)
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
    async with shared_system.client("whole-png") as c:
        # Created empty, then two PATCHes: the last completes it, and the file follows.
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Length": str(len(png))})
        assert r.status_code == 201, r.text
        url = r.headers["location"]
        for offset in (0, 1000):
            end = len(png) if offset else 1000
            r = await c.patch(
                url, headers={**OCTETS, "Upload-Offset": str(offset)}, content=png[offset:end]
            )
            assert r.status_code == 204, r.text
        up = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
        meta = (await c.get(f"/v1/files/{up['file_id']}")).json()
        assert meta["content_type"] == "image/png" and meta["size"] == len(png)
        assert sent == ["InitiateUpload", "AppendBytes", "AppendBytes", "CompleteUpload"]
        # A small whole file the same way, in its creation request.
        sent.clear()
        r = await c.post("/v1/tus", headers={**OCTETS, "Upload-Length": str(len(png))}, content=png)
        assert r.status_code == 201, r.text
        up = (await c.get(f"/v1/uploads/{upload_id(r.headers['location'])}")).json()
        assert (await c.get(f"/v1/files/{up['file_id']}")).json()["content_type"] == "image/png"
        assert sent == ["InitiateUpload"]


async def test_an_object_key_is_still_put_by_the_api(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object's file is the key's, which other commands change: its PutObject goes to
    the key's own actor, not as a follow-up."""
    bucket = f"whole-{os.urandom(4).hex()}"
    async with shared_system.client("whole-obj") as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
        sent = sent_by_the_api(monkeypatch)
        meta = f"bucket {base64.b64encode(bucket.encode()).decode()},key {base64.b64encode(b'a/b.txt').decode()}"
        r = await c.post(
            "/v1/tus",
            headers={**OCTETS, "Upload-Length": "5", "Upload-Metadata": meta},
            content=b"hello",
        )
        assert r.status_code == 201, r.text
        assert sent == ["InitiateUpload", "PutObject"]
        got = await c.get(f"/v1/buckets/{bucket}/objects/a/b.txt")
        assert got.status_code == 200 and got.content == b"hello"


async def _post_cut_off(system: System, user: str, length: int, body: bytes) -> None:
    """POST a creation-with-upload announcing `length` bytes, send `body` (shorter), then
    EOF (nobody reads the answer: the client is gone)."""
    s = system.settings
    reader, writer = await asyncio.open_connection(s.host, s.port)
    head = (
        f"POST /v1/tus HTTP/1.1\r\nHost: {s.host}\r\nAuthorization: Bearer {system.token(user)}\r\n"
        "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Upload-Length: {length}\r\nContent-Length: {length}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    writer.write_eof()
    await reader.read()
    writer.close()


async def test_a_cut_off_small_body_still_creates_a_resumable_upload(shared_system: System) -> None:
    data = os.urandom(5000)
    async with shared_system.client("whole-cut") as c:
        await _post_cut_off(shared_system, "whole-cut", len(data), data[:3000])

        async def created() -> dict[str, Any] | None:
            items = (await c.get("/v1/uploads")).json()["items"]
            return items[0] if items else None

        row = await wait_until(created)
        url = f"/v1/tus/{row['id']}"
        r = await c.head(url, headers=TUS)
        offset = int(r.headers["upload-offset"])
        assert r.status_code == 200 and offset <= 3000 and r.headers["upload-length"] == "5000"
        r = await c.patch(
            url, headers={**OCTETS, "Upload-Offset": str(offset)}, content=data[offset:]
        )
        assert r.status_code == 204
        up = (await c.get(f"/v1/uploads/{row['id']}")).json()
        assert up["status"] == "COMPLETED"
        assert (await c.get(f"/v1/files/{up['file_id']}/content")).content == data


async def test_a_wrong_checksum_creates_the_upload_empty(shared_system: System) -> None:
    data = os.urandom(4096)
    bad = "sha1 " + "A" * 27 + "="
    async with shared_system.client("whole-sum") as c:
        r = await c.post(
            "/v1/tus",
            headers={**OCTETS, "Upload-Length": str(len(data)), "Upload-Checksum": bad},
            content=data,
        )
        assert r.status_code == 460, r.text
        url = r.headers["location"]
        r = await c.head(url, headers=TUS)
        assert r.status_code == 200 and r.headers["upload-offset"] == "0"
        r = await c.patch(url, headers={**OCTETS, "Upload-Offset": "0"}, content=data)
        assert r.status_code == 204
        up = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
        assert up["status"] == "COMPLETED"


async def test_a_refused_creation_leaves_no_upload(shared_system: System) -> None:
    async with shared_system.client("whole-bad") as c:
        r = await c.post(
            "/v1/tus",
            headers={
                **OCTETS,
                "Upload-Length": "3",
                # a name the domain refuses: nothing is created, so no Location
                "Upload-Metadata": "filename Lg==",
            },
            content=b"abc",
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_file_name", r.text
        assert "location" not in r.headers
        assert (await c.get("/v1/uploads")).json()["items"] == []
