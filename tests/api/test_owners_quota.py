"""Bytes written into an upload count against its owner's quota, whoever writes them: an
admin writing into another user's upload (a native chunk, a tus PATCH without a length) is
held to the owner's quota, whatever the admin's own (here none: only the owner has one,
through CAIRN_QUOTAS). Real Postgres, broker and API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.api.quota import QUOTA
from tests.api.tus.test_bucket_gone import TUS
from tests.api.tus.test_bucket_gone_quota import chunk_refused_at_the_quota
from tests.api.tus.test_deferred_length_quota import admin_writes_within_the_owners_quota
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
        await admin_writes_within_the_owners_quota(c, admin)
