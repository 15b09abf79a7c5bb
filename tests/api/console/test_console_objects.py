"""The console's Objects tab and signed links, in headless Chromium against a whole running
Cairn: folders from prefix/delimiter listing, a breadcrumb back up, an object put by
another client appearing live, download, delete; "Copy link" on a file and on an object
makes a signed URL with the chosen expiry that reads the bytes without a credential."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from tests.api.answers import user
from tests.api.console.browser import chromium, shot
from tests.api.console.test_console import (
    OVERFLOW_X,
    no_csp_violations,
    signed_in,
    signed_in_at,
    tus_upload,
)
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def put(system: System, who: str, bucket: str, key: str, data: bytes) -> None:
    async with system.client(who) as c:
        r = await c.put(f"/v1/buckets/{bucket}/objects/{key}", content=data)
        assert r.status_code in (200, 201), r.text


async def signed_link(page: Page, label: str, expiry: str) -> str:
    """Opens "Copy link" for `label`, picks the expiry, creates the link; returns it."""
    await page.get_by_role("button", name=f"Copy link to {label}", exact=True).click()
    await expect(page.locator("#share")).to_be_visible()
    await page.get_by_label("Expires after").select_option(label=expiry)
    await page.get_by_role("button", name="Create link").click()
    field = page.get_by_label("Signed URL")
    await expect(field).not_to_have_value("")
    url = await field.input_value()
    # Copied to the clipboard as well. The field is filled before the (asynchronous)
    # clipboard write, which the status line reports once it is done: awaited, not raced.
    await expect(page.locator("#status")).to_have_text(f"Link to {label} copied.")
    assert await page.evaluate("navigator.clipboard.readText()") == url
    return url


async def test_copy_a_signed_link_to_a_file(shared_system: System, tmp_path: Path) -> None:
    me = user()
    await tus_upload(shared_system, me, "shared.txt", b"shared by link\n")
    async with signed_in(shared_system, me, clipboard=True) as page:
        await expect(page.locator("#files tbody tr")).to_have_count(1)

        before = time.time()
        url = await signed_link(page, "shared.txt", "15 minutes")
        async with httpx.AsyncClient() as anon:  # no credential: the link is the permission
            r = await anon.get(url)
        assert r.status_code == 200 and r.content == b"shared by link\n"
        # The expiry chosen is the one asked for (15 minutes from now, give or take).
        text = await page.locator("#share-expires").text_content()
        assert text and text.startswith("Works until")
        async with shared_system.client(me) as c:
            file_id = (await c.get("/v1/files")).json()["items"][0]["id"]
            again = await c.post(f"/v1/files/{file_id}/signed-url", json={"expires_in": 900})
        expires = datetime.fromisoformat(again.json()["expires_at"]).timestamp()
        assert before + 800 < expires < time.time() + 1000
        await page.screenshot(path=shot("share"))
        await page.get_by_role("button", name="Close").click()
        await expect(page.locator("#share")).not_to_be_visible()
        await no_csp_violations(page)


async def test_objects_folders_live_download_delete(shared_system: System, tmp_path: Path) -> None:
    me = user()
    bucket = f"tree-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    await put(shared_system, me, bucket, "top.txt", b"top\n")
    await put(shared_system, me, bucket, "docs/a.txt", b"a file in docs\n")
    await put(shared_system, me, bucket, "docs/sub/b.txt", b"b\n")
    async with signed_in(shared_system, me, clipboard=True, dialogs=True) as page:
        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Browse objects of {bucket}").click()
        await expect(page.locator("#panel-objects")).to_be_visible()
        rows = page.locator("#objects tbody tr")
        # The top level: one folder, one object.
        await expect(page.locator("#objects tbody tr[data-prefix='docs/']")).to_have_count(1)
        await expect(page.locator("#objects tbody tr[data-key='top.txt']")).to_have_count(1)
        await expect(rows).to_have_count(2)

        # Into docs/: its folder and its object, names relative to the folder.
        await page.get_by_role("button", name="Open folder docs/").click()
        await expect(page.locator("#objects-path")).to_contain_text("docs")
        await expect(page.locator("#objects tbody tr[data-prefix='docs/sub/']")).to_have_count(1)
        a = page.locator("#objects tbody tr[data-key='docs/a.txt']")
        await expect(a.locator("td.name")).to_have_text("a.txt")
        await expect(rows).to_have_count(2)
        # The name opens the object's details, as a file's does on the Files tab.
        await a.locator("a.file-link").click()
        await expect(page.locator("#details")).to_be_visible()
        await expect(page.locator("#details-title")).to_have_text("docs/a.txt")
        await page.keyboard.press("Escape")
        await expect(page.locator("#details")).not_to_be_visible()

        # An object put by another client into this folder appears live.
        await put(shared_system, me, bucket, "docs/new.txt", b"new\n")
        await expect(page.locator("#objects tbody tr[data-key='docs/new.txt']")).to_have_count(1)
        await page.screenshot(path=shot("objects"))

        # Download: the object's bytes.
        async with page.expect_download() as got:
            await page.get_by_role("button", name="Download docs/a.txt").click()
        assert Path(await (await got.value).path()).read_bytes() == b"a file in docs\n"

        # Preview: a text object opens in the sandboxed preview dialog, as files do.
        preview = page.get_by_role("button", name="Preview docs/a.txt")
        await preview.click()
        await expect(page.locator("#preview .text-preview")).to_contain_text("a file in docs")
        await page.keyboard.press("Escape")
        await expect(page.locator("#preview")).not_to_be_visible()
        await expect(preview).to_be_focused()

        # Delete: gone from the folder and from the API.
        await page.get_by_role("button", name="Delete docs/new.txt").click()
        await expect(page.locator("#objects tbody tr[data-key='docs/new.txt']")).to_have_count(0)
        async with shared_system.client(me) as c:
            assert (await c.get(f"/v1/buckets/{bucket}/objects/docs/new.txt")).status_code == 404

        # The breadcrumb leads back to the top.
        await page.get_by_role("button", name=f"Top of {bucket}").click()
        await expect(page.locator("#objects tbody tr[data-key='top.txt']")).to_have_count(1)
        await no_csp_violations(page)


async def test_objects_sort_by_name_size_and_modified(shared_system: System) -> None:
    me = user()
    bucket = f"sort-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    # Written in this order (modified: b, a, c), of these sizes (a < c < b).
    await put(shared_system, me, bucket, "b.txt", b"b" * 300)
    await put(shared_system, me, bucket, "a.txt", b"a" * 10)
    await put(shared_system, me, bucket, "c.txt", b"c" * 100)
    await put(shared_system, me, bucket, "dir/x.txt", b"x")
    async with signed_in(shared_system, me) as page:
        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Browse objects of {bucket}").click()
        rows = page.locator("#objects tbody tr")
        await expect(rows).to_have_count(4)
        head = page.locator("#objects thead")

        async def order() -> list[str]:
            keys: list[str] = await rows.evaluate_all(
                "rs => rs.map(r => r.dataset.key || r.dataset.prefix)"
            )
            return keys

        def header(column: str) -> Locator:
            return head.locator("th").filter(has=page.get_by_role("button", name=column))

        # By name, ascending (the listing's key order); folders first.
        assert await order() == ["dir/", "a.txt", "b.txt", "c.txt"]
        await expect(header("Name")).to_have_attribute("aria-sort", "ascending")

        # By size: ascending, then (the same button again) descending. By keyboard.
        size = head.get_by_role("button", name="Size")
        await size.focus()
        await page.keyboard.press("Enter")
        await expect(header("Size")).to_have_attribute("aria-sort", "ascending")
        await expect(header("Name")).to_have_attribute("aria-sort", "none")
        assert await order() == ["dir/", "a.txt", "c.txt", "b.txt"]
        await expect(page.locator("#status")).to_have_text("Objects sorted by size, ascending.")
        await size.click()
        await expect(header("Size")).to_have_attribute("aria-sort", "descending")
        assert await order() == ["dir/", "b.txt", "c.txt", "a.txt"]

        # By modified: oldest first, then newest first.
        await head.get_by_role("button", name="Modified").click()
        await expect(header("Modified")).to_have_attribute("aria-sort", "ascending")
        assert await order() == ["dir/", "b.txt", "a.txt", "c.txt"]
        await head.get_by_role("button", name="Modified").click()
        assert await order() == ["dir/", "c.txt", "a.txt", "b.txt"]

        # Name descending; a live change keeps the chosen order.
        await head.get_by_role("button", name="Name").click()
        await head.get_by_role("button", name="Name").click()
        await expect(header("Name")).to_have_attribute("aria-sort", "descending")
        assert await order() == ["dir/", "c.txt", "b.txt", "a.txt"]
        await put(shared_system, me, bucket, "bb.txt", b"bb")
        await expect(page.locator("#objects tbody tr[data-key='bb.txt']")).to_have_count(1)
        assert await order() == ["dir/", "c.txt", "bb.txt", "b.txt", "a.txt"]

        # On a phone-width screen (rows as cards) the sort buttons are still shown.
        await page.set_viewport_size({"width": 390, "height": 800})
        box = await head.get_by_role("button", name="Size").bounding_box()
        assert box is not None and box["width"] > 20 and box["height"] > 10
        await page.screenshot(path=shot("objects-sort-phone"))
        await no_csp_violations(page)


async def test_rename_and_move_an_object(shared_system: System) -> None:
    me = user()
    bucket, other = f"mv-{uuid.uuid4().hex[:8]}", f"mv2-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        for name in (bucket, other):
            assert (await c.post("/v1/buckets", json={"name": name})).status_code == 201
    await put(shared_system, me, bucket, "old.txt", b"renamed bytes\n")
    await put(shared_system, me, bucket, "taken.txt", b"taken\n")
    async with signed_in(shared_system, me) as page:
        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Browse objects of {bucket}").click()
        await expect(page.locator("#objects tbody tr[data-key='old.txt']")).to_have_count(1)

        # Onto a taken key: the dialog says why and nothing changes.
        await page.get_by_role("button", name="Rename or move old.txt").click()
        dialog = page.locator("#edit")
        await expect(dialog).to_be_visible()
        await dialog.get_by_label("New key").fill("taken.txt")
        await dialog.get_by_role("button", name="Save").click()
        await expect(page.locator("#edit-error")).to_contain_text("exists")
        # Renamed: the list shows the new key, not the old one.
        await dialog.get_by_label("New key").fill("docs/new name.txt")
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog).not_to_be_visible()
        await expect(page.locator("#status")).to_have_text("Renamed old.txt to docs/new name.txt.")
        await expect(page.locator("#objects tbody tr[data-key='old.txt']")).to_have_count(0)
        await expect(page.locator("#objects tbody tr[data-prefix='docs/']")).to_have_count(1)
        async with shared_system.client(me) as c:
            r = await c.get(f"/v1/buckets/{bucket}/objects/docs/new%20name.txt")
            assert r.status_code == 200 and r.content == b"renamed bytes\n"
            assert (await c.get(f"/v1/buckets/{bucket}/objects/old.txt")).status_code == 404

        # Moved to the other bucket: it leaves the list shown, and is there.
        await page.get_by_role("button", name="Rename or move taken.txt").click()
        await dialog.get_by_label("To bucket").select_option(other)
        await dialog.get_by_role("button", name="Save").click()
        await expect(page.locator("#objects tbody tr[data-key='taken.txt']")).to_have_count(0)
        async with shared_system.client(me) as c:
            r = await c.get(f"/v1/buckets/{other}/objects/taken.txt")
            assert r.status_code == 200 and r.content == b"taken\n"
        await page.screenshot(path=shot("objects-moved"))
        await no_csp_violations(page)


async def test_objects_empty_states_say_what_is_empty(shared_system: System) -> None:
    """Before a bucket is chosen the tab says to choose one (it was blank); then an empty
    bucket, and a filter that matches nothing, each say so."""
    me = user()
    bucket = f"con-e-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    await put(shared_system, me, bucket, "only.txt", b"one\n")
    async with signed_in(shared_system, me, dialogs=True) as page:
        await page.get_by_role("tab", name="Objects").click()
        empty = page.locator("#objects-empty")
        await expect(empty).to_have_text("Choose a bucket to list its objects.")
        await expect(empty).to_be_visible()

        await page.locator("#objects-bucket").select_option(bucket)
        await expect(page.locator("#objects tbody tr[data-key='only.txt']")).to_have_count(1)
        await expect(empty).to_be_hidden()
        await page.locator("#objects-filter").fill("zz")
        await expect(empty).to_have_text("Nothing here starts with \u201czz\u201d.")
        await expect(page.locator("#objects tbody tr")).to_have_count(0)

        await page.locator("#objects-filter").fill("")
        await expect(page.locator("#objects tbody tr[data-key='only.txt']")).to_have_count(1)
        await page.get_by_role("button", name="Delete only.txt").click()
        await expect(empty).to_have_text("This bucket is empty.")
        await expect(empty).to_be_visible()
        await no_csp_violations(page)


async def test_an_upload_into_a_bucket_is_one_of_its_objects(
    shared_system: System, tmp_path: Path
) -> None:
    """Open a bucket, upload a file with the Dashboard, browse the bucket: the file is there
    as an object keyed by its name (it used to be a file in the bucket without a key, which
    the Objects tab, listing keys, never showed)."""
    me = user()
    bucket = f"con-u-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    photo = tmp_path / "holiday photo.txt"
    photo.write_text("a picture, in words\n")
    async with signed_in(shared_system, me) as page:
        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Open {bucket}").click()
        await expect(page.locator("#bucket-pick")).to_have_value(bucket)
        await page.locator("input.uppy-Dashboard-input").first.set_input_files(photo)
        await page.locator(".uppy-StatusBar-actionBtn--upload").click()
        await expect(page.locator("#files tbody tr")).to_have_count(1)

        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Browse objects of {bucket}").click()
        row = page.locator("#objects tbody tr[data-key='holiday photo.txt']")
        await expect(row).to_have_count(1)
        async with shared_system.client(me) as c:
            got = await c.get(f"/v1/buckets/{bucket}/objects/holiday photo.txt")
            assert got.status_code == 200 and got.text == "a picture, in words\n"
            meta = (await c.get(f"/v1/files/{await row.get_attribute('data-id')}")).json()
        # Only what the server reads was sent, not Uppy's relativePath as the string "null".
        assert "relativePath" not in meta["metadata"], meta["metadata"]
        await no_csp_violations(page)


async def test_renaming_an_object_on_the_files_tab_renames_its_key(
    shared_system: System,
) -> None:
    """The Files tab lists objects too; its Rename/move changed an object's name only, so
    the Files tab showed the new name while the Objects tab and the object's S3 path kept
    the old key. It renames the key now, in the same folder, as the Objects tab does."""
    me = user()
    bucket = f"con-k-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    await put(shared_system, me, bucket, "docs/old.txt", b"renamed\n")
    async with signed_in(shared_system, me) as page:
        await expect(page.locator("#files tbody tr")).to_have_count(1)
        # Labelled by its whole key on the Files tab too; renamed by its last part.
        await page.get_by_role("button", name="Rename or move docs/old.txt").click()
        await page.get_by_label("New name").fill("new.txt")
        await page.get_by_role("button", name="Save").click()
        await expect(page.locator("#edit")).not_to_be_visible()
        await expect(page.locator("#status")).to_have_text("Renamed docs/old.txt to docs/new.txt.")
        rows = page.locator("#files tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows).to_contain_text("new.txt")
        async with shared_system.client(me) as c:
            got = await c.get(f"/v1/buckets/{bucket}/objects/docs/new.txt")
            assert got.status_code == 200 and got.text == "renamed\n"
            gone = await c.get(f"/v1/buckets/{bucket}/objects/docs/old.txt")
            assert gone.status_code == 404

        await page.get_by_role("tab", name="Buckets").click()
        await page.get_by_role("button", name=f"Browse objects of {bucket}").click()
        await page.get_by_role("button", name="Open folder docs/").click()
        await expect(page.locator("#objects tbody tr[data-key='docs/new.txt']")).to_have_count(1)
        await expect(page.locator("#objects tbody tr")).to_have_count(1)
        await no_csp_violations(page)


async def test_a_very_long_folder_never_widens_the_page(shared_system: System) -> None:
    """A key whose folder part is 900 characters without a break: its folder row, and the
    breadcrumb once inside it, wrap; the page never scrolls sideways, on a desktop or a
    phone."""
    me = user()
    bucket = f"con-l-{uuid.uuid4().hex[:8]}"
    folder = "f" * 900
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": bucket})).status_code == 201
    await put(shared_system, me, bucket, f"{folder}/x.txt", b"x\n")
    async with chromium() as browser:
        async for width, page in signed_in_at(browser, shared_system, me):
            await page.get_by_role("tab", name="Objects").click()
            await page.locator("#objects-bucket").select_option(bucket)
            row = page.locator(f"#objects tbody tr[data-prefix='{folder}/']")
            await expect(row).to_have_count(1)
            assert await page.evaluate(OVERFLOW_X) <= 0, f"the folder row is wider than {width}px"
            await row.get_by_role("button").click()
            await expect(page.locator("#objects tbody tr[data-key$='/x.txt']")).to_have_count(1)
            await expect(page.locator("#objects-path [aria-current=location]")).to_have_text(folder)
            assert await page.evaluate(OVERFLOW_X) <= 0, f"the breadcrumb is wider than {width}px"
