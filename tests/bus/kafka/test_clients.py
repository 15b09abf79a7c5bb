"""The consumers' group timeouts come from one setting (CAIRN_KAFKA_SESSION_TIMEOUT_MS), for
aiokafka consumers and FastStream subscribers alike, with the heartbeat well inside it."""

from __future__ import annotations

import pytest

from bus.config.settings import Settings
from bus.kafka.broker import subscriber_options
from bus.kafka.clients import group_timeouts, make_consumer


def settings_with(session_ms: str | None) -> Settings:
    env = {"CAIRN_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    if session_ms is not None:
        env["CAIRN_KAFKA_SESSION_TIMEOUT_MS"] = session_ms
    return Settings.from_env(env)


def test_the_default_session_timeout_is_ten_seconds() -> None:
    s = settings_with(None)
    assert s.kafka_session_timeout_ms == 10000
    assert group_timeouts(s)["heartbeat_interval_ms"] == 1000


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("session_ms", ["3000", "1500", "45000"])
async def test_every_consumer_takes_the_session_timeout_and_heartbeats_within_a_third(
    session_ms: str,
) -> None:
    s = settings_with(session_ms)
    timeouts = group_timeouts(s)
    assert timeouts["session_timeout_ms"] == int(session_ms)
    assert 0 < timeouts["heartbeat_interval_ms"] <= min(1000, int(session_ms) // 3)
    for opts in (subscriber_options(s), subscriber_options(s, latency_critical=True)):
        assert {k: opts[k] for k in timeouts} == timeouts
    consumer = make_consumer(s, "t", group_id="g")  # not started: nothing connects
    assert consumer._session_timeout_ms == int(session_ms)
    assert consumer._heartbeat_interval_ms == timeouts["heartbeat_interval_ms"]


def test_created_topics_take_messages_as_large_as_the_producers_send() -> None:
    """A real Kafka broker refuses a record batch over `message.max.bytes` (1 MiB by
    default) and the relay would retry it for ever; a file's manifest of 40,000 pieces is
    one event of about 4 MB (tests/bus/store/test_relay_sizes.py). So every topic Cairn
    creates says `max.message.bytes` = the producers' request size."""
    from bus.kafka.clients import MAX_MESSAGE_BYTES, all_topics, new_topics

    settings = Settings(kafka_bootstrap="127.0.0.1:9092", topic_prefix="t")
    made = new_topics(settings, all_topics(settings))
    assert [t.name for t in made] == all_topics(settings)
    for t in made:
        assert t.topic_configs["max.message.bytes"] == str(MAX_MESSAGE_BYTES), t.name
