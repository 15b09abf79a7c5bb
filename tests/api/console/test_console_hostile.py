"""The console against markup in everything users choose, in headless Chromium against a
whole running Cairn: a file's name, content type and metadata, an object's key,
X-Amz-Meta values and stored headers, a tus upload's filename, a task's archive name, a fetch's URL and the
error that names it, and the live events that carry them. Each payload, had it become
markup, would set `window.__pwned` or leave an element with an event handler: the page must
show every one as literal text and run none of them.

Twice: once with the console's Content-Security-Policy bypassed (so the escaping alone is
what is tested: an inline handler the policy blocks would hide a missing escape), once
under the policy (the console works under it, and nothing trips it)."""

from __future__ import annotations

import base64
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.api.console.browser import chromium
from tests.api.console.test_console import WATCH_CSP, no_csp_violations, open_console, sign_in
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

# A file's name may not hold `/` (nor controls): every payload of a name is slash-free.
NAME = '"><img src=x onerror="window.__pwned=1">.html'
BODY = "<script>window.__pwned=2</script><img src=x onerror=window.__pwned=3>\n"
META = {
    "note": '"><script>window.__pwned=4</script>',
    "<b onmouseover=window.__pwned=5>k": "<img src=x onerror=window.__pwned=6>",
}
KEY = "<svg onload=window.__pwned=7>.txt"
AMZ_META = '"><img src=x onerror=window.__pwned=8>'
# A stored header's value is visible ASCII and spaces: markup is storable, and answered back.
STORED = '"><img src=x onerror=window.__pwned=16>'
TUS_NAME = "<iframe onload=window.__pwned=9>.txt"
ARCHIVE = "<img src=x onerror=window.__pwned=10>.zip"
# A host that cannot exist (RFC 6761): the fetch is accepted and then fails, with an error.
URL = 'http://cairn-hostile.invalid/"><script>window.__pwned=11</script>?q=<img/src=x/onerror=window.__pwned=12>'
# Loopback: refused at once (SSRF), the form's error line quoting it.
REFUSED = 'http://127.0.0.1:9/"><script>window.__pwned=14</script>'


async def _listed(c: httpx.AsyncClient, file_id: str) -> bool:
    return any(f["id"] == file_id for f in (await c.get("/v1/files?limit=100")).json()["items"])


