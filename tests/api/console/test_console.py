"""The web console at /console, driven in headless Chromium against a whole running Cairn:
sign-in, uploads through Uppy and tus (two in parallel; one interrupted by a reload and
resumed), the live file list and activity feed, download, preview, delete, sign-out, and
phone width. No Content-Security-Policy violation may happen along the way."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from api.console.mount import CSP
from tests.api.answers import user
from tests.api.console.browser import chromium, shot
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHUNK = 5 * 1024 * 1024  # api/console/static/js/upload.js

# Counts every CSP violation the page sees (registered before any page script runs).
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


async def open_console(page: Page, system: System) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.add_init_script(WATCH_CSP)
    await page.goto(f"{system.url}/console")
    try:
        await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    except AssertionError as e:
        raise AssertionError(f"the console did not start; page errors: {errors}") from e


async def sign_in(page: Page, token: str) -> None:
    """By keyboard only: the credential choice, the field, Enter."""
    await page.get_by_label("Token (JWT)").check()
    field = page.get_by_label("API key or token")
    await field.fill("")
    await field.focus()
    await page.keyboard.type(token)
    await page.keyboard.press("Enter")
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#live")).to_have_text("live")
    # Signing in ends by moving focus to the main region once the lists are loaded
    # (main.js, enter()); a test that focuses a control before that would lose its focus
    # (and its key presses) to it.
    await expect(page.locator("#main")).to_be_focused()


# How far the page scrolls sideways: 0 (or less) when nothing is wider than the viewport.
OVERFLOW_X = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


async def signed_in_at(
    browser: Browser, system: System, user: str, widths: tuple[int, ...] = (1280, 390)
) -> AsyncIterator[tuple[int, Page]]:
    """The console signed in as `user` in a fresh page at each of `widths` (a desktop and a
    phone by default), one after another; each page's context is closed after its turn."""
    for width in widths:
        ctx = await browser.new_context(viewport={"width": width, "height": 900})
        try:
            page = await ctx.new_page()
            await open_console(page, system)
            await sign_in(page, system.token(user))
            yield width, page
        finally:
            await ctx.close()


@asynccontextmanager
async def signed_in(
    system: System, who: str, *, clipboard: bool = False, dialogs: bool = False
) -> AsyncIterator[Page]:
    """A page of a fresh browser at a 1280 x 900 viewport, the console open and `who`
    signed in (with a token), closed after. `clipboard`: the page may read and write the
    clipboard; `dialogs`: every dialog it opens (a confirm()) is accepted."""
    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            if clipboard:
                await ctx.grant_permissions(["clipboard-read", "clipboard-write"])
            page = await ctx.new_page()
            if dialogs:
                page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
            await open_console(page, system)
            await sign_in(page, system.token(who))
            yield page
        finally:
            await ctx.close()


async def no_csp_violations(page: Page) -> None:
    assert await page.evaluate("window.__csp") == []


