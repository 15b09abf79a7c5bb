"""The console when things go wrong, in headless Chromium against a whole running Cairn: an
upload the server refuses says why in words (not the raw response), a request that cannot
reach the server says so, the live stream, cut or handed a position the server never
gave, misses no event, and a session that ends behind a dialog leaves nothing of it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import pytest_asyncio
from playwright.async_api import Route, expect

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.answers import user
from tests.api.console.browser import chromium, shot
from tests.api.console.test_console import (
    no_csp_violations,
    open_console,
    sign_in,
    signed_in,
    tus_upload,
)
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUOTA_USER = "console-quota"  # may store 1,000 bytes


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rsys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        quotas=((QUOTA_USER, 1000),),
        signed_url_max_expiry=86400,
    ) as s:
        yield s


async def test_a_refused_upload_says_why_in_words(rsys: System, tmp_path: Path) -> None:
    big = tmp_path / "too-big.bin"
    big.write_bytes(os.urandom(5000))
    async with signed_in(rsys, QUOTA_USER) as page:
        await page.locator("input.uppy-Dashboard-input").first.set_input_files(big)
        await page.locator(".uppy-StatusBar-actionBtn--upload").click()
        # The API's message (413 quota_exceeded), in the status line, marked as an error.
        status = page.locator("#status")
        await expect(status).to_have_text(
            "Could not upload too-big.bin: the storage quota would be exceeded"
        )
        await expect(status).to_have_class("status error")
        await expect(page.locator(".uppy-StatusBar.is-error")).to_have_count(1)
        await page.screenshot(path=shot("upload-refused"))
        # Nowhere under the Dashboard (its notice, the file's error tip) the raw response:
        # tus-js-client's error text carries the request and the JSON body.
        shown = await page.locator("#uploader").evaluate(
            """u => [u.innerText, ...[...u.querySelectorAll('*')].flatMap(
                   e => [...e.attributes].map(a => a.value))].join('\\n')"""
        )
        assert "the storage quota would be exceeded" in shown
        assert '{"error"' not in shown and "response text" not in shown, shown
        await no_csp_violations(page)


async def test_a_server_out_of_reach_is_said_in_words(rsys: System) -> None:
    me = user()
    await tus_upload(rsys, me, "far.txt", b"far away\n")

    async with signed_in(rsys, me) as page:
        await expect(page.locator("#files tbody tr")).to_have_count(1)
        # The connection fails as it does when the server is down or restarting.
        await page.route("**/content?download=true", lambda route: route.abort("failed"))
        await page.get_by_role("button", name="Download far.txt").click()
        await expect(page.locator("#status")).to_have_text(
            "Download of far.txt failed: the server could not be reached; try again in a moment"
        )
        await expect(page.locator("#status")).to_have_class("status error")


async def head_position(system: System, who: str) -> int:
    """The newest event's position: a resume position beyond it is refused with the head."""
    async with system.client(who) as c:
        r = await c.get("/v1/events", headers={"Last-Event-ID": str(10**15)})
    assert r.status_code == 400, r.text
    return int(r.json()["error"]["details"]["head"])


async def test_a_stream_cut_before_its_first_event_misses_nothing(
    rsys: System,
) -> None:
    """The first stream ends right after it began (a restart, a proxy); a file made before
    the console reconnects is still shown: the reconnect resumes from the position the
    server named at the start, not from 'now'."""
    me = user()
    listed = asyncio.Event()
    cut: list[int] = []

    async def cut_first_stream(route: Route) -> None:
        if cut:
            await route.fallback()
            return
        head = await head_position(rsys, me)
        cut.append(head)
        await listed.wait()  # the console has listed no files (read before the upload)
        await tus_upload(rsys, me, "while-away.txt", b"made while the stream was down\n")
        await route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=f"retry: 2000\n: cairn events after position {head}\n\n",
        )

    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        resumed: list[str | None] = []
        page.on(
            "request",
            lambda r: (
                resumed.append(r.headers.get("last-event-id"))
                if r.url.endswith("/v1/events")
                else None
            ),
        )
        await page.route("**/v1/events", cut_first_stream)
        await open_console(page, rsys)
        await page.get_by_label("Token (JWT)").check()
        await page.get_by_label("API key or token").fill(rsys.token(me))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#files-empty")).to_be_visible()
        listed.set()
        await expect(page.locator("#files tbody")).to_contain_text("while-away.txt")
        await expect(page.locator("#live")).to_have_text("live")
        assert resumed[:2] == [None, str(cut[0])]
        await no_csp_violations(page)
        await ctx.close()


