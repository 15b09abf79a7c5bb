"""README "Kafka" names every event topic a consumer can subscribe to: one per aggregate
in domain.registry, in its topic list and in the minimal consumer's subscription (the
section once called three of the five topics "reserved" while they carried events)."""

from __future__ import annotations

import re
from pathlib import Path

from bus.config.settings import Settings
from domain.registry import AGGREGATES

README = Path(__file__).resolve().parents[3] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Kafka\n")
    return text[start : text.index("\n## ", start + 1)]


def test_every_aggregate_topic_is_named_and_subscribed() -> None:
    text = section()
    intro = text[: text.index("```json")]
    consumer = re.search(r"AIOKafkaConsumer\((.*?)bootstrap_servers", text, re.S)
    assert consumer is not None
    subscribed = set(re.findall(r'"([\w.]+)"', consumer.group(1)))
    prefix = Settings().topic_prefix
    for aggregate in AGGREGATES:
        assert f"`{{prefix}}.{aggregate}`" in intro, aggregate
        assert f"{prefix}.{aggregate}" in subscribed, aggregate
    assert "reserved" not in intro