async def tus_upload(system: System, who: str, name: str, data: bytes) -> None:
    """An upload made outside the browser (another client of the same user)."""
    meta = f"filename {base64.b64encode(name.encode()).decode()}"
    async with system.client(who) as c:
        r = await c.post(
            "/v1/tus/",
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(data)),
                "Upload-Metadata": meta,
            },
        )
        assert r.status_code == 201, r.text
        p = await c.patch(
            r.headers["location"],
            content=data,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert p.status_code == 204, p.text

        # The console lists files from the read model, which trails the upload by a moment
        # (on a system just started, until its projector has joined): wait for the file to
        # be listed, as someone opening the console after uploading elsewhere finds it.
        async def listed() -> bool:
            items = (await c.get("/v1/files")).json()["items"]
            return any(f["name"] == name for f in items)

        await wait_until(listed)


async def test_console_is_static_with_a_strict_policy(shared_system: System) -> None:
    async with httpx.AsyncClient(base_url=shared_system.url) as c:
        page = await c.get("/console")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert page.headers["x-content-type-options"] == "nosniff"
        # No inline script or style in the page itself.
        assert "<script>" not in page.text and "style=" not in page.text
        for path in ("/console/vendor/uppy.js", "/console/js/main.js", "/console/console.css"):
            r = await c.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-security-policy"] == CSP
        missing = await c.get("/console/nope.js")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"]


async def test_sign_in_upload_list_download_preview_delete(
    shared_system: System, tmp_path: Path
) -> None:
    me = user()
    one = tmp_path / "notes.txt"
    one.write_text("first file, plain text\n" * 100)
    two = tmp_path / "data.bin"
    two.write_bytes(os.urandom(300_000))
    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await open_console(page, shared_system)

        # A refused credential keeps you out, with the reason.
        await page.get_by_label("API key or token").fill("not-a-key")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#signin-error")).to_have_text("That key or token was refused.")
        assert await page.evaluate("sessionStorage.length") == 0
        await page.screenshot(path=shot("sign-in"))

        await sign_in(page, shared_system.token(me))
        # The credential is in this tab's session storage, not in the URL or local storage.
        assert "eyJ" not in page.url
        assert me not in await page.evaluate("JSON.stringify(localStorage)")

        # Two files at once through the Dashboard's file input, uploaded by tus.
        await page.locator("input.uppy-Dashboard-input").first.set_input_files([one, two])
        await page.locator(".uppy-StatusBar-actionBtn--upload").click()
        rows = page.locator("#files tbody tr")
        await expect(rows).to_have_count(2)
        await expect(page.locator("#files tbody")).to_contain_text("notes.txt")
        await expect(page.locator("#files tbody")).to_contain_text("data.bin")
        await expect(page.locator("#activity li[data-type=FileCreated]")).to_have_count(2)

        # A file uploaded by another client appears live (SSE), without a reload.
        await tus_upload(shared_system, me, "from-elsewhere.txt", b"hello from curl\n")
        await expect(rows).to_have_count(3)
        await expect(page.locator("#files tbody")).to_contain_text("from-elsewhere.txt")
        await page.screenshot(path=shot("files"))

        # Download: the very bytes that were uploaded.
        async with page.expect_download() as got:
            await page.get_by_role("button", name="Download data.bin").click()
        saved = await (await got.value).path()
        assert Path(saved).read_bytes() == two.read_bytes()

        # Preview of text, in the dialog; Escape closes it and focus returns to the button.
        preview = page.get_by_role("button", name="Preview notes.txt")
        await preview.click()
        await expect(page.locator("#preview .text-preview")).to_contain_text(
            "first file, plain text"
        )
        await page.screenshot(path=shot("preview"))
        await page.keyboard.press("Escape")
        await expect(page.locator("#preview")).not_to_be_visible()
        await expect(preview).to_be_focused()

        # Delete: gone from the list, and from the API (the file itself, not the lagging list).
        doomed = await rows.filter(has_text="notes.txt").get_attribute("data-id")
        await page.get_by_role("button", name="Delete notes.txt").click()
        await expect(rows).to_have_count(2)
        await expect(page.locator("#files tbody")).not_to_contain_text("notes.txt")
        async with shared_system.client(me) as c:
            assert (await c.get(f"/v1/files/{doomed}")).status_code == 404

        # Phone width: one column, nothing wider than the screen.
        await page.set_viewport_size({"width": 390, "height": 844})
        wide = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0
        await page.screenshot(path=shot("phone"), full_page=True)

        await no_csp_violations(page)

        # Sign-out forgets the credential.
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.locator("#signin")).to_be_visible()
        assert await page.evaluate("sessionStorage.length") == 0
        await ctx.close()


