"""A tus creation refused for what its headers say (Upload-Length or Content-Length past
the maximum size or the owner's quota, metadata the domain refuses) is refused before
anything is created, whatever its body: none, empty, sent chunked (no Content-Length) or
with a length. The answer is the one error shape with no Location, and the event store
holds no upload of the caller's."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.system import System, isolated_system

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}
MAX = 60_000  # CAIRN_MAX_UPLOAD_BYTES of this system
QUOTA = 20_000  # CAIRN_QUOTA_BYTES of this system


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def small(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, max_upload_bytes=MAX, quota_bytes=QUOTA
    ) as s:
        yield s


async def _nothing() -> AsyncIterator[bytes]:
    """An empty body sent chunked: Transfer-Encoding: chunked, no Content-Length."""
    return
    yield b""  # (makes this a generator)


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _body(kind: str) -> dict[str, object]:
    """How the creation sends (or not) a body: request arguments for httpx."""
    if kind == "none":
        return {"headers": TUS}
    if kind == "chunked-empty":
        return {"headers": OCTETS, "content": _nothing()}
    if kind == "chunked":
        return {"headers": OCTETS, "content": _chunked(b"x" * 100)}
    if kind == "empty":
        return {"headers": {**OCTETS, "Content-Length": "0"}, "content": b""}
    return {"headers": OCTETS, "content": b"x" * 100}


async def _uploads_of(system: System, user: str) -> int:
    """The caller's uploads as the event store has them (no read model lag)."""
    return int(
        await system.pool.fetchval(
            "SELECT count(*) FROM eventstore.events"
            " WHERE event_type = 'UploadInitiated' AND owner = $1",
            user,
        )
    )


def _meta(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


REFUSALS = {
    # Upload-Length past the maximum size, or past the quota.
    "length-over-max": ({"Upload-Length": str(MAX + 1)}, 413, "upload_too_large"),
    "length-over-quota": ({"Upload-Length": str(QUOTA + 1)}, 413, "quota_exceeded"),
    # Metadata the domain refuses: a name of dots, metadata over 8 KiB, a key without a bucket.
    "bad-filename": (
        {"Upload-Length": "100", "Upload-Metadata": _meta(filename="..")},
        400,
        "invalid_file_name",
    ),
    "metadata-too-big": (
        {"Upload-Length": "100", "Upload-Metadata": _meta(filename="a", note="n" * 9000)},
        400,
        "invalid_metadata",
    ),
    "key-without-bucket": (
        {"Upload-Length": "100", "Upload-Metadata": _meta(filename="a", key="k")},
        400,
        "key_needs_bucket",
    ),
    # A stored header (api/http/objheaders.py) the rule refuses, or one without a key.
    "bad-stored-header": (
        {
            "Upload-Length": "100",
            "Upload-Metadata": _meta(filename="a", bucket="b", key="k", expires="x" * 1025),
        },
        400,
        "invalid_header",
    ),
    "stored-header-without-key": (
        {"Upload-Length": "100", "Upload-Metadata": _meta(**{"Content-Encoding": "gzip"})},
        400,
        "invalid_header",
    ),
    "bad-checksum-header": (
        {"Upload-Length": "100", "Upload-Checksum": "crc32 AAAA"},
        400,
        "unsupported_checksum_algorithm",
    ),
}


BODIES = ["none", "chunked-empty", "chunked", "empty", "sized"]
# (An Upload-Checksum applies to a body: without one it is not read.)
CASES = [
    (refusal, body)
    for refusal in REFUSALS
    for body in BODIES
    if not (refusal == "bad-checksum-header" and body in ("none", "empty"))
]


@pytest.mark.parametrize(("refusal", "body"), CASES)
async def test_a_creation_refused_by_its_headers_creates_nothing(
    small: System, refusal: str, body: str
) -> None:
    headers, status, code = REFUSALS[refusal]
    user = f"ref-{secrets.token_hex(4)}"
    req = _body(body)
    async with small.client(user) as c:
        r = await c.post(
            "/v1/tus",
            headers={**req["headers"], **headers},  # type: ignore[dict-item]
            content=req.get("content"),  # type: ignore[arg-type]
        )
        assert r.status_code == status, r.text
        err = r.json()
        assert set(err) == {"error", "request_id"} and err["error"]["code"] == code, err
        assert "location" not in r.headers
    assert await _uploads_of(small, user) == 0


@pytest.mark.parametrize("over", ["quota", "max"])
async def test_a_deferred_length_body_declared_too_long_creates_nothing(
    small: System, over: str
) -> None:
    """Upload-Defer-Length with a Content-Length already past what the quota leaves (or the
    maximum size): known from the headers, so refused before the upload exists."""
    user = f"ref-{secrets.token_hex(4)}"
    size = QUOTA + 1 if over == "quota" else MAX + 1
    async with small.client(user) as c:
        r = await c.post(
            "/v1/tus",
            headers={**OCTETS, "Upload-Defer-Length": "1"},
            content=b"x" * size,
        )
        assert r.status_code == 413, r.text
        code = "quota_exceeded" if over == "quota" else "upload_too_large"
        assert r.json()["error"]["code"] == code, r.text
        assert "location" not in r.headers
    assert await _uploads_of(small, user) == 0


async def test_a_creation_within_the_limits_still_works(small: System) -> None:
    """The refusals above are not everything refused: the same requests within the limits
    create their upload (chunked, empty, deferred)."""
    user = f"ref-{secrets.token_hex(4)}"
    async with small.client(user) as c:
        for kind in ("chunked-empty", "chunked", "empty"):
            req = _body(kind)
            r = await c.post(
                "/v1/tus",
                headers={**req["headers"], "Upload-Length": "100"},  # type: ignore[dict-item]
                content=req.get("content"),  # type: ignore[arg-type]
            )
            assert r.status_code == 201, (kind, r.text)
        r = await c.post(
            "/v1/tus", headers={**OCTETS, "Upload-Defer-Length": "1"}, content=b"y" * 100
        )
        assert r.status_code == 201 and r.headers["upload-offset"] == "100", r.text
    assert await _uploads_of(small, user) == 4
