"""tus's wire rules that hold for every tus request (api/tus/protocol.py, tus_middleware).

A tus header sent twice: the server read the first one and ignored the other, so a PATCH
with `Upload-Offset: 0` and `Upload-Offset: 3` was judged at offset 0, a creation with
`Upload-Length: 10` and `Upload-Length: 20` made an upload of 10 bytes, and a PATCH with
two `Upload-Checksum`s checked only the first. Which one counts is a guess (a proxy or a
client library may read the other, or join them into `0, 3`), so such a request is refused
as malformed, like credentials sent twice (api/auth.py), and changes nothing."""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest

from tests.api.tus.test_controller import OCTETS, TUS, create, offset_of, upload_id
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def assert_duplicate(r: httpx.Response, header: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"} and body["request_id"] == r.headers["x-request-id"]
    assert body["error"]["code"] == "invalid_header", body
    assert body["error"]["details"] == {"header": header}, body
    assert r.headers["tus-resumable"] == "1.0.0"


def sha256(data: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.mark.parametrize(
    "repeated",
    [
        ("Upload-Offset", "0", "0"),  # even the same value: a joined "0, 0" is no offset
        ("Upload-Offset", "0", "3"),
        ("Upload-Checksum", sha256(b"abc"), "sha256 " + "A" * 44),
        ("Tus-Resumable", "1.0.0", "1.0.0"),
    ],
    ids=lambda r: f"{r[0]}:{r[2][:8]}",
)
async def test_a_patch_with_a_tus_header_twice_is_refused_and_changes_nothing(
    shared_system: System, repeated: tuple[str, str, str]
) -> None:
    name, first, second = repeated
    async with shared_system.client("dup-patch") as c:
        url = await create(c, 10)
        headers = [(k, v) for k, v in {**OCTETS, "Upload-Offset": "0"}.items() if k != name]
        r = await c.patch(url, headers=[*headers, (name, first), (name, second)], content=b"abc")
        assert_duplicate(r, name)
        assert await offset_of(c, url) == 0
        # The same PATCH with the header once is taken.
        r = await c.patch(url, headers=[*headers, (name, first)], content=b"abc")
        assert r.status_code == 204, r.text
        assert await offset_of(c, url) == 3


@pytest.mark.parametrize(
    "repeated",
    [
        ("Upload-Length", "10", "20"),
        ("Upload-Defer-Length", "1", "1"),
        ("Upload-Metadata", "filename YS50eHQ=", "filename Yi50eHQ="),
        ("Upload-Concat", "partial", "partial"),
    ],
    ids=lambda r: r[0],
)
async def test_a_creation_with_a_tus_header_twice_is_refused_and_creates_nothing(
    shared_system: System, repeated: tuple[str, str, str]
) -> None:
    name, first, second = repeated
    async with shared_system.client("dup-create") as c:
        before = (await c.get("/v1/uploads", params={"limit": 1000})).json()["items"]
        base = {**TUS, "Upload-Length": "10"} if name != "Upload-Defer-Length" else {**TUS}
        headers = [(k, v) for k, v in base.items() if k != name]
        r = await c.post("/v1/tus", headers=[*headers, (name, first), (name, second)])
        assert_duplicate(r, name)
        # Once, it creates an upload: the only one more the list shows once it shows it.
        r = await c.post("/v1/tus", headers=[*headers, (name, first)])
        assert r.status_code == 201, r.text
        made = upload_id(r.headers["location"])

        async def new_ids() -> set[str] | None:
            after = (await c.get("/v1/uploads", params={"limit": 1000})).json()["items"]
            ids = {u["id"] for u in after} - {u["id"] for u in before}
            return ids if made in ids else None

        assert await wait_until(new_ids) == {made}


async def test_head_and_delete_with_a_tus_header_twice_are_refused(shared_system: System) -> None:
    async with shared_system.client("dup-other") as c:
        url = await create(c, 10)
        twice = [("Tus-Resumable", "1.0.0"), ("Tus-Resumable", "1.0.0")]
        r = await c.head(url, headers=twice)
        assert r.status_code == 400 and r.headers["tus-resumable"] == "1.0.0"
        r = await c.delete(url, headers=twice)
        assert_duplicate(r, "Tus-Resumable")
        assert await offset_of(c, url) == 0  # not terminated
