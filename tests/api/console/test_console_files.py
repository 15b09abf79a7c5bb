"""The console's Files tab: whole names (a directory upload's path, an object's key) and a
file's details view (#file/<id>), in headless Chromium against a whole running Cairn.
Metadata is whatever a client sent, so it must show as text, never as markup; another
user's file id in the address must not show that file."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.api.answers import user
from tests.api.console.browser import chromium, shot
from tests.api.console.test_console import (
    OVERFLOW_X,
    WATCH_CSP,
    no_csp_violations,
    open_console,
    sign_in,
    signed_in,
    signed_in_at,
)
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOSTILE = "<img src=x onerror=alert(1)>"


async def upload(system: System, who: str, name: str, data: bytes, **extra: Any) -> str:
    """A file made through the native chunked API (as `cairn upload` does), listed by the
    read model before it returns; its id."""
    async with system.client(who) as c:
        r = await c.post(
            "/v1/uploads",
            json={"file_name": name, "file_size": len(data), "content_type": "text/plain", **extra},
        )
        assert r.status_code == 201, r.text
        up = r.json()["id"]
        assert (await c.put(f"/v1/uploads/{up}/chunks/0", content=data)).status_code == 201
        done = await c.post(f"/v1/uploads/{up}/complete")
        assert done.status_code == 200, done.text
        file_id: str = done.json()["file_id"]

        async def listed() -> bool:
            return any(f["id"] == file_id for f in (await c.get("/v1/files")).json()["items"])

        await wait_until(listed)
        return file_id


async def watch_alerts(page: Page) -> list[str]:
    """Every alert() the page raises (dismissed): an injected handler that ran would add one."""
    alerts: list[str] = []

    async def seen(d: Any) -> None:
        alerts.append(d.message)
        await d.dismiss()

    page.on("dialog", seen)
    return alerts


async def test_whole_names_and_a_files_details(shared_system: System) -> None:
    me = user()
    bucket = f"cf-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    data = b"x" * 2999 + b"\n"
    # A directory upload's file (`cairn upload photos/`): its path is in metadata `key`,
    # and one in another folder with the same last part, an object keyed so.
    plain = await upload(
        shared_system,
        me,
        "notes.txt",
        data,
        metadata={"key": "photos/2024/notes.txt", "camera": HOSTILE, "lens": "<b>50mm</b> & f/2"},
    )
    obj = await upload(
        shared_system, me, "notes.txt", b"object\n", bucket=bucket, key="photos/2025/notes.txt"
    )
    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        await ctx.grant_permissions(["clipboard-read", "clipboard-write"])
        page = await ctx.new_page()
        alerts = await watch_alerts(page)
        await open_console(page, shared_system)
        await sign_in(page, shared_system.token(me))

        # Whole names: the two files no longer look alike.
        plain_link = page.locator(f"#files tbody tr[data-id='{plain}'] a.file-link")
        obj_link = page.locator(f"#files tbody tr[data-id='{obj}'] a.file-link")
        await expect(plain_link).to_have_text("photos/2024/notes.txt")
        await expect(obj_link).to_have_text("photos/2025/notes.txt")
        assert await plain_link.get_attribute("title") == "photos/2024/notes.txt"
        await expect(plain_link.locator(".folder")).to_have_text("photos/2024/")
        # Its actions are labelled by the whole name too.
        await expect(
            page.get_by_role("button", name="Download photos/2025/notes.txt")
        ).to_have_count(1)

        # Opened by keyboard from the list: the details, at their own address.
        await plain_link.focus()
        await page.keyboard.press("Enter")
        details = page.locator("#details")
        await expect(details).to_be_visible()
        assert await page.evaluate("location.hash") == f"#file/{plain}"
        await expect(page.locator("#details-title")).to_have_text("photos/2024/notes.txt")
        props = details.locator("dl.props")
        await expect(props).to_contain_text("2.9 KiB (3,000 bytes)")
        await expect(props).to_contain_text("text/plain")
        await expect(props).to_contain_text("default (no bucket)")
        await expect(page.locator("#details-status")).to_have_text("available")
        await expect(details.get_by_label("SHA-256", exact=True)).to_have_value(
            hashlib.sha256(data).hexdigest()
        )
        await expect(details.get_by_label("id", exact=True)).to_have_value(plain)
        # The id copies to the clipboard.
        await details.get_by_role("button", name="Copy id").click()
        await expect(page.locator("#details-note")).to_have_text("Copied the id.")
        assert await page.evaluate("navigator.clipboard.readText()") == plain

        # The metadata, every value as text: the hostile one is literally there, and no
        # element was made of it (nor of the <b>), nothing ran.
        meta = details.locator("table.meta tbody tr")
        await expect(meta).to_have_count(3)
        await expect(meta.nth(0).locator("td")).to_have_text(["camera", HOSTILE])
        await expect(meta.nth(1).locator("td")).to_have_text(["key", "photos/2024/notes.txt"])
        await expect(meta.nth(2).locator("td")).to_have_text(["lens", "<b>50mm</b> & f/2"])
        assert await details.locator("img, b").count() == 0
        assert await page.locator("img[src=x]").count() == 0
        await page.screenshot(path=shot("file-details"))

        # Escape closes it; the address forgets the file, focus is back on its link.
        await page.keyboard.press("Escape")
        await expect(details).not_to_be_visible()
        # The dialog's `close` event, which forgets the address, is dispatched a task after
        # it hides: awaited, not read at once.
        await page.wait_for_function("location.hash === ''", timeout=10_000)
        assert await page.evaluate("location.hash") == ""
        await expect(plain_link).to_be_focused()

        # An object's details name its bucket and key; download and link are there too.
        await obj_link.click()
        await expect(details).to_be_visible()
        await expect(details.get_by_label("key", exact=True)).to_have_value("photos/2025/notes.txt")
        await expect(props).to_contain_text(bucket)
        await expect(details.locator("table.meta")).to_have_count(0)
        await expect(details).to_contain_text("No metadata.")
        async with page.expect_download() as got:
            await details.get_by_role("button", name="Download").click()
        saved = await (await got.value).path()
        assert saved.read_bytes() == b"object\n"
        await details.get_by_role("button", name="Copy link").click()
        share = page.locator("#share")
        await expect(share).to_be_visible()
        await share.get_by_role("button", name="Create link").click()
        field = share.get_by_label("Signed URL")
        await expect(field).not_to_have_value("")
        async with httpx.AsyncClient() as anon:  # no credential: the link is the permission
            r = await anon.get(await field.input_value())
        assert r.status_code == 200 and r.content == b"object\n"
        await page.keyboard.press("Escape")  # closes the link dialog only
        await expect(share).not_to_be_visible()
        await expect(details).to_be_visible()

        # Deleted elsewhere while shown: the live stream says so in the view.
        async with shared_system.client(me) as c:
            assert (await c.delete(f"/v1/files/{obj}")).status_code == 200
        await expect(page.locator("#details-status")).to_have_text("deleted")
        await expect(details.get_by_role("button", name="Download")).to_have_count(0)
        # The activity feed names it too, though the event carries only its id.
        deleted = page.locator("#activity li[data-type=FileDeleted]")
        await expect(deleted).to_have_count(1)
        await expect(deleted.locator(".what")).to_have_text("photos/2025/notes.txt")
        await page.get_by_role("button", name="Close").click()
        await expect(details).not_to_be_visible()
        # Back, after opening them from the list, closes them too.
        await plain_link.click()
        await expect(page.locator("#details-title")).to_have_text("photos/2024/notes.txt")
        await page.go_back()
        await expect(details).not_to_be_visible()
        await page.wait_for_function("location.hash === ''", timeout=10_000)
        assert await page.evaluate("location.hash") == ""

        assert alerts == []
        await no_csp_violations(page)
        await ctx.close()


async def test_the_details_address_opens_them_and_never_shows_anothers_file(
    shared_system: System,
) -> None:
    me, other = user(), user()
    mine = await upload(shared_system, me, "mine.txt", b"mine\n", metadata={"k": "v"})
    theirs = await upload(
        shared_system, other, "secret.txt", b"secret\n", metadata={"who": "their secret"}
    )
    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        # An address naming a file's details, opened before signing in: they open after.
        await page.add_init_script(WATCH_CSP)
        await page.goto(f"{shared_system.url}/console#file/{mine}")
        await expect(page.locator("body[data-ready=true]")).to_have_count(1)
        await expect(page.locator("#signin")).to_be_visible()
        await expect(page.locator("#details")).not_to_be_visible()
        await sign_in_with_details(page, shared_system.token(me))
        details = page.locator("#details")
        await expect(page.locator("#details-title")).to_have_text("mine.txt")
        await expect(details.locator("table.meta tbody tr td")).to_have_text(["k", "v"])

        # Another user's file id typed into the address: not found, nothing of it shown.
        await page.evaluate(f"location.hash = '#file/{theirs}'")
        await expect(page.locator("#details-title")).to_have_text("File not found")
        await expect(details).to_contain_text("No such file")
        await expect(details).not_to_contain_text("secret")
        await expect(details.locator("dl.props")).to_have_count(0)
        await expect(details.get_by_role("button", name="Download")).to_have_count(0)
        # Back (the address without the file) closes the view.
        await page.go_back()
        await expect(page.locator("#details-title")).to_have_text("mine.txt")
        await page.keyboard.press("Escape")
        await expect(details).not_to_be_visible()
        await no_csp_violations(page)
        await ctx.close()


async def sign_in_with_details(page: Page, token: str) -> None:
    """Signs in as test_console.sign_in does, but the details dialog opened at the end takes
    the focus (not the main region)."""
    await page.get_by_label("Token (JWT)").check()
    field = page.get_by_label("API key or token")
    await field.fill(token)
    await field.press("Enter")
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#details")).to_be_visible()


RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: shows what follows it backwards


async def test_a_name_cannot_disguise_itself_with_bidi_controls(shared_system: System) -> None:
    """`invoice<RLO>gpj.exe` renders as `invoiceexe.jpg` (the "Trojan Source" trick, in a file
    name): an executable disguised as a picture. The console shows such control characters
    as visible `⟨U+202E⟩` wherever it shows a name (list, labels, tooltips, details, the
    activity feed, status messages), so the name reads in its real order."""
    me = user()
    fid = await upload(shared_system, me, f"invoice{RLO}gpj.exe", b"MZ\n")
    shown = "invoice⟨U+202E⟩gpj.exe"
    async with signed_in(shared_system, me) as page:
        link = page.locator(f"#files tbody tr[data-id='{fid}'] a.file-link")
        await expect(link).to_have_text(shown)
        assert await link.get_attribute("title") == shown
        await expect(page.get_by_role("button", name=f"Download {shown}")).to_have_count(1)
        await page.get_by_role("button", name=f"Download {shown}").click()
        await expect(page.locator("#status")).to_have_text(f"Downloaded {shown}.")

        await link.click()
        await expect(page.locator("#details-title")).to_have_text(shown)
        await expect(page.locator("#details dl.props")).to_contain_text(shown)
        await page.keyboard.press("Escape")

        # Renamed elsewhere: the activity feed names it by its new name, made visible too.
        async with shared_system.client(me) as c:
            r = await c.patch(f"/v1/files/{fid}", json={"name": f"report{RLO}fdp.scr"})
            assert r.status_code == 200, r.text
        updated = page.locator("#activity li[data-type=FileUpdated] .what")
        await expect(updated).to_have_text("report⟨U+202E⟩fdp.scr")
        await expect(link).to_have_text("report⟨U+202E⟩fdp.scr")
        # Nowhere in the page, text or attribute, is the override itself left.
        html = await page.evaluate("document.body.innerText + document.body.innerHTML")
        assert RLO not in html
        await no_csp_violations(page)


async def test_a_very_long_name_never_widens_the_page(shared_system: System) -> None:
    """A name of 1,000 characters without a space (the API allows 1,024) wraps wherever it
    is shown: the list, the status line after a download, the dialogs' titles. The page
    never scrolls sideways, on a desktop or a phone."""
    me = user()
    long = "a" * 996 + ".txt"
    fid = await upload(shared_system, me, long, b"long\n")
    async with chromium() as browser:
        async for width, page in signed_in_at(browser, shared_system, me):
            row = page.locator(f"#files tbody tr[data-id='{fid}']")
            await expect(row.locator("a.file-link")).to_have_text(long)
            assert await page.evaluate(OVERFLOW_X) <= 0, f"the list is wider than {width}px"
            async with page.expect_download():
                await row.get_by_role("button", name="Download").click()
            await expect(page.locator("#status")).to_have_text(f"Downloaded {long}.")
            assert await page.evaluate(OVERFLOW_X) <= 0, f"the status line is wider than {width}px"
            for button, dialog in (("Rename or move", "#edit"), ("Copy link to", "#share")):
                await row.get_by_role("button", name=f"{button} {long}").click()
                await expect(page.locator(dialog)).to_be_visible()
                box = await page.locator(dialog).bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (
                    f"{dialog} is wider than {width}px"
                )
                await page.keyboard.press("Escape")
                await expect(page.locator(dialog)).not_to_be_visible()
