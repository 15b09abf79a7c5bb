"""Scenarios whose feature is not built yet: listed as PENDING by name, never faked.

Each names the route that will bring it: when that route shows up in Cairn's OpenAPI the
report says so, as a reminder to write the scenario.
"""

from __future__ import annotations

from tests.bench.core import Scenario

# Every scenario is built (fetch.url_cache was the last: tests/bench/fetches.py).
SCENARIOS: list[Scenario] = []
