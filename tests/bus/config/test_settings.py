"""Settings.from_env: the defaults the README documents, and a bad value refused by name."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from bus.config.env import SettingsError
from bus.config.settings import TASK_MAX_ITEMS_LIMIT, ApiKey, Settings
from bus.kafka.clients import MAX_MESSAGE_BYTES
from domain.events import NewEvent
from domain.tasks.events import TaskCreated


def test_an_empty_environment_gives_the_dataclass_defaults() -> None:
    read, default = Settings.from_env({}), Settings()
    for f in dataclasses.fields(Settings):
        if f.name != "instance_id":
            assert getattr(read, f.name) == getattr(default, f.name), f.name


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("CAIRN_PORT", "abc", "not a whole number"),
        ("CAIRN_PORT", "70000", "at most 65535"),
        ("CAIRN_EMBEDDED_PG_PORT", "-1", "at least 0"),
        ("CAIRN_KAFKA_PARTITIONS", "0", "at least 1"),
        ("CAIRN_UPLOAD_TTL", "-5", "above 0"),
        ("CAIRN_COMMAND_TIMEOUT", "soon", "not a number"),
        ("CAIRN_CLEANUP_INTERVAL", "nan", "finite"),
        ("CAIRN_GC_GRACE", "-1", "at least 0"),
        ("CAIRN_QUOTA_BYTES", "lots", "not a size"),
        ("CAIRN_MAX_CHUNK_BYTES", "0", "at least 1"),
        ("CAIRN_FETCH_RATE", "-1M", "at least 0"),
        ("CAIRN_FETCH_LOW_SPEED_BYTES", "-1K", "at least 0"),
        ("CAIRN_FETCH_LOW_SPEED_BYTES", "slow", "not a size"),
        ("CAIRN_FETCH_LOW_SPEED_TIME", "0", "above 0"),
        ("CAIRN_FETCH_LOW_SPEED_TIME", "-60", "above 0"),
        ("CAIRN_FETCH_LOW_SPEED_TIME", "a minute", "not a number"),
        ("CAIRN_FETCH_LOW_SPEED_TIME", "inf", "finite"),
        ("CAIRN_EVENTS_SEND_TIMEOUT", "0", "above 0"),
        ("CAIRN_EVENTS_SEND_TIMEOUT", "-30", "above 0"),
        ("CAIRN_EVENTS_SEND_TIMEOUT", "half a minute", "not a number"),
        ("CAIRN_EVENTS_SEND_TIMEOUT", "inf", "finite"),
        ("CAIRN_TRUST_PROXY", "ture", "not a boolean"),
        ("CAIRN_LOG_JSON", "maybe", "not a boolean"),
        ("CAIRN_LOG_LEVEL", "verbose", "not one of"),
        ("CAIRN_BLOB_STORE", "ftp://host/x", "not file://PATH or s3://"),
        ("CAIRN_BLOB_STORE", "s3://", "names no path or bucket"),
        ("CAIRN_DATABASE_URL", "mysql://u:pw@h/db", "not a PostgreSQL URL"),
        ("CAIRN_QUOTAS", "alice:10G,bob", "'bob' is not user:size"),
        ("CAIRN_QUOTAS", "alice:-1G", "is not user:size"),
        ("CAIRN_FETCH_ALLOW_NETWORKS", "10.0.0.0/8,intranet", "'intranet' is not a CIDR"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str, why: str) -> None:
    with pytest.raises(SettingsError) as e:
        Settings.from_env({variable: value})
    message = str(e.value)
    assert message.startswith(variable) and why in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    "value", ["justakey", "k:", ":bob", "k:bob:root", "k:bob:admin:extra", "a:alice,b"]
)
def test_a_malformed_api_key_entry_is_refused_without_showing_the_key(value: str) -> None:
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"CAIRN_API_KEYS": value})
    assert str(e.value).startswith("CAIRN_API_KEYS: entry ")
    assert "justakey" not in str(e.value)


@pytest.mark.parametrize("secret", ["hunter2", "changeme", "x" * 31])
def test_a_short_jwt_secret_is_refused_without_showing_it(secret: str) -> None:
    # HS256 wants a key of at least 256 bits (RFC 7518 3.2; PyJWT only warns): anyone with
    # one token can guess a short secret offline and then mint an admin's tokens.
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"CAIRN_JWT_SECRET": secret})
    message = str(e.value)
    assert message.startswith("CAIRN_JWT_SECRET") and "at least 32 bytes" in message, message
    assert secret not in message
    assert Settings.from_env({"CAIRN_JWT_SECRET": "x" * 32}).jwt_secret == "x" * 32


def test_a_database_url_error_never_shows_the_password() -> None:
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"CAIRN_DATABASE_URL": "postgress://u:hunter2@h/db"})
    assert "hunter2" not in str(e.value)


def test_good_values_are_read() -> None:
    s = Settings.from_env(
        {
            "CAIRN_API_KEYS": "k1:alice, k2:bob:admin,",
            "CAIRN_QUOTAS": "alice:10G, bob:512M",
            "CAIRN_TRUST_PROXY": "Yes",
            "CAIRN_LOG_LEVEL": "WARNING",
            "CAIRN_UPLOAD_TTL": "0.5",
            "CAIRN_BLOB_STORE": "s3://bucket/prefix",
            "CAIRN_PORT": " 8080 ",
            "CAIRN_FETCH_LOW_SPEED_BYTES": "2K",
            "CAIRN_FETCH_LOW_SPEED_TIME": "1.5",
            "CAIRN_EVENTS_SEND_TIMEOUT": "2.5",
        }
    )
    assert s.events_send_timeout == 2.5
    assert Settings.from_env({}).events_send_timeout == 30.0
    assert (s.fetch_low_speed_bytes, s.fetch_low_speed_time) == (2048, 1.5)
    off = Settings.from_env({"CAIRN_FETCH_LOW_SPEED_BYTES": "0"})
    assert off.fetch_low_speed_bytes == 0  # the limit off
    default = Settings.from_env({})
    assert (default.fetch_low_speed_bytes, default.fetch_low_speed_time) == (1024, 60.0)
    assert s.api_keys == (ApiKey("k1", "alice"), ApiKey("k2", "bob", True))
    assert s.quotas == (("alice", 10 << 30), ("bob", 512 << 20))
    assert (s.trust_proxy, s.log_level, s.upload_ttl, s.port) == (True, "warning", 0.5, 8080)
    assert s.blob_store == "s3://bucket/prefix"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CAIRN_MAX_CHUNK_BYTES", str(5 * 1024**3 + 1)), ("CAIRN_FETCH_CHUNK_BYTES", "6G")],
)
def test_a_chunk_larger_than_one_s3_put_is_refused_with_an_s3_store(
    variable: str, value: str
) -> None:
    """S3 takes at most 5 GiB in one PUT, and a chunk is one PUT: a larger one would be
    refused (EntityTooLarge) on every try, a 503 the client can retry forever."""
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"CAIRN_BLOB_STORE": "s3://bucket/prefix", variable: value})
    message = str(e.value)
    assert message.startswith(variable) and "5 GiB" in message and "S3" in message, message
    # The local store has no such bound, and 5 GiB itself fits.
    assert Settings.from_env({"CAIRN_BLOB_STORE": "file:///srv/blobs", variable: value})
    assert Settings.from_env({"CAIRN_BLOB_STORE": "s3://b", variable: str(5 * 1024**3)})


def test_a_presigned_redirect_cannot_outlive_what_sigv4_allows() -> None:
    """SigV4 presigned URLs are valid for at most 7 days: S3 refuses a longer one when it
    is used, so every redirect would be a broken download."""
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"CAIRN_S3_REDIRECT_EXPIRES": str(7 * 24 * 3600 + 1)})
    assert str(e.value).startswith("CAIRN_S3_REDIRECT_EXPIRES"), str(e.value)
    assert "604800" in str(e.value)
    s = Settings.from_env({"CAIRN_S3_REDIRECT_EXPIRES": str(7 * 24 * 3600)})
    assert s.s3_redirect_expires == 7 * 24 * 3600


def test_the_task_item_limit_keeps_a_task_within_one_bus_message() -> None:
    """A task's file ids travel in one command and one TaskCreated: an item limit past
    what the bus carries made every big task's creation fail at the producer (a 503,
    again at each retry). The limit is refused past that; at the limit a task fits."""
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"CAIRN_TASK_MAX_ITEMS": str(TASK_MAX_ITEMS_LIMIT + 1)})
    assert str(e.value).startswith("CAIRN_TASK_MAX_ITEMS"), str(e.value)
    s = Settings.from_env({"CAIRN_TASK_MAX_ITEMS": str(TASK_MAX_ITEMS_LIMIT)})
    assert s.task_max_items == TASK_MAX_ITEMS_LIMIT
    created = TaskCreated(
        task_id=str(uuid.uuid4()),
        owner="u" * 255,
        task_type="compress",
        params={
            "files": [str(uuid.uuid4()) for _ in range(TASK_MAX_ITEMS_LIMIT)],
            "output": {"file_name": "n" * 255, "bucket": "b" * 63},
        },
        items_total=TASK_MAX_ITEMS_LIMIT,
        at=datetime.now(UTC),
    )
    message = orjson.dumps({"envelope": "x" * 1024, "data": NewEvent.of(created).data})
    assert len(message) < MAX_MESSAGE_BYTES - 512 * 1024, len(message)
