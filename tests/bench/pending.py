"""Scenarios whose feature is not built yet: listed as PENDING by name, never faked.

Each names the route that will bring it: when that route shows up in Cairn's OpenAPI the
report says so, as a reminder to write the scenario.
"""

from __future__ import annotations

from tests.bench.core import Scenario

SCENARIOS = [
    Scenario(
        "fetch.url_cache",
        "",
        pending="URL fetch into the cache (POST /v1/fetches) vs curl into a file: fetches are "
        "not built yet",
        probe="/v1/fetches",
    ),
]
