"""Scenarios whose feature is not built yet: listed as PENDING by name, never faked.

Each names the route that will bring it: when that route shows up in Cairn's OpenAPI the
report says so, as a reminder to write the scenario (tus would then compare `tus-js-client`
against Cairn and the `@tus/server` reference server from a package.json in this folder).
"""

from __future__ import annotations

from tests.bench.core import Scenario

SCENARIOS = [
    Scenario(
        "upload.tus_single",
        "",
        pending="tus 1.0 upload of the single-stream file (tus-js-client) into Cairn vs the "
        "@tus/server reference server: not written yet (tus was not built when this harness was)",
        probe="/v1/tus",
    ),
    Scenario(
        "upload.tus_parallel",
        "",
        pending="parallel tus uploads (tus-js-client) into Cairn vs @tus/server: not written "
        "yet (tus was not built when this harness was)",
        probe="/v1/tus",
    ),
    Scenario(
        "download.range_4k",
        "",
        pending="4 KiB ranged reads under 200 concurrent readers vs nginx: HTTP Range on "
        "/v1/files/{id}/content is not built yet",
    ),
    Scenario(
        "fetch.url_cache",
        "",
        pending="URL fetch into the cache (POST /v1/fetches) vs curl into a file: fetches are "
        "not built yet",
        probe="/v1/fetches",
    ),
    Scenario(
        "events.sse_latency",
        "",
        pending="latency from an append to its delivery on GET /v1/events (SSE): SSE is not "
        "built yet",
        probe="/v1/events",
    ),
]
