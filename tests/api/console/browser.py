"""Headless Chromium for the console tests: Debian's own `chromium` driven by Playwright
(never `playwright install`: no browser is downloaded). Tests skip, saying why, only when
the binary is missing; CI installs it (.ci/run)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

CHROMIUM = os.environ.get("CAIRN_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# How long an expectation waits for the page (a bound, not a speed check): the shared
# 2-core machine can be slow under load, and Playwright's 5 s default is tight there.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)

# Written by the tests, gitignored; docs/console.png is the one committed copy.
SCREENSHOTS = Path(__file__).resolve().parents[3] / ".screenshots"


def need_chromium() -> None:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; CI installs it)")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    need_chromium()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def shot(name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
