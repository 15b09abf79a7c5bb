"""tus Upload-Metadata keys naming an object's stored headers (`cache-control`,
`content-encoding`, ... in any case) give the object a tus upload into a bucket key
becomes those headers (served by GET and HEAD as an object PUT's), not user metadata:
on creation-with-upload, on a creation whose bytes come by PATCH, and on a final
concatenation. A tus HEAD answers them back in Upload-Metadata. (Refusals:
test_creation_refusals.py.)"""

from __future__ import annotations

import base64
import gzip

import httpx
import pytest

from domain.files.keys import object_file_id
from tests.api.answers import make_bucket, opath, user
from tests.api.routes.test_objects_headers import raw_get
from tests.api.routes.test_uploads_headers import uploads_show
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}
BODY = gzip.compress(b"console.log('hi');\n" * 300)
STORED = {"cache-control": "public, max-age=60", "content-encoding": "gzip"}


def md(kv: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def parsed(value: str) -> dict[str, str]:
    out = {}
    for pair in value.split(","):
        k, _, v = pair.strip().partition(" ")
        out[k] = base64.b64decode(v).decode()
    return out


async def served_as_stored(c: httpx.AsyncClient, b: str, key: str) -> None:
    got, raw = await raw_get(c, opath(b, key))
    assert got.status_code == 200 and raw == BODY  # the stored bytes, never decoded
    assert got.headers["cache-control"] == STORED["cache-control"]
    assert got.headers["content-encoding"] == "gzip"
    h = await c.head(opath(b, key))
    assert h.headers["content-encoding"] == "gzip"
    f = (await c.get(f"/v1/files/{object_file_id(b, key)}")).json()
    assert f["headers"] == STORED
    # Stored headers, not user metadata: no x-amz-meta-cache-control, none in metadata.
    assert not {"cache-control", "Content-Encoding"} & set(f["metadata"])
    assert "x-amz-meta-cache-control" not in got.headers


def metadata(b: str, key: str) -> dict[str, str]:
    return {
        "filename": "app.js",
        "bucket": b,
        "key": key,
        "cache-control": STORED["cache-control"],
        "Content-Encoding": "gzip",  # keys are matched in any case
    }


async def test_creation_with_upload_into_a_key_serves_them(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        r = await c.post(
            "/v1/tus",
            headers={
                **OCTETS,
                "Upload-Length": str(len(BODY)),
                "Upload-Metadata": md(metadata(b, "js/app.js")),
            },
            content=BODY,
        )
        assert r.status_code == 201, r.text
        await served_as_stored(c, b, "js/app.js")
        # The upload's own JSON shows them (normalised), single and listed.
        uid = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
        await uploads_show(c, uid, STORED)


async def test_bytes_by_patch_serve_them_and_head_answers_them(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        r = await c.post(
            "/v1/tus",
            headers={
                **TUS,
                "Upload-Length": str(len(BODY)),
                "Upload-Metadata": md(metadata(b, "js/app.js")),
            },
        )
        assert r.status_code == 201, r.text
        url = r.headers["location"]
        h = await c.head(url, headers=TUS)
        echoed = parsed(h.headers["upload-metadata"])
        assert echoed["cache-control"] == STORED["cache-control"]
        assert echoed["content-encoding"] == "gzip" and echoed["key"] == "js/app.js"
        half = len(BODY) // 2
        for offset, piece in ((0, BODY[:half]), (half, BODY[half:])):
            p = await c.patch(url, headers={**OCTETS, "Upload-Offset": str(offset)}, content=piece)
            assert p.status_code == 204, p.text
        await served_as_stored(c, b, "js/app.js")


async def test_a_final_concatenation_carries_them(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        urls = []
        half = len(BODY) // 2
        for piece in (BODY[:half], BODY[half:]):
            r = await c.post(
                "/v1/tus",
                headers={**OCTETS, "Upload-Concat": "partial", "Upload-Length": str(len(piece))},
                content=piece,
            )
            assert r.status_code == 201, r.text
            urls.append(r.headers["location"])
        r = await c.post(
            "/v1/tus",
            headers={
                **TUS,
                "Upload-Concat": "final;" + " ".join(urls),
                "Upload-Metadata": md(metadata(b, "js/app.js")),
            },
        )
        assert r.status_code == 201, r.text
        await served_as_stored(c, b, "js/app.js")