async def test_an_upload_cut_by_a_reload_resumes(shared_system: System, tmp_path: Path) -> None:
    me = user()
    big = tmp_path / "big.bin"
    data = os.urandom(2 * CHUNK + 12345)
    big.write_bytes(data)
    held: list[Route] = []

    async def hold_after_first_chunk(route: Route) -> None:
        # The first PATCH goes through; the next one never reaches the server: the upload
        # is stopped mid-way, at a known offset, when the page reloads.
        if route.request.method == "PATCH":
            if held or route.request.headers.get("upload-offset") != "0":
                held.append(route)
                return
        await route.continue_()

    async with chromium() as browser:
        ctx = await browser.new_context()
        page = await ctx.new_page()
        await open_console(page, shared_system)
        await sign_in(page, shared_system.token(me))
        await page.route("**/v1/tus/**", hold_after_first_chunk)
        await page.locator("input.uppy-Dashboard-input").first.set_input_files(big)
        async with page.expect_response(
            lambda r: r.request.method == "PATCH" and r.status == 204
        ) as first:
            await page.locator(".uppy-StatusBar-actionBtn--upload").click()
        location = (await first.value).url
        async with shared_system.client(me) as c:
            head = await c.head(location, headers={"Tus-Resumable": "1.0.0"})
        assert head.headers["upload-offset"] == str(CHUNK)

        await page.reload()
        await page.unroute("**/v1/tus/**")
        for route in held:
            with contextlib.suppress(Exception):
                await route.abort()
        await expect(page.locator("body[data-ready=true]")).to_have_count(1)
        await expect(page.locator("#app")).to_be_visible()  # still signed in after a reload

        sent: list[dict[str, Any]] = []
        page.on(
            "request",
            lambda r: (
                sent.append({"method": r.method, "url": r.url, "headers": r.headers})
                if "/v1/tus/" in r.url
                else None
            ),
        )
        await page.locator("input.uppy-Dashboard-input").first.set_input_files(big)
        await page.locator(".uppy-StatusBar-actionBtn--upload").click()
        await expect(page.locator("#files tbody tr")).to_have_count(1)

        # Resumed, not restarted: no new upload, a HEAD for the offset, then the rest.
        assert [s["method"] for s in sent if s["method"] == "POST"] == []
        assert any(s["method"] == "HEAD" and s["url"] == location for s in sent)
        patches = [s for s in sent if s["method"] == "PATCH"]
        assert patches[0]["url"] == location
        assert patches[0]["headers"]["upload-offset"] == str(CHUNK)
        async with shared_system.client(me) as c:
            files = (await c.get("/v1/files")).json()["items"]
        assert [(f["name"], f["size"], f["sha256"]) for f in files] == [
            ("big.bin", len(data), hashlib.sha256(data).hexdigest())
        ]
        await no_csp_violations(page)
        await ctx.close()


async def test_buckets_create_open_upload_into_and_delete(
    shared_system: System, tmp_path: Path
) -> None:
    me = user()
    name = f"con-{uuid.uuid4().hex[:10]}"
    doc = tmp_path / "in-bucket.txt"
    doc.write_text("inside a bucket\n")
    async with signed_in(shared_system, me, dialogs=True) as page:
        # The tabs work from the keyboard: arrow right selects Buckets.
        await page.get_by_role("tab", name="Files").focus()
        await page.keyboard.press("ArrowRight")
        await expect(page.get_by_role("tab", name="Buckets")).to_have_attribute(
            "aria-selected", "true"
        )
        await expect(page.locator("#panel-buckets")).to_be_visible()

        # A bad name is refused in the form, nothing is created.
        await page.get_by_label("Name", exact=True).fill("Not OK!")
        await page.get_by_role("button", name="Create bucket").click()
        await expect(page.locator("#bucket-error")).to_contain_text("lower-case")

        await page.get_by_label("Name", exact=True).fill(name)
        await page.get_by_label("Public (anyone may read its objects)").check()
        await page.get_by_role("button", name="Create bucket").click()
        created = page.locator(f"#buckets tbody tr[data-name='{name}']")
        await expect(created).to_contain_text("public")
        await expect(page.locator("#activity li[data-type=BucketCreated]")).to_have_count(1)
        await page.screenshot(path=shot("buckets"))

        # Open it: the Files tab lists that bucket, and uploads go into it.
        await page.get_by_role("button", name=f"Open {name}").click()
        await expect(page.locator("#panel-files")).to_be_visible()
        await expect(page.locator("#bucket-pick")).to_have_value(name)
        await page.locator("input.uppy-Dashboard-input").first.set_input_files(doc)
        await page.locator(".uppy-StatusBar-actionBtn--upload").click()
        await expect(page.locator("#files tbody tr")).to_have_count(1)
        async with shared_system.client(me) as c:
            files = (await c.get("/v1/files", params={"bucket": name})).json()["items"]
        assert [(f["name"], f["bucket"]) for f in files] == [("in-bucket.txt", name)]

        # Deleting a non-empty bucket asks twice (both accepted here), then it is gone.
        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Delete bucket {name}").click()
        await expect(created).to_have_count(0)
        async with shared_system.client(me) as c:
            assert (await c.get(f"/v1/buckets/{name}")).status_code == 404

            async def emptied() -> bool:  # the files list is a read model: it may lag
                r = await c.get("/v1/files", params={"bucket": name})
                return r.json()["items"] == []

            await wait_until(emptied)
        await no_csp_violations(page)


