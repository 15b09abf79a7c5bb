"""One log format on stderr: library (stdlib logging) records come out as JSON lines too."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging, structlog
from bus.config.logs import configure, get_logger
configure("info", json=True, process="relay")
logging.getLogger("aiokafka.consumer.group_coordinator").warning("Heartbeat failed for %s", "g1")
get_logger("cairn.test").info("own line", n=1)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("asyncpg").exception("boom")
"""


def test_library_records_are_json_with_the_bound_context() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    lines = [json.loads(line) for line in out.stderr.splitlines()]  # every line is JSON
    assert len(lines) == 3, out.stderr
    kafka, own, boom = lines
    assert kafka["event"] == "Heartbeat failed for g1"
    assert kafka["logger"] == "aiokafka.consumer.group_coordinator"
    assert kafka["level"] == "warning" and kafka["process"] == "relay"
    assert own["event"] == "own line" and own["n"] == 1 and own["process"] == "relay"
    assert boom["level"] == "error" and "ZeroDivisionError" in boom["exception"]
