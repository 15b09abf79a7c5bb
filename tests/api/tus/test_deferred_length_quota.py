"""A tus upload created without a length (creation-defer-length) counts what it received
until a PATCH declares its Upload-Length; the declaration reserves the rest of it under the
owner's quota lock, as a creation does, and holds it until the read model has the length:
concurrent declarations of one owner that each fit but together do not are refused beyond
the quota, never all passed."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.answers import assert_error
from tests.api.quota import QUOTA
from tests.api.routes.test_uploads_complete import chunked
from tests.api.tus.test_bucket_gone import OCTETS, TUS
from tests.api.tus.test_bucket_gone_quota import tus_create
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


async def counted_then_ended(qsys: System, c: httpx.AsyncClient, url: str) -> None:
    """The 60,000 bytes of the upload at `url` count at once: a create of 50,000 more is
    refused (100 KB quota). Then the upload is terminated and its end awaited in the read
    model, so that the next round starts from nothing held."""
    r = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "50000"})
    err = assert_error(r, 413, "quota_exceeded")
    assert err["details"]["used"] == 60_000, err
    assert (await c.delete(url, headers=TUS)).status_code == 204
    uid = url.rstrip("/").rsplit("/", 1)[1]

    async def aborted() -> bool:
        status = await qsys.pool.fetchval(
            "SELECT status FROM readmodel.uploads WHERE id = $1::uuid", uid
        )
        return bool(status == "ABORTED")

    await wait_until(aborted)


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
            await counted_then_ended(qsys, c, url)


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
            await counted_then_ended(qsys, c, url)


async def offsets(c: httpx.AsyncClient, urls: list[str]) -> list[int]:
    """Each upload's offset, as HEAD reports it."""
    got = []
    for url in urls:
        head = await c.head(url, headers=TUS)
        assert head.status_code == 200, head.text
        got.append(int(head.headers["upload-offset"]))
    return got


async def all_begun(s: System, owner: str, tasks: list[asyncio.Task[Any]]) -> bool:
    """Whether each of `tasks`' requests holds a quota reservation of `owner`'s or is over,
    or some body's bytes are held as they come (then a request may be refused before its
    client sends the rest: it does not wait for the others)."""
    row = await s.pool.fetchrow(
        "SELECT count(*) AS n, coalesce(max(bytes), 0) AS most FROM api.quota_reservations"
        " WHERE owner = $1",
        owner,
    )
    return bool(row["n"] + sum(t.done() for t in tasks) >= len(tasks) or row["most"] > 0)


async def gated(first: bytes, rest: bytes, gate: asyncio.Event) -> AsyncIterator[bytes]:
    """A body without a length: `first`, then `rest` once `gate` is set."""
    yield first
    await gate.wait()
    yield rest


@pytest.mark.parametrize("creation", [False, True], ids=["patch", "creation"])
async def test_concurrent_bodies_without_a_length_never_pass_the_quota_together(
    qsys: System, creation: bool
) -> None:
    """Six chunked bodies of 25 KB into uploads without a length (PATCHes, or creations
    with their bytes), all begun before any ends, against the 60 KB the quota leaves: each
    fits what is left, together they do not. What they bring is held as it comes, so those
    going past what the others hold are 413 quota_exceeded (keeping what was durable), and
    the bytes the uploads end with fit the quota."""
    owner = f"dq-{secrets.token_hex(4)}"
    async with qsys.client(owner) as c:
        first = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "40000"})
        assert first.status_code == 201, first.text
        urls = [] if creation else [await deferred(c) for _ in range(6)]
        gate = asyncio.Event()
        bodies = [gated(b"x" * 5_000, b"x" * 20_000, gate) for _ in range(6)]
        if creation:
            sent = [
                c.post("/v1/tus", headers={**OCTETS, "Upload-Defer-Length": "1"}, content=b)
                for b in bodies
            ]
        else:
            sent = [
                c.patch(url, headers={**OCTETS, "Upload-Offset": "0"}, content=b)
                for url, b in zip(urls, bodies, strict=True)
            ]
        tasks = [asyncio.create_task(r) for r in sent]

        # Every request has begun (holds a reservation) before any goes on.
        await wait_until(lambda: all_begun(qsys, owner, tasks))
        gate.set()
        answers = await asyncio.gather(*tasks)
        for r in answers:
            assert r.status_code in (201, 204, 413), r.text
        if creation:
            urls = [str(r.headers["location"]) for r in answers if "location" in r.headers]
        refused = [r for r in answers if r.status_code == 413]
        assert refused, [r.status_code for r in answers]
        for r in refused:
            assert_error(r, 413, "quota_exceeded")
        assert 40_000 + sum(await offsets(c, urls)) <= QUOTA


async def admin_writes_within_the_owners_quota(
    c: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    """`c`'s owner leaves 10,000 bytes of the quota (an upload of 90,000) and makes an upload
    without a length; `admin`'s PATCHes of 30,000 bytes into it (with a length, then
    chunked) are 413, what was durable of the chunked body kept within those 10,000; the
    rest of them passes, and then the owner's quota is spent."""
    first = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "90000"})
    assert first.status_code == 201, first.text
    url = await deferred(c)
    for body in (b"x" * 30_000, chunked(b"x" * 30_000)):
        r = await admin.patch(url, headers={**OCTETS, "Upload-Offset": "0"}, content=body)
        assert_error(r, 413, "quota_exceeded")
        # What was durable of the chunked body is kept: within what the quota left.
        assert (await offsets(c, [url]))[0] <= 10_000
    # Within what is left, it passes, and the bytes count against the owner.
    offset = (await offsets(c, [url]))[0]
    if offset < 10_000:
        r = await admin.patch(
            url,
            headers={**OCTETS, "Upload-Offset": str(offset)},
            content=chunked(b"x" * (10_000 - offset)),
        )
        assert r.status_code == 204, r.text
    assert_error(await tus_create(c, 1), 413, "quota_exceeded")


async def test_an_admin_writing_into_an_upload_is_held_to_its_owners_quota(qsys: System) -> None:
    """A PATCH without a length by an admin into another user's upload brings the owner
    bytes: it may bring what is left of the owner's quota, not of the admin's."""
    owner = f"dq-{secrets.token_hex(4)}"
    async with (
        qsys.client(owner) as c,
        qsys.client(f"admin-{secrets.token_hex(4)}", admin=True) as admin,
    ):
        await admin_writes_within_the_owners_quota(c, admin)
