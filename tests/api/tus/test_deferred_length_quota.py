"""A tus upload created without a length (creation-defer-length) counts what it received
until a PATCH declares its Upload-Length; the declaration reserves the rest of it under the
owner's quota lock, as a creation does, and holds it until the read model has the length:
concurrent declarations of one owner that each fit but together do not are refused beyond
the quota, never all passed."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest

from tests.api.answers import assert_error
from tests.api.quota import QUOTA
from tests.api.routes.test_uploads_complete import chunked
from tests.api.tus.test_bucket_gone import OCTETS, TUS
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def deferred(c: httpx.AsyncClient) -> str:
    r = await c.post("/v1/tus", headers={**TUS, "Upload-Defer-Length": "1"})
    assert r.status_code == 201, r.text
    return str(r.headers["location"])


async def test_concurrent_length_declarations_never_pass_the_quota_together(
    qsys: System,
) -> None:
    """Ten uploads without a length declare 30 KB each at once against 100 KB: three pass,
    the rest are 413 and stay without a length; the owner's usage ends within the quota."""
    async with qsys.client(f"dq-{secrets.token_hex(4)}") as c:
        urls = [await deferred(c) for _ in range(10)]
        answers = await asyncio.gather(
            *(
                c.patch(url, headers={**OCTETS, "Upload-Offset": "0", "Upload-Length": "30000"})
                for url in urls
            )
        )
        passed = [u for u, r in zip(urls, answers, strict=True) if r.status_code == 204]
        for r in answers:
            if r.status_code != 204:
                assert_error(r, 413, "quota_exceeded")
        assert len(passed) == 3, [r.text for r in answers]
        for url in urls:
            head = await c.head(url, headers=TUS)
            if url in passed:
                assert head.headers["upload-length"] == "30000", head.headers
            else:
                # Refused: nothing declared, nothing received.
                assert "upload-length" not in head.headers, head.headers
                assert head.headers["upload-defer-length"] == "1", head.headers
                assert head.headers["upload-offset"] == "0", head.headers

        async def lengths_listed() -> bool:
            n = await qsys.pool.fetchval(
                "SELECT count(*) FROM readmodel.uploads WHERE id = ANY($1::uuid[])"
                " AND file_size = 30000",
                [u.rstrip("/").rsplit("/", 1)[1] for u in passed],
            )
            return bool(n == len(passed))

        await wait_until(lengths_listed)
        # The three lengths count, once each; nothing else is left held.
        err = assert_error(
            await c.post("/v1/tus", headers={**TUS, "Upload-Length": str(QUOTA)}),
            413,
            "quota_exceeded",
        )
        assert err["details"]["used"] == 90_000, err


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "chunked"])
async def test_bytes_without_a_length_count_at_once_after_their_patch(
    qsys: System, sized: bool
) -> None:
    """The bytes a PATCH brought an upload without a length count from its answer on, not
    only once the read model has them: a create asking for more than is left right after
    is refused (it passed in the read model's lag, going past the quota). A body sent
    chunked too, whose size was not known (nor held) before it came."""
    async with qsys.client(f"dq-{secrets.token_hex(4)}") as c:
        for _ in range(5):
            url = await deferred(c)
            data = b"x" * 60_000
            r = await c.patch(
                url,
                headers={**OCTETS, "Upload-Offset": "0"},
                content=data if sized else chunked(data),
            )
            assert r.status_code == 204, r.text
            r = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "50000"})
            err = assert_error(r, 413, "quota_exceeded")
            assert err["details"]["used"] == 60_000, err
            assert (await c.delete(url, headers=TUS)).status_code == 204
            uid = url.rstrip("/").rsplit("/", 1)[1]

            async def aborted(uid: str = uid) -> bool:
                status = await qsys.pool.fetchval(
                    "SELECT status FROM readmodel.uploads WHERE id = $1::uuid", uid
                )
                return bool(status == "ABORTED")

            await wait_until(aborted)


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "chunked"])
async def test_bytes_of_a_creation_without_a_length_count_at_once(
    qsys: System, sized: bool
) -> None:
    """The same for the bytes a creation without a length brought (creation-with-upload):
    they count from its answer on."""
    async with qsys.client(f"dq-{secrets.token_hex(4)}") as c:
        for _ in range(5):
            data = b"x" * 60_000
            r = await c.post(
                "/v1/tus",
                headers={**OCTETS, "Upload-Defer-Length": "1"},
                content=data if sized else chunked(data),
            )
            assert r.status_code == 201, r.text
            assert r.headers["upload-offset"] == "60000", r.headers
            url = r.headers["location"]
            r = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "50000"})
            err = assert_error(r, 413, "quota_exceeded")
            assert err["details"]["used"] == 60_000, err
            assert (await c.delete(url, headers=TUS)).status_code == 204
            uid = url.rstrip("/").rsplit("/", 1)[1]

            async def aborted(uid: str = uid) -> bool:
                status = await qsys.pool.fetchval(
                    "SELECT status FROM readmodel.uploads WHERE id = $1::uuid", uid
                )
                return bool(status == "ABORTED")

            await wait_until(aborted)
