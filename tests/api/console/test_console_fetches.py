"""The console's Fetches tab in headless Chromium: add a URL served by a local origin,
watch it complete live (from the event stream, no reload), download the result; a URL that
is refused shows the reason in the form."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.console.browser import shot
from tests.api.console.test_console import no_csp_violations, signed_in
from tests.api.origins import origin_server
from tests.system import System, isolated_system

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fsys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    # The origin is on loopback, which fetches refuse unless the operator allows it.
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, fetch_allow_private=True
    ) as s:
        yield s


async def test_fetch_a_url_and_watch_it_complete(fsys: System, tmp_path: Path) -> None:
    me = f"console-f-{uuid.uuid4().hex[:8]}"
    async with origin_server() as origin, signed_in(fsys, me) as page:
        await page.get_by_role("tab", name="Fetches").click()

        await page.get_by_label("URL (http or https)").fill("ftp://example.com/x")
        await page.get_by_role("button", name="Fetch", exact=True).click()
        await expect(page.locator("#fetch-error")).not_to_be_empty()

        url = origin.url("/range/model.bin")
        await page.get_by_label("URL (http or https)").fill(url)
        await page.get_by_role("button", name="Fetch", exact=True).click()
        row = page.locator("#fetches tbody tr")
        await expect(row).to_have_count(1)
        await expect(row).to_have_attribute("data-status", "COMPLETED", timeout=30000)
        assert await row.locator("progress").evaluate("p => p.value") == 100
        await expect(page.locator("#activity li[data-type=FetchCompleted]")).to_have_count(1)
        await page.screenshot(path=shot("fetches"))

        async with page.expect_download() as got:
            await page.get_by_role("button", name="Download model.bin").click()
        assert Path(await (await got.value).path()).read_bytes() == origin.data
        await no_csp_violations(page)


async def test_a_failed_fetch_shows_a_still_progress_bar(fsys: System) -> None:
    """A fetch that stopped (here: the origin answered 404) shows the reason and a bar at
    rest: a <progress> without a value is the moving 'indeterminate' bar of a fetch still
    at work, which it is not."""
    me = f"console-f-{uuid.uuid4().hex[:8]}"
    async with origin_server() as origin, signed_in(fsys, me) as page:
        await page.get_by_role("tab", name="Fetches").click()
        await page.get_by_label("URL (http or https)").fill(origin.url("/status/404"))
        await page.get_by_role("button", name="Fetch", exact=True).click()
        row = page.locator("#fetches tbody tr")
        await expect(row).to_have_attribute("data-status", "FAILED")
        await expect(row.locator(".status-cell")).to_contain_text("404")
        # position is -1 for an indeterminate bar, value/max for a determinate one.
        assert await row.locator("progress").evaluate("p => p.position") == 0
        await expect(row.get_by_role("button", name="Retry")).to_be_visible()
        await no_csp_violations(page)


async def test_a_fetch_being_retried_says_so(fsys: System) -> None:
    """Between tries a running fetch shows the last try's error; it said 'in progress' next
    to a bare error, which reads as stuck. An origin answering 500 is retried with backoff,
    then the fetch fails. (A host that does not exist fails at once: host_not_found.)"""
    me = f"console-f-{uuid.uuid4().hex[:8]}"
    async with origin_server() as origin, signed_in(fsys, me) as page:
        await page.get_by_role("tab", name="Fetches").click()
        await page.get_by_label("URL (http or https)").fill(origin.url("/status/500"))
        await page.get_by_role("button", name="Fetch", exact=True).click()
        row = page.locator("#fetches tbody tr")
        await expect(row.locator(".status-cell")).to_contain_text("retrying after: ")
        await expect(row).to_have_attribute("data-status", "IN_PROGRESS")
        # Six tries with backoff: more than the usual wait on a loaded machine.
        await expect(row).to_have_attribute("data-status", "FAILED", timeout=90_000)
        await expect(row.locator(".status-cell")).to_contain_text("gave up after")
        await expect(row.locator(".status-cell")).not_to_contain_text("retrying")