async def _seed(system: System, me: str, bucket: str) -> dict[str, Any]:
    """Every hostile thing, made through the API as another client of `me` would."""
    async with system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
        r = await c.post(
            "/v1/uploads",
            json={
                "file_name": NAME,
                "file_size": len(BODY),
                "content_type": "text/html",
                "metadata": META,
            },
        )
        assert r.status_code == 201, r.text
        up = r.json()["id"]
        assert (await c.put(f"/v1/uploads/{up}/chunks/0", content=BODY.encode())).status_code
        done = await c.post(f"/v1/uploads/{up}/complete")
        assert done.status_code == 200, done.text
        file_id = done.json()["file_id"]

        put = await c.put(
            f"/v1/buckets/{bucket}/objects/{quote(KEY, safe='')}",
            content=b"object\n",
            headers={
                "Content-Type": "text/plain",
                "X-Amz-Meta-Note": AMZ_META,
                "Content-Language": STORED,
            },
        )
        assert put.status_code in (200, 201), put.text
        object_id = put.json()["id"]

        tus = await c.post(
            "/v1/tus/",
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "4",
                "Upload-Metadata": f"filename {base64.b64encode(TUS_NAME.encode()).decode()}",
            },
        )
        assert tus.status_code == 201, tus.text
        patched = await c.patch(
            tus.headers["location"],
            content=b"tus\n",
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert patched.status_code == 204, patched.text

        params = {"files": [file_id], "format": "zip", "output": {"file_name": ARCHIVE}}
        task = await c.post("/v1/tasks", json={"type": "compress", "params": params})
        assert task.status_code == 202, task.text

        fetch = await c.post("/v1/fetches", json={"url": URL})
        assert fetch.status_code == 202, fetch.text
        fetch_id = fetch.json()["id"]

        async def settled() -> dict[str, Any] | None:
            files = (await c.get("/v1/files?limit=100")).json()["items"]
            f = (await c.get(f"/v1/fetches/{fetch_id}")).json()
            t = (await c.get("/v1/tasks")).json()["items"]
            names = {x["name"] for x in files}
            ready = (
                {NAME, TUS_NAME} <= names
                and f["status"] == "FAILED"
                and t
                and t[0]["status"] == "COMPLETED"
            )
            return f if ready else None

        failed = await wait_until(settled)
        assert await _listed(c, object_id)
    # The fetch's URL as the API keeps it, and its error (which may quote it).
    return {"file_id": file_id, "url": failed["url"], "error": failed["last_error"]}


async def _nothing_ran(page: Page) -> None:
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    # No element was made of a payload: no handler attribute anywhere, no inline script.
    assert await page.locator("[onerror], [onload], [onmouseover]").count() == 0
    assert await page.locator("script:not([src])").count() == 0
    assert await page.locator("img[src=x]").count() == 0


async def _visit(page: Page, system: System, me: str, bucket: str, seeded: dict[str, Any]) -> None:
    # Files: the names as text (a link's text and tooltip), the archive a task made.
    files = page.locator("#files tbody a.file-link")
    for name in (NAME, TUS_NAME, KEY, ARCHIVE):
        link = files.filter(has_text=name)
        await expect(link).to_have_count(1)
        assert await link.get_attribute("title") == name
    await _nothing_ran(page)

    # Details of the HTML file: name, content type and metadata as text; its preview is
    # the markup as text.
    await files.filter(has_text=NAME).click()
    details = page.locator("#details")
    await expect(details).to_be_visible()
    await expect(page.locator("#details-title")).to_have_text(NAME)
    rows = details.locator("table.meta tbody tr")
    await expect(rows).to_have_count(len(META))
    for i, (k, v) in enumerate(sorted(META.items())):
        await expect(rows.nth(i).locator("td")).to_have_text([k, v])
    await details.get_by_role("button", name="Preview").click()
    await expect(page.locator("#preview pre.text-preview")).to_have_text(BODY)
    await _nothing_ran(page)
    await page.locator("#preview-close").click()
    await page.keyboard.press("Escape")
    await expect(details).not_to_be_visible()

    # Objects: the key in the row and its details with the X-Amz-Meta value.
    await page.get_by_role("tab", name="Buckets").click()
    await page.get_by_role("button", name=f"Browse objects of {bucket}").click()
    row = page.locator("#objects tbody tr").filter(has_text=KEY)
    await expect(row).to_have_count(1)
    assert await row.get_attribute("data-key") == KEY
    await row.locator("a.file-link").click()
    await expect(page.locator("#details-title")).to_have_text(KEY)
    await expect(details.locator("table.meta")).to_contain_text(AMZ_META)
    # Its stored header, in the table and in the owner's form (an input's value).
    await expect(details.locator("table.stored-headers tbody td")).to_have_text(
        ["Content-Language", STORED]
    )
    await details.get_by_role("button", name="Edit headers").click()
    await expect(details.get_by_label("Content-Language")).to_have_value(STORED)
    await _nothing_ran(page)
    await page.keyboard.press("Escape")
    await expect(details).not_to_be_visible()

    # Fetches: the URL and the error that names it.
    await page.get_by_role("tab", name="Fetches").click()
    fetch = page.locator("#fetches tbody tr")
    await expect(fetch).to_have_count(1)
    await expect(fetch.locator("td.name")).to_have_text(seeded["url"])
    await expect(fetch.locator(".status-cell")).to_contain_text(seeded["error"])
    # Typed into the form and refused: the error line quotes it, as text.
    await page.get_by_label("URL (http or https)").fill(REFUSED)
    await page.get_by_role("button", name="Fetch", exact=True).click()
    await expect(page.locator("#fetch-error")).to_contain_text(f"Could not fetch {REFUSED}")
    await _nothing_ran(page)

    # Tasks: the archive's name in the task's row and its result button.
    await page.get_by_role("tab", name="Tasks").click()
    await expect(page.locator("#tasks tbody tr").filter(has_text=ARCHIVE)).to_have_count(1)
    await _nothing_ran(page)

    # Live: an object put now reaches the activity feed, by its key, as text.
    live = f"<img src=x onerror=window.__pwned=13> {uuid.uuid4().hex[:6]}"
    async with system.client(me) as c:
        r = await c.put(f"/v1/buckets/{bucket}/objects/{quote(live, safe='')}", content=b"l\n")
        assert r.status_code in (200, 201), r.text
    await expect(page.locator("#activity li .what").filter(has_text=live).first).to_be_visible()
    await _nothing_ran(page)

    # A link someone sent, its id a payload: whatever the API answers (a 404, or a 400
    # quoting the id) is said as text.
    hostile_id = "<img src=x onerror=window.__pwned=15>"
    await page.evaluate("(id) => { location.hash = '#file/' + encodeURIComponent(id) }", hostile_id)
    await expect(page.locator("#details")).to_be_visible()
    await expect(page.locator("#details-body p.error")).to_have_count(1)
    said = await page.locator("#details-body p.error").text_content()
    assert said and ("No such file" in said or hostile_id in said), said
    await _nothing_ran(page)
    await page.keyboard.press("Escape")


async def test_markup_users_chose_is_shown_as_text_and_never_runs(shared_system: System) -> None:
    me = f"hostile-{uuid.uuid4().hex[:8]}"
    bucket = f"hostile-{uuid.uuid4().hex[:8]}"
    seeded = await _seed(shared_system, me, bucket)
    assert "<script>" in seeded["url"] or "%3Cscript%3E" in seeded["url"]
    async with chromium() as browser:
        for bypass in (True, False):
            ctx = await browser.new_context(
                viewport={"width": 1280, "height": 900}, bypass_csp=bypass
            )
            try:
                page = await ctx.new_page()
                await page.add_init_script(WATCH_CSP)
                await open_console(page, shared_system)
                await sign_in(page, shared_system.token(me))
                await _visit(page, shared_system, me, bucket, seeded)
                if not bypass:
                    await no_csp_violations(page)
            finally:
                await ctx.close()


ACTIVE = {
    # Each would set the flag, and read the console's credential, were it run in Cairn's origin.
    "page.html": ("text/html", b"<script>window.__pwned=sessionStorage.length+1</script>"),
    "pic.svg": (
        "image/svg+xml",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>window.__pwned=1</script></svg>',
    ),
    "feed.xml": (
        "application/xhtml+xml",
        b'<html xmlns="http://www.w3.org/1999/xhtml"><script>window.__pwned=1</script></html>',
    ),
}


async def test_active_content_served_on_the_consoles_origin_never_runs(
    shared_system: System,
) -> None:
    """HTML, SVG and XHTML uploaded by anyone and opened in a browser from a public bucket
    (no credential) or a signed link, on the console's own origin: served with
    `Content-Security-Policy: sandbox` (api/http/media.py), so the document has an opaque
    origin and its scripts do not run."""
    me = f"active-{uuid.uuid4().hex[:8]}"
    bucket = f"active-{uuid.uuid4().hex[:8]}"
    urls = []
    async with shared_system.client(me) as c:
        created = await c.post("/v1/buckets", json={"name": bucket, "public": True})
        assert created.status_code == 201, created.text
        for key, (ctype, data) in ACTIVE.items():
            r = await c.put(
                f"/v1/buckets/{bucket}/objects/{key}", content=data, headers={"Content-Type": ctype}
            )
            assert r.status_code in (200, 201), r.text
            urls.append(f"{shared_system.url}/v1/buckets/{bucket}/objects/{key}")
            signed = await c.post(
                f"/v1/files/{r.json()['id']}/signed-url", json={"expires_in": 600}
            )
            assert signed.status_code in (200, 201), signed.text
            urls.append(str(httpx.URL(shared_system.url).join(signed.json()["url"])))
    async with chromium() as browser:
        ctx = await browser.new_context()
        try:
            page = await ctx.new_page()
            # The console's tab first, holding a credential in the origin's session storage.
            await open_console(page, shared_system)
            await sign_in(page, shared_system.token(me))
            for url in urls:
                answer = await page.goto(url)
                assert answer is not None and answer.status == 200, url
                assert await page.evaluate("typeof window.__pwned") == "undefined", url
                assert await page.evaluate("self.origin") == "null", url  # opaque: not Cairn's
                headers = await answer.all_headers()
                assert headers["content-security-policy"].startswith("sandbox"), url
                assert headers["x-content-type-options"] == "nosniff", url
        finally:
            await ctx.close()
