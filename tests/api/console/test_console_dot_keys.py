"""An object whose key has a `.` or `..` segment (`a/../b`), in headless Chromium: the
browser resolves such segments in a URL (`%2e` spellings too), so a request built from
the key's path would reach another object. Delete, Copy link and the headers form must
act on that object, or not at all; never on the object the resolved path names."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from tests.api.console.test_console import no_csp_violations, signed_in
from tests.api.console.test_console_objects import put, signed_link
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOTS = b"the object keyed a/../b\n"
OTHER = b"the object keyed b\n"


async def test_delete_and_link_act_on_the_dotted_key_not_another(shared_system: System) -> None:
    me = f"console-d-{uuid.uuid4().hex[:8]}"
    bucket = f"dots-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    await put(shared_system, me, bucket, "b", OTHER)
    await put(shared_system, me, bucket, "a/%2E%2E/b", DOTS)  # the server decodes it to `..`
    async with signed_in(shared_system, me, clipboard=True, dialogs=True) as page:
        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Browse objects of {bucket}").click()
        await page.get_by_role("button", name="Open folder a/").click()
        await page.get_by_role("button", name="Open folder ../").click()
        row = page.locator("#objects tbody tr[data-key='a/../b']")
        await expect(row).to_have_count(1)

        # Copy link: a URL that serves this object's bytes, read by a browser (which
        # resolves dot segments) as well as by a client that does not.
        url = await signed_link(page, "a/../b", "1 hour")
        async with httpx.AsyncClient() as anon:  # no credential: the link is the permission
            r = await anon.get(url)
        assert r.status_code == 200 and r.content == DOTS
        fetched = await page.evaluate(
            "async (u) => { const r = await fetch(u); return [r.status, await r.text()] }", url
        )
        assert fetched == [200, DOTS.decode()]
        await page.get_by_role("button", name="Close").click()

        # Download goes by the file id: this object's bytes.
        async with page.expect_download() as got:
            await page.get_by_role("button", name="Download a/../b", exact=True).click()
        assert Path(await (await got.value).path()).read_bytes() == DOTS

        # Its stored headers cannot be saved by a PUT to its path: the form says so.
        await row.locator("a.file-link").click()
        await expect(page.locator("#details-title")).to_have_text("a/../b")
        await expect(page.locator("#details-headers-form")).to_contain_text(
            'its key has a "." or ".." segment'
        )
        await page.keyboard.press("Escape")
        await expect(page.locator("#details")).not_to_be_visible()

        # Delete: this object goes, `b` stays.
        await page.get_by_role("button", name="Delete a/../b", exact=True).click()
        await expect(page.locator("#status")).to_have_text("Deleted a/../b.")
        await expect(row).to_have_count(0)
        async with shared_system.client(me) as c:
            assert (await c.get(f"/v1/buckets/{bucket}/objects/a/%2E%2E/b")).status_code == 404
            kept = await c.get(f"/v1/buckets/{bucket}/objects/b")
            assert kept.status_code == 200 and kept.content == OTHER
        await no_csp_violations(page)