async def test_a_token_pasted_as_an_api_key_signs_in(shared_system: System) -> None:
    """ "API key" is the default choice; a token pasted without changing it (as from `python3
    dev.py token alice`) was refused as a key. It is tried as the token it plainly is."""
    me = user()
    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        await open_console(page, shared_system)
        await expect(page.get_by_label("API key", exact=True)).to_be_checked()
        await page.get_by_label("API key or token").fill(shared_system.token(me))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#app")).to_be_visible()
        await expect(page.locator("#who")).to_have_text("Signed in with a token")
        await expect(page.locator("#live")).to_have_text("live")
        # Something that is not a token is still refused, with the reason.
        await page.get_by_role("button", name="Sign out").click()
        await page.get_by_label("API key or token").fill("eyJ.not-a.token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#signin-error")).to_have_text("That key or token was refused.")
        assert await page.evaluate("sessionStorage.length") == 0
        await no_csp_violations(page)
        await ctx.close()


async def test_an_empty_list_says_why_it_is_empty(shared_system: System) -> None:
    """A name filter that matches nothing said "No files yet." over a list of files: it
    says that nothing starts with the filter, and a bucket without files says which."""
    me = user()
    await tus_upload(shared_system, me, "present.txt", b"here\n")
    async with signed_in(shared_system, me) as page:
        await expect(page.locator("#files tbody tr")).to_have_count(1)
        empty = page.locator("#files-empty")
        await page.locator("#files-filter").fill("zz")
        await expect(empty).to_have_text("No file name starts with \u201czz\u201d.")
        await expect(empty).to_be_visible()
        await page.locator("#files-filter").fill("")
        await expect(page.locator("#files tbody tr")).to_have_count(1)
        await expect(empty).to_be_hidden()
        await page.locator("#bucket-pick").select_option("default")
        await expect(page.locator("#files tbody tr")).to_have_count(1)
        await page.locator("#files-filter").fill("zz")
        await expect(empty).to_have_text("No file name starts with \u201czz\u201d in default.")
        await no_csp_violations(page)


async def test_activity_times_stay_on_one_line(shared_system: System) -> None:
    """Next to a long event type (UploadBytesAppended) the time wrapped, "4:18:06" over "PM"
    (the README's screenshot showed it); both stay whole, the type on the next line if the
    two do not fit side by side."""
    me = user()
    async with chromium() as browser:
        for width in (1280, 375):
            ctx = await browser.new_context(viewport={"width": width, "height": 900})
            page = await ctx.new_page()
            await open_console(page, shared_system)
            await sign_in(page, shared_system.token(me))
            await tus_upload(shared_system, me, f"at-{width}.txt", b"a line\n")
            item = page.locator("#activity li[data-type=UploadBytesAppended]").first
            await expect(item).to_be_visible()
            # Line boxes of the time's text: one, not "4:18:06" over "PM".
            lines = await item.locator("time").evaluate(
                "t => { const r = document.createRange(); r.selectNodeContents(t);"
                " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size }"
            )
            assert lines == 1, (width, lines)
            # Nor is the type broken inside its word ("UploadBytesAppende" over "d").
            type_lines = await item.locator(".type").evaluate(
                "t => { const r = document.createRange(); r.selectNodeContents(t);"
                " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size }"
            )
            assert type_lines == 1, (width, type_lines)
            await item.screenshot(path=shot(f"activity-{width}"))
            assert await page.evaluate("document.documentElement.scrollWidth - innerWidth") <= 0
            await ctx.close()
