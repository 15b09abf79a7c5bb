"""The console's "Copy link" on an object, in headless Chromium: a signed URL for the
object (with the expiry chosen) that reads it without a credential."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.async_api import expect

from tests.api.console.test_console import (
    no_csp_violations,
    signed_in,
)
from tests.api.console.test_console_objects import put, signed_link
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_copy_a_signed_link_to_an_object(shared_system: System) -> None:
    me = f"console-l-{uuid.uuid4().hex[:8]}"
    bucket = f"links-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    await put(shared_system, me, bucket, "docs/a b.txt", b"a file in docs\n")
    async with signed_in(shared_system, me, clipboard=True) as page:
        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Browse objects of {bucket}").click()
        await page.get_by_role("button", name="Open folder docs/").click()
        await expect(page.locator("#objects tbody tr[data-key='docs/a b.txt']")).to_have_count(1)
        url = await signed_link(page, "docs/a b.txt", "1 day")
        async with httpx.AsyncClient() as anon:  # no credential: the link is the permission
            r = await anon.get(url)
        assert r.status_code == 200 and r.content == b"a file in docs\n"
        await page.get_by_role("button", name="Close").click()
        await no_csp_violations(page)
