"""Console scenario: what the web console weighs and how soon it is usable.

- console.load: headless Chromium (Debian's, as in tests/api/console) opens `/console` on
  the local server with a cold cache; the page weight is the sum of the response bodies it
  loaded (the server does not compress them; the gzip figure says what a compressing proxy
  would send); time to interactive is the `cairn:ready` mark the console sets once every
  handler is wired and Uppy is up, from the navigation's start. Then, signed in, the time
  until the first files list is on screen. Skipped (with the reason) without Chromium.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from tests.bench.core import Result, Row, Scenario
from tests.bench.runner import Bench

CHROMIUM = os.environ.get("CAIRN_TEST_CHROMIUM", "/usr/bin/chromium")
STATIC = Path(__file__).resolve().parents[2] / "api" / "console" / "static"


async def load(bench: Bench, res: Result) -> None:
    if not os.path.exists(CHROMIUM):
        res.status = "skipped"
        res.notes.append(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        return
    from playwright.async_api import async_playwright  # a dev dependency, like the tests'

    from tests.api.console.browser import ARGS

    assert bench.cairn is not None
    url, token = bench.cairn.url, bench.cairn.token
    weights: list[float] = []
    gzipped: list[float] = []
    ready: list[float] = []
    listed: list[float] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for _, warmup in bench.iterations():
                ctx = await browser.new_context()  # a cold cache every time
                page = await ctx.new_page()
                loaded: list[str] = []
                page.on("requestfinished", lambda r, loaded=loaded: loaded.append(r.url))
                await page.goto(f"{url}/console")
                await page.wait_for_selector("body[data-ready=true]", state="attached")
                t = await page.evaluate("performance.getEntriesByName('cairn:ready')[0].startTime")
                total = 0
                zipped = 0
                for u in loaded:
                    path = u.split("/console", 1)[-1].lstrip("/") or "index.html"
                    body = (STATIC / path).read_bytes()
                    total += len(body)
                    zipped += len(gzip.compress(body, 6))
                # Signed in: the files list's first render, from the sign-in submit.
                await page.fill("#secret", token)
                await page.check("input[value=token]")
                t0 = await page.evaluate("performance.now()")
                await page.press("#secret", "Enter")
                await page.wait_for_selector("#files-page:not(:empty)")
                t1 = await page.evaluate("performance.now()")
                await ctx.close()
                if warmup:
                    continue
                weights.append(total / 1024)
                gzipped.append(zipped / 1024)
                ready.append(t)
                listed.append(t1 - t0)
        finally:
            await browser.close()
    res.rows += [
        Row("page weight (all files /console loads)", "KiB", weights, higher_is_better=False),
        Row("page weight if gzipped", "KiB", gzipped, higher_is_better=False),
        Row("time to interactive (cairn:ready mark)", "ms", ready, higher_is_better=False),
        Row("sign-in → files list shown", "ms", listed, higher_is_better=False),
    ]
    res.notes.append(
        "headless Chromium on the same machine as the server (loopback), cold cache per run"
    )


SCENARIOS = [
    Scenario(
        "console.load",
        "the web console: page weight and time to interactive in headless Chromium",
        load,
    ),
]
