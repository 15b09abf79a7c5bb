"""A tus upload whose bucket is gone by the time it completes (deleted since its creation,
or deleted and made again by another user: bucket names are global) does not become a
file: every way a tus upload completes (the PATCH bringing it to its length, a whole small
file in its creation request, a concatenation's final upload) answers 404
`bucket_not_found` and leaves the upload incomplete, with its bytes, as the native
`complete` does. Made again by its owner, the same upload completes into it."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import api.tus.controller as controller
from tests.api.answers import assert_error, user
from tests.api.documented import assert_documented
from tests.system import System

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


def meta(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


async def assert_not_a_file(c: httpx.AsyncClient, url: str, offset: int) -> None:
    """The upload is there, incomplete, holding `offset` bytes; no file came of it."""
    r = await c.head(url, headers=TUS)
    assert r.status_code == 200 and r.headers["upload-offset"] == str(offset), r.headers
    view = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
    assert view["status"] == "IN_PROGRESS" and view["file_id"] is None, view
    assert (await c.get("/v1/files")).json()["items"] == []


async def make_bucket(c: httpx.AsyncClient, name: str) -> None:
    assert (await c.post("/v1/buckets", json={"name": name})).status_code == 201


async def drop_bucket(c: httpx.AsyncClient, name: str) -> None:
    assert (await c.delete(f"/v1/buckets/{name}")).status_code == 200


@dataclass
class Gone:
    """A bucket `c`'s user made, for an upload into it; `go` takes it away (deleted, and
    if `taken`, made again by `other`'s user), `back` gives it back to `c`'s user."""

    c: httpx.AsyncClient
    other: httpx.AsyncClient
    bucket: str
    taken: bool

    async def go(self) -> None:
        await drop_bucket(self.c, self.bucket)
        if self.taken:
            await make_bucket(self.other, self.bucket)

    async def back(self) -> None:
        """Taken: nothing of the upload came into the other user's bucket, which they
        delete. Then `c`'s user makes the bucket again."""
        if self.taken:
            left = await self.other.get(f"/v1/buckets/{self.bucket}/objects")
            assert left.json()["items"] == [], left.text
            await drop_bucket(self.other, self.bucket)
        await make_bucket(self.c, self.bucket)


@pytest.fixture(params=[False, True], ids=["deleted", "taken-by-another"])
async def gone(shared_system: System, request: pytest.FixtureRequest) -> AsyncIterator[Gone]:
    async with shared_system.client(user()) as c, shared_system.client(user()) as other:
        scene = Gone(c, other, f"gone-{secrets.token_hex(4)}", request.param)
        await make_bucket(c, scene.bucket)
        yield scene


async def finishes_after_the_bucket_is_back(gone: Gone, url: str, data: bytes) -> None:
    """With the name still another user's, completing stays refused; made again by the
    owner, an empty PATCH at the upload's length completes it into the bucket."""
    c = gone.c
    end = {**OCTETS, "Upload-Offset": str(len(data))}
    if gone.taken:
        assert_error(await c.patch(url, headers=end, content=b""), 404, "bucket_not_found")
    await gone.back()
    r = await c.patch(url, headers=end, content=b"")
    assert r.status_code == 204, r.text
    assert (await c.get(f"/v1/buckets/{gone.bucket}/objects/k/f.bin")).content == data


async def test_the_patch_that_completes_into_a_gone_bucket_is_refused(gone: Gone) -> None:
    data = os.urandom(5000)
    c = gone.c
    r = await c.post(
        "/v1/tus",
        headers={
            **TUS,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta(filename="f.bin", bucket=gone.bucket, key="k/f.bin"),
        },
    )
    assert r.status_code == 201, r.text
    url = r.headers["location"]
    r = await c.patch(url, headers={**OCTETS, "Upload-Offset": "0"}, content=data[:2000])
    assert r.status_code == 204, r.text
    await gone.go()
    r = await c.patch(url, headers={**OCTETS, "Upload-Offset": "2000"}, content=data[2000:])
    assert_error(r, 404, "bucket_not_found")
    await assert_documented(c, "patch", "/v1/tus/{upload_id}", r)
    await assert_not_a_file(c, url, len(data))
    await finishes_after_the_bucket_is_back(gone, url, data)


def bucket_goes_after_its_check(
    monkeypatch: pytest.MonkeyPatch, then: Callable[[], Awaitable[None]]
) -> None:
    """The first time the tus controller checks a bucket (at the upload's creation), the
    check passes and then `then` runs (the bucket deleted, or taken): the bucket goes
    between the creation and the upload's last bytes, inside one request."""
    real = controller.check_writable
    calls = 0

    async def check_then_go(*args: Any) -> None:
        nonlocal calls
        await real(*args)
        calls += 1
        if calls == 1:
            await then()

    monkeypatch.setattr(controller, "check_writable", check_then_go)


async def test_a_whole_small_file_into_a_gone_bucket_is_refused(
    gone: Gone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Created with all its bytes in one request (one command that would complete it): the
    bucket went while the body came, so the upload is created with its bytes, incomplete."""
    data = os.urandom(3000)
    c = gone.c
    bucket_goes_after_its_check(monkeypatch, gone.go)
    r = await c.post(
        "/v1/tus",
        headers={
            **OCTETS,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta(filename="f.bin", bucket=gone.bucket, key="k/f.bin"),
        },
        content=data,
    )
    assert_error(r, 404, "bucket_not_found")
    await assert_documented(c, "post", "/v1/tus", r)
    url = r.headers["location"]  # the upload exists: where to complete or terminate it
    monkeypatch.undo()
    await assert_not_a_file(c, url, len(data))
    await finishes_after_the_bucket_is_back(gone, url, data)


async def test_a_concatenation_into_a_gone_bucket_is_refused(
    gone: Gone, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = [os.urandom(1500), os.urandom(2500)]
    c = gone.c
    urls = []
    for part in parts:
        r = await c.post(
            "/v1/tus",
            headers={**OCTETS, "Upload-Length": str(len(part)), "Upload-Concat": "partial"},
            content=part,
        )
        assert r.status_code == 201, r.text
        urls.append(r.headers["location"])
    bucket_goes_after_its_check(monkeypatch, gone.go)
    r = await c.post(
        "/v1/tus",
        headers={
            **TUS,
            "Upload-Concat": "final;" + " ".join(urls),
            "Upload-Metadata": meta(filename="f.bin", bucket=gone.bucket, key="k/f.bin"),
        },
    )
    assert_error(r, 404, "bucket_not_found")
    url = r.headers["location"]
    monkeypatch.undo()
    view = (await c.get(f"/v1/uploads/{upload_id(url)}")).json()
    assert view["status"] == "INITIATED" and view["file_id"] is None, view
    await gone.back()
    # A final upload takes no bytes: the native complete finishes it.
    r = await c.post(f"/v1/uploads/{upload_id(url)}/complete")
    assert r.status_code == 200, r.text
    got = await c.get(f"/v1/buckets/{gone.bucket}/objects/k/f.bin")
    assert got.content == b"".join(parts)
