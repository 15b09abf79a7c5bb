"""The partitions each topic is created with: events, replies and commands have one setting
each (CAIRN_KAFKA_PARTITIONS, CAIRN_KAFKA_REPLY_PARTITIONS, CAIRN_KAFKA_COMMAND_PARTITIONS),
and the command topics follow the first unless the third is set."""

from __future__ import annotations

from bus.config.settings import Settings
from bus.kafka.clients import AGGREGATES, partitions_of


def settings(**env: str) -> Settings:
    return Settings.from_env({"CAIRN_KAFKA_BOOTSTRAP": "127.0.0.1:9", **env})


def test_without_a_command_setting_every_topic_but_the_replies_has_kafka_partitions() -> None:
    s = settings(CAIRN_KAFKA_PARTITIONS="6", CAIRN_KAFKA_REPLY_PARTITIONS="3")
    assert s.kafka_command_partitions == 0
    for a in AGGREGATES:
        assert partitions_of(s, s.topic(a)) == 6
        assert partitions_of(s, s.command_topic(a)) == 6
    assert partitions_of(s, s.reply_topic) == 3


def test_the_command_setting_applies_to_the_command_topics_only() -> None:
    s = settings(
        CAIRN_KAFKA_PARTITIONS="2",
        CAIRN_KAFKA_COMMAND_PARTITIONS="16",
        CAIRN_KAFKA_REPLY_PARTITIONS="4",
        CAIRN_TOPIC_PREFIX="acme",
    )
    for a in AGGREGATES:
        assert partitions_of(s, s.topic(a)) == 2  # the event topics of API.md
        assert partitions_of(s, s.command_topic(a)) == 16
    assert partitions_of(s, s.reply_topic) == 4
    # Another deployment's command topic (another prefix) is not one of this one's.
    assert partitions_of(s, "cairn.commands.uploads") == 2
