"""The console's task screen, rename/move and upload checksums, in headless Chromium
against a whole running Cairn: files are selected in the list, a compress task is started
and seen to complete live (from the event stream) with its result downloadable; pause,
resume and cancel act on a task held back by a stopped task worker; a file uploaded with
Uppy shows its SHA-256 verified, then is renamed and moved to another bucket."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
import zipfile
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.api.answers import user
from tests.api.console.browser import chromium, shot
from tests.api.console.test_console import (
    OVERFLOW_X,
    no_csp_violations,
    open_console,
    sign_in,
    signed_in,
    tus_upload,
)
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def select(page: Page, *names: str) -> None:
    await page.get_by_role("tab", name="Files").click()
    for name in names:
        await page.get_by_label(f"Select {name}", exact=True).check()
    await expect(page.locator("#selection")).to_have_text(f"{len(names)} file(s) selected")


async def start_compress(page: Page, archive: str) -> None:
    await page.get_by_label("Task", exact=True).select_option("compress")
    await page.get_by_label("Archive name").fill(archive)
    await page.get_by_role("button", name="Start task").click()
    await expect(page.locator("#task-error")).to_be_empty()


async def test_compress_task_live_with_pause_resume_cancel(
    shared_system: System, tmp_path: Path
) -> None:
    me = user()
    one, two = os.urandom(200_000), b"plain text\n" * 1000
    await tus_upload(shared_system, me, "one.bin", one)
    await tus_upload(shared_system, me, "two.txt", two)
    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        lists: list[str] = []
        page.on(
            "request",
            lambda r: lists.append(r.url) if r.method == "GET" and "/v1/tasks?" in r.url else None,
        )
        await open_console(page, shared_system)
        await sign_in(page, shared_system.token(me))
        await expect(page.locator("#files tbody tr")).to_have_count(2)

        # Nothing selected: the form says so and starts nothing.
        await page.get_by_role("button", name="Start task").click()
        await expect(page.locator("#task-error")).to_contain_text("Select one or more files")

        # With the task worker stopped, a task waits PENDING: pause, resume, cancel it.
        await shared_system.stop("tasks")
        try:
            await select(page, "one.bin", "two.txt")
            await start_compress(page, "held.zip")
            await expect(page.locator("#selection")).to_have_text("No files selected")
            await page.get_by_role("tab", name="Tasks").click()
            held = page.locator("#tasks tbody tr")
            await expect(held).to_have_count(1)
            await expect(held).to_have_attribute("data-status", "PENDING")
            await expect(held).to_contain_text("compress 2 file(s) into held.zip")
            await held.get_by_role("button", name="Pause").click()
            await expect(held).to_have_attribute("data-status", "PAUSED")
            await held.get_by_role("button", name="Resume").click()
            await expect(held).to_have_attribute("data-status", "PENDING")
            await held.get_by_role("button", name="Cancel").click()
            await expect(held).to_have_attribute("data-status", "CANCELLED")
            await expect(held.get_by_role("button")).to_have_count(0)  # finished: no actions
            task_id = await held.get_attribute("data-id")
            async with shared_system.client(me) as c:
                assert (await c.get(f"/v1/tasks/{task_id}")).json()["status"] == "CANCELLED"
        finally:
            shared_system.start("tasks")

        # With the worker back, a compress runs to completion, seen live on the Tasks tab.
        await select(page, "one.bin", "two.txt")
        await start_compress(page, "bundle.zip")
        await page.get_by_role("tab", name="Tasks").click()
        done = page.locator("#tasks tbody tr", has_text="bundle.zip")
        await expect(done).to_have_attribute("data-status", "COMPLETED")
        assert await done.locator("progress").evaluate("p => p.value") == 100
        await expect(page.locator("#activity li[data-type=TaskCompleted]")).to_have_count(1)
        await page.screenshot(path=shot("tasks"))

        # The result link downloads the archive, holding exactly the two files.
        async with page.expect_download() as got:
            await page.get_by_role("button", name="Download result bundle.zip").click()
        download = await got.value
        assert download.suggested_filename == "bundle.zip"
        archive = zipfile.ZipFile(io.BytesIO(Path(await download.path()).read_bytes()))
        assert {n: archive.read(n) for n in archive.namelist()} == {
            "one.bin": one,
            "two.txt": two,
        }
        # Progress came from the event stream: the task list was read once, at sign-in.
        assert len(lists) == 1, lists
        await no_csp_violations(page)
        await ctx.close()


async def test_upload_checksum_then_rename_and_move(shared_system: System, tmp_path: Path) -> None:
    me = user()
    dest = f"dest-{uuid.uuid4().hex[:8]}"
    async with shared_system.client(me) as c:
        assert (await c.post("/v1/buckets", json={"name": dest})).status_code == 201
    doc = tmp_path / "draft.txt"
    doc.write_bytes(b"a draft\n" * 500)
    async with signed_in(shared_system, me) as page:
        await expect(page.locator(f"#bucket-pick option[value='{dest}']")).to_have_count(1)

        # Uploaded with Uppy; the browser's SHA-256 matches the server's.
        await page.locator("input.uppy-Dashboard-input").first.set_input_files(doc)
        await page.locator(".uppy-StatusBar-actionBtn--upload").click()
        check = page.locator("#checks li[data-name='draft.txt']")
        await expect(check).to_have_attribute("data-check", "verified")
        rows = page.locator("#files tbody tr")
        await expect(rows).to_have_count(1)
        file_id = await rows.first.get_attribute("data-id")
        async with shared_system.client(me) as c:
            sha = (await c.get(f"/v1/files/{file_id}")).json()["sha256"]
        await expect(check).to_contain_text(sha)

        # Rename and move in one go, from the dialog, by keyboard.
        opener = page.get_by_role("button", name="Rename or move draft.txt")
        await opener.click()
        await expect(page.locator("#edit")).to_be_visible()
        await page.get_by_label("New name", exact=True).fill("final.txt")
        await page.get_by_label("To bucket", exact=True).select_option(dest)
        await page.keyboard.press("Enter")
        await expect(page.locator("#edit")).not_to_be_visible()
        await expect(page.locator("#status")).to_contain_text(f"Moved draft.txt to {dest}")
        async with shared_system.client(me) as c:
            meta = (await c.get(f"/v1/files/{file_id}")).json()
        assert (meta["name"], meta["bucket"], meta["sha256"]) == ("final.txt", dest, sha)
        # The list shows the change once the read model has it (driven by the event).
        await expect(page.locator("#files tbody")).to_contain_text("final.txt")
        await expect(page.locator("#files tbody")).not_to_contain_text("draft.txt")

        # A bad name is refused in the dialog, in the API's words, and nothing changes.
        await page.get_by_role("button", name="Rename or move final.txt").click()
        await page.get_by_label("New name", exact=True).fill("a/b")
        await page.get_by_role("button", name="Save").click()
        await expect(page.locator("#edit-error")).to_contain_text("Could not change final.txt")
        await page.get_by_role("button", name="Cancel").click()
        async with shared_system.client(me) as c:

            async def unchanged() -> bool:
                return (await c.get(f"/v1/files/{file_id}")).json()["name"] == "final.txt"

            assert await wait_until(unchanged)
        await no_csp_violations(page)


async def test_a_very_long_result_name_never_widens_the_page(shared_system: System) -> None:
    """A compress task's archive named with 900 characters without a break: its row on the
    Tasks tab (the task's description, the result's download button) wraps; the page never
    scrolls sideways."""
    me = user()
    archive = "z" * 900 + ".zip"
    await tus_upload(shared_system, me, "in.txt", b"in\n")
    async with shared_system.client(me) as c:
        fid = (await c.get("/v1/files")).json()["items"][0]["id"]
        params = {"files": [fid], "format": "zip", "output": {"file_name": archive}}
        r = await c.post("/v1/tasks", json={"type": "compress", "params": params})
        assert r.status_code in (200, 201, 202), r.text
    async with signed_in(shared_system, me) as page:
        await page.get_by_role("tab", name="Tasks").click()
        result = page.locator("#tasks tbody button.result")
        await expect(result).to_have_text(f"Download {archive}")
        assert await page.evaluate(OVERFLOW_X) <= 0, "the task's row is wider than the page"
