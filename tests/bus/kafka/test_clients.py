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
