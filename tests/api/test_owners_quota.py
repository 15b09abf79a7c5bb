"""Bytes written into an upload count against its owner's quota, whoever writes them: an
admin writing into another user's upload (a native chunk, a tus PATCH without a length) is
held to the owner's quota, whatever the admin's own (here none: only the owner has one,
through CAIRN_QUOTAS). Real Postgres, broker and API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.api.answers import assert_error
from tests.api.quota import QUOTA
from tests.api.routes.test_uploads_complete import chunked
from tests.api.tus.test_bucket_gone import OCTETS, TUS
from tests.api.tus.test_bucket_gone_quota import chunk_refused_at_the_quota, tus_create
from tests.system import System, isolated_system

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Owners with a quota, one a test.
OWNER, OWNER_2 = "quota-owner", "quota-owner-2"
ADMIN = "quota-admin"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def osys(pg_server, kafka_server, template_url) -> AsyncIterator[System]:  # type: ignore[no-untyped-def]
    """A quota for the owners only (CAIRN_QUOTAS); nobody else has one."""
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        quota_bytes=0,
        quotas=((OWNER, QUOTA), (OWNER_2, QUOTA)),
    ) as s:
        yield s


async def test_an_admins_chunk_into_an_upload_is_held_to_its_owners_quota(osys: System) -> None:
    """A native upload whose bucket went holds only what it received; once the owner used
    the rest, an admin's chunk into it is 413 (it was taken: the admin has no quota)."""
    async with osys.client(OWNER) as c, osys.client(ADMIN, admin=True) as admin:
        _, big = await chunk_refused_at_the_quota(osys, c, admin, "oq-native")
        assert (await c.delete(big, headers=TUS)).status_code == 204


async def test_an_admins_patch_without_a_length_is_held_to_its_owners_quota(
    osys: System,
) -> None:
    """A PATCH without a length by an admin into the owner's upload may bring what is left
    of the owner's quota (10,000 bytes here), not of the admin's (unlimited)."""
    async with osys.client(OWNER_2) as c, osys.client(ADMIN, admin=True) as admin:
        first = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "90000"})
        assert first.status_code == 201, first.text
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Defer-Length": "1"})
        assert r.status_code == 201, r.text
        url = r.headers["location"]
        for body in (b"x" * 30_000, chunked(b"x" * 30_000)):
            r = await admin.patch(url, headers={**OCTETS, "Upload-Offset": "0"}, content=body)
            assert_error(r, 413, "quota_exceeded")
        # What was durable of the chunked body is kept: within what the quota left.
        offset = int((await c.head(url, headers=TUS)).headers["upload-offset"])
        assert offset <= 10_000, offset
        # Within what is left, it passes, and the bytes count against the owner.
        if offset < 10_000:
            r = await admin.patch(
                url,
                headers={**OCTETS, "Upload-Offset": str(offset)},
                content=chunked(b"x" * (10_000 - offset)),
            )
            assert r.status_code == 204, r.text
        assert_error(await tus_create(c, 1), 413, "quota_exceeded")