async def test_a_position_the_server_never_gave_is_dropped(rsys: System) -> None:
    """A resume position beyond the server's newest event (a database restored from a
    backup: 400 last_event_id_beyond_head) is not retried for ever: the console starts the
    stream afresh, reads the lists again, and follows new events."""
    me = user()
    await tus_upload(rsys, me, "before.txt", b"before\n")
    beyond = 10**15
    handed: list[bool] = []

    async def bogus_position(route: Route) -> None:
        if handed:
            await route.fallback()
            return
        handed.append(True)
        body = f'id: {beyond}\nevent: Restored\ndata: {{"data": {{}}}}\n\n'
        await route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        answers: list[int] = []
        page.on(
            "response",
            lambda r: answers.append(r.status) if r.url.endswith("/v1/events") else None,
        )
        await page.route("**/v1/events", bogus_position)
        await open_console(page, rsys)
        await sign_in(page, rsys.token(me))
        await expect(page.locator("#files tbody tr")).to_have_count(1)
        # Refused once (400), then a fresh stream that is live.
        await expect(page.locator("#live")).to_have_text("live")
        await tus_upload(rsys, me, "after.txt", b"after\n")
        await expect(page.locator("#files tbody")).to_contain_text("after.txt")
        assert answers.count(400) == 1, answers
        await no_csp_violations(page)
        await ctx.close()


async def test_the_console_rides_out_an_api_restart(rsys: System) -> None:
    """The API process stops (its streams end) and starts again: the console says it is
    reconnecting, then live again, and follows new events without a reload."""
    me = user()
    async with signed_in(rsys, me) as page:
        await rsys.stop("api")
        try:
            await expect(page.locator("#live")).to_have_text("reconnecting…")
        finally:
            rsys.start("api")
            await rsys.wait_api()
        await expect(page.locator("#live")).to_have_text("live")
        await tus_upload(rsys, me, "after-restart.txt", b"back\n")
        await expect(page.locator("#files tbody")).to_contain_text("after-restart.txt")
        await expect(page.locator("#app")).to_be_visible()  # still signed in
        await no_csp_violations(page)


async def test_a_link_longer_than_the_server_allows_is_made_as_long_as_it_allows(
    rsys: System,
) -> None:
    """ "7 days" on a server whose CAIRN_SIGNED_URL_MAX_EXPIRY is a day was refused (400
    invalid_expires_in) and no link made; the console asks for the longest the server
    allows, which its error names, and says so."""
    me = user()
    await tus_upload(rsys, me, "week.txt", b"for a week\n")
    async with signed_in(rsys, me) as page:
        await page.get_by_role("button", name="Copy link to week.txt").click()
        await page.get_by_label("Expires after").select_option(label="7 days")
        before = time.time()
        await page.get_by_role("button", name="Create link").click()
        field = page.get_by_label("Signed URL")
        await expect(field).not_to_have_value("")
        await expect(page.locator("#share-error")).to_be_empty()
        await expect(page.locator("#share-expires")).to_contain_text(
            "This server allows links for no longer than that."
        )
        url = await field.input_value()
        expires = int(parse_qs(urlsplit(url).query)["expires"][0])
        assert before + 86400 - 60 <= expires <= time.time() + 86400 + 60
        async with httpx.AsyncClient() as c:
            got = await c.get(url)
        assert got.status_code == 200 and got.text == "for a week\n"
        await no_csp_violations(page)


async def test_a_session_that_ends_behind_a_dialog_closes_it(rsys: System) -> None:
    """A token that expires while a preview is open: the next request is refused (401) and
    the console signs out. The preview, a modal dialog, stayed open over the sign-in form,
    still showing the file to whoever came to the screen, and left the form unusable (a
    modal dialog makes the rest of the page inert) until closed by hand."""
    me = user()
    await tus_upload(rsys, me, "private.txt", b"private words\n")
    token = jwt.encode(
        {"sub": me, "roles": [], "exp": int(time.time()) + 10},
        rsys.settings.resolved_jwt_secret(),
        algorithm="HS256",
    )
    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        await open_console(page, rsys)
        await sign_in(page, token)
        await page.get_by_role("button", name="Preview private.txt").click()
        preview = page.locator("#preview")
        await expect(preview.locator("pre")).to_contain_text("private words")

        async def expired() -> bool:
            async with httpx.AsyncClient(base_url=rsys.url) as c:
                r = await c.get("/v1/files", headers={"Authorization": f"Bearer {token}"})
                return r.status_code == 401

        await wait_until(expired, timeout=60, interval=0.5)
        # Another client's upload: the live stream's event makes the list read again,
        # which the API now refuses.
        await tus_upload(rsys, me, "later.txt", b"later\n")
        # Why, in words: the token expired (the API's code token_expired), not "refused".
        await expect(page.locator("#status")).to_have_text(
            "Your token has expired; sign in again with a new one."
        )
        await expect(preview).not_to_be_visible()
        await expect(page.get_by_text("private words")).to_have_count(0)
        await expect(page.locator("#secret")).to_be_focused()
        await page.keyboard.type("typed")  # the form takes keys: it is not inert
        await expect(page.locator("#secret")).to_have_value("typed")
        # The expired token pasted again is refused saying why, not as a wrong one.
        await page.get_by_label("Token (JWT)").check()
        await page.locator("#secret").fill(token)
        await page.locator("#secret").press("Enter")
        await expect(page.locator("#signin-error")).to_have_text(
            "That token has expired; make a new one."
        )
        await no_csp_violations(page)
        await ctx.close()
