"""An object's stored headers (Cache-Control, Content-Disposition, Content-Encoding,
Content-Language, Expires) in the console's details view (js/headers.js), in headless
Chromium against a whole running Cairn: shown when it has any; edited by its owner through
a CopyObject onto itself with REPLACE, which the object's GET then answers, its content
type and metadata unchanged; an error answer said in the form; no form for a plain file or
for an object of someone else's public bucket."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from tests.api.answers import user
from tests.api.console.browser import shot
from tests.api.console.test_console import no_csp_violations, signed_in
from tests.api.console.test_console_files import upload
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = "site/index.html"
BODY = b"<p>hello</p>\n"
META = {"author": "ann", "note": "first draft"}


async def bucket_of(system: System, who: str, public: bool = False) -> str:
    """A new bucket of `who`, listed (GET /v1/buckets reads a read model) before it returns:
    the console reads the list once, at sign-in."""
    name = f"hdr-{uuid.uuid4().hex[:8]}"
    async with system.client(who) as c:
        created = await c.post("/v1/buckets", json={"name": name, "public": public})
        assert created.status_code == 201, created.text

        async def listed() -> bool:
            return any(b["name"] == name for b in (await c.get("/v1/buckets")).json()["items"])

        await wait_until(listed)
    return name


async def put_object(system: System, who: str, bucket: str, headers: dict[str, str]) -> str:
    async with system.client(who) as c:
        r = await c.put(f"/v1/buckets/{bucket}/objects/{KEY}", content=BODY, headers=headers)
        assert r.status_code in (200, 201), r.text
        object_id: str = r.json()["id"]
        return object_id


async def stored(system: System, who: str, file_id: str) -> dict[str, Any]:
    async with system.client(who) as c:
        r = await c.get(f"/v1/files/{file_id}")
        assert r.status_code == 200, r.text
        view: dict[str, Any] = r.json()
        return view


async def open_details(page: Page, file_id: str) -> Locator:
    await page.evaluate("(id) => { location.hash = '#file/' + encodeURIComponent(id) }", file_id)
    details = page.locator("#details")
    await expect(details).to_be_visible()
    await expect(details.locator("dl.props")).to_have_count(1)
    return details


async def test_an_objects_headers_are_shown_and_edited_by_its_owner(shared_system: System) -> None:
    me = user()
    bucket = await bucket_of(shared_system, me)
    oid = await put_object(
        shared_system,
        me,
        bucket,
        {
            "Content-Type": "text/html",
            "Cache-Control": "max-age=60",
            "Content-Language": "en",
            **{f"X-Amz-Meta-{k}": v for k, v in META.items()},
        },
    )
    async with signed_in(shared_system, me) as page:
        # Opened from the Objects tab, as a user finds it.
        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Browse objects of {bucket}").click()
        await page.get_by_role("button", name="Open folder site/").click()
        await page.locator(f"#objects tbody tr[data-key='{KEY}'] a.file-link").click()
        details = page.locator("#details")
        await expect(page.locator("#details-title")).to_have_text(KEY)
        rows = details.locator("table.stored-headers tbody tr")
        await expect(rows).to_have_count(2)
        await expect(rows.nth(0).locator("td")).to_have_text(["Cache-Control", "max-age=60"])
        await expect(rows.nth(1).locator("td")).to_have_text(["Content-Language", "en"])
        await expect(details.locator("table.meta tbody tr")).to_have_count(2)

        # The form: closed until asked for, filled with what is stored.
        form = page.locator("#details-headers-form")
        await expect(form).to_be_hidden()
        edit = details.get_by_role("button", name="Edit headers")
        await edit.click()
        await expect(form).to_be_visible()
        await expect(edit).to_have_attribute("aria-expanded", "true")
        cache = form.get_by_label("Cache-Control")
        await expect(cache).to_be_focused()
        await expect(cache).to_have_value("max-age=60")
        await expect(form.get_by_label("Content-Language")).to_have_value("en")
        await expect(form.get_by_label("Expires")).to_have_value("")
        await cache.fill("max-age=3600, public")
        await form.get_by_label("Content-Language").fill("")

        # The metadata changed by another client meanwhile: the view follows it (a live
        # re-render) and the open form keeps what was typed.
        async with shared_system.client(me) as c:
            r = await c.patch(f"/v1/files/{oid}", json={"metadata": {**META, "reviewed": "yes"}})
            assert r.status_code == 200, r.text
        await expect(details.locator("table.meta tbody tr")).to_have_count(3)
        await expect(form).to_be_visible()
        await expect(cache).to_have_value("max-age=3600, public")
        await expect(form.get_by_label("Content-Language")).to_have_value("")
        await page.screenshot(path=shot("object-headers"))

        await form.get_by_role("button", name="Save headers").click()
        await expect(form).to_be_hidden()
        await expect(rows).to_have_count(1)
        await expect(rows.nth(0).locator("td")).to_have_text(
            ["Cache-Control", "max-age=3600, public"]
        )
        # The object now serves it; its bytes, type and (current) metadata are as they were.
        async with shared_system.client(me) as c:
            got = await c.get(f"/v1/buckets/{bucket}/objects/{KEY}")
        assert got.status_code == 200 and got.content == BODY
        assert got.headers["cache-control"] == "max-age=3600, public"
        assert "content-language" not in got.headers
        assert got.headers["content-type"].startswith("text/html")
        assert got.headers["x-amz-meta-reviewed"] == "yes"
        view = await stored(shared_system, me, oid)
        assert view["headers"] == {"cache-control": "max-age=3600, public"}
        assert view["metadata"] == {**META, "reviewed": "yes"}
        assert view["content_type"].startswith("text/html")

        # Too long: the API's 400 invalid_header is said in the form, at the field it names;
        # nothing is stored.
        await edit.click()
        disposition = form.get_by_label("Content-Disposition")
        await disposition.fill("inline; filename=" + "a" * 1100)
        await form.get_by_role("button", name="Save headers").click()
        error = page.locator("#details-headers-error")
        await expect(error).to_contain_text("Could not save the headers")
        await expect(error).to_contain_text("content-disposition is over 1024 bytes")
        await expect(disposition).to_be_focused()
        await expect(form).to_be_visible()
        assert (await stored(shared_system, me, oid))["headers"] == {
            "cache-control": "max-age=3600, public"
        }

        # Corrected, and Cache-Control emptied: the object keeps exactly what the form holds
        # (the browser adds no Cache-Control of its own to the request).
        await disposition.fill("inline")
        await cache.fill("")
        await form.get_by_role("button", name="Save headers").click()
        await expect(form).to_be_hidden()
        await expect(error).to_have_text("")
        await expect(rows).to_have_count(1)
        await expect(rows.nth(0).locator("td")).to_have_text(["Content-Disposition", "inline"])
        view = await stored(shared_system, me, oid)
        assert view["headers"] == {"content-disposition": "inline"}
        assert view["metadata"] == {**META, "reviewed": "yes"}
        await no_csp_violations(page)


async def test_no_form_for_a_plain_file_nor_for_someone_elses_public_object(
    shared_system: System,
) -> None:
    me, other = user(), user()
    public = await bucket_of(shared_system, other, public=True)
    theirs = await put_object(
        shared_system, other, public, {"Content-Type": "text/html", "Cache-Control": "no-cache"}
    )
    mine = await upload(shared_system, me, "plain.txt", b"plain\n")
    # Metadata set through PATCH that no X-Amz-Meta-* header could carry back unchanged.
    own = await bucket_of(shared_system, me)
    odd = await put_object(shared_system, me, own, {"Expires": "Thu, 01 Jan 2037 00:00:00 GMT"})
    async with shared_system.client(me) as c:
        r = await c.patch(f"/v1/files/{odd}", json={"metadata": {"Title": "Été"}})
        assert r.status_code == 200, r.text
    async with signed_in(shared_system, me) as page:
        # Someone else's public object: readable, its headers shown, not editable.
        details = await open_details(page, theirs)
        await expect(page.locator("#details-title")).to_have_text(KEY)
        rows = details.locator("table.stored-headers tbody tr")
        await expect(rows.locator("td")).to_have_text(["Cache-Control", "no-cache"])
        await expect(details.get_by_role("button", name="Download")).to_have_count(1)
        await expect(details.get_by_role("button", name="Edit headers")).to_have_count(0)
        await expect(page.locator("#details-headers-form")).to_have_count(0)

        # A plain file: no headers, no form.
        details = await open_details(page, mine)
        await expect(page.locator("#details-title")).to_have_text("plain.txt")
        await expect(details.locator("table.stored-headers")).to_have_count(0)
        await expect(details.get_by_role("button", name="Edit headers")).to_have_count(0)

        # Its own object, but a REPLACE could not send its metadata back: said, not offered.
        details = await open_details(page, odd)
        await expect(details.locator("table.stored-headers tbody tr td")).to_have_text(
            ["Expires", "Thu, 01 Jan 2037 00:00:00 GMT"]
        )
        await expect(details.get_by_role("button", name="Edit headers")).to_have_count(0)
        await expect(details).to_contain_text("Its stored headers cannot be edited here")
        await no_csp_violations(page)
    async with httpx.AsyncClient(base_url=shared_system.url) as anon:
        # Nothing was written to theirs.
        r = await anon.get(f"/v1/buckets/{public}/objects/{KEY}")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
