"""An outside Kafka consumer of Cairn's topics, as a user would write it: plain aiokafka and
jsonschema, the topic names and message schemas taken from the published AsyncAPI
document. It imports nothing of Cairn (test_kafka_contract.py checks that), so it can only
rely on what the contract publishes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from jsonschema import Draft202012Validator


@dataclass
class Seen:
    """What the consumer observed, deduplicated by event id as README advises."""

    records: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    # stream id -> versions in the order they arrived (first delivery of each event id)
    versions: dict[str, list[int]] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)


def validators(asyncapi: dict[str, Any]) -> dict[str, Draft202012Validator]:
    """One validator per event type, from components.messages.<type>.payload."""
    return _schemas(asyncapi, "payload")


def header_validators(asyncapi: dict[str, Any]) -> dict[str, Draft202012Validator]:
    """One validator per event type, from components.messages.<type>.headers."""
    return _schemas(asyncapi, "headers")


def _schemas(asyncapi: dict[str, Any], part: str) -> dict[str, Draft202012Validator]:
    out = {}
    for name, message in asyncapi["components"]["messages"].items():
        Draft202012Validator.check_schema(message[part])
        out[name] = Draft202012Validator(message[part])
    return out


def topics(asyncapi: dict[str, Any]) -> list[str]:
    """Every topic once (several channels, one per event type, share a topic's address)."""
    return sorted({channel["address"] for channel in asyncapi["channels"].values()})


def check(
    seen: Seen,
    schemas: dict[str, Draft202012Validator],
    header_schemas: dict[str, Draft202012Validator],
    msg: Any,
) -> None:
    seen.records += 1
    where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
    try:
        value = json.loads(msg.value)
    except ValueError:
        seen.problems.append(f"{where}: value is not JSON")
        return
    headers = {k: v.decode() for k, v in msg.headers or ()}
    event_type = value.get("type")
    validator = schemas.get(event_type)
    if validator is None:
        seen.problems.append(f"{where}: type {event_type!r} is not in the AsyncAPI document")
        return
    for error in validator.iter_errors(value):
        seen.problems.append(f"{where}: {event_type}: {error.message} at {list(error.path)}")
    for error in header_schemas[event_type].iter_errors(headers):
        seen.problems.append(f"{where}: {event_type} headers: {error.message}")
    if headers.get("event-id") != value.get("id"):
        seen.problems.append(f"{where}: header event-id differs from the value's id")
    if headers.get("event-type") != event_type:
        seen.problems.append(f"{where}: header event-type differs from the value's type")
    stream_id = str(value.get("stream_id"))
    if msg.key is None or stream_id.split("-", 1)[-1] != msg.key.decode():
        seen.problems.append(f"{where}: key is not the aggregate id of {stream_id}")
    if value["id"] in seen.ids:
        seen.duplicates += 1  # at-least-once: the same id again is a duplicate, skip it
        return
    seen.ids.add(value["id"])
    seen.types.add(event_type)
    seen.versions.setdefault(stream_id, []).append(int(value["version"]))


async def consume(
    bootstrap: str, asyncapi: dict[str, Any], seen: Seen, stop: asyncio.Event
) -> None:
    """Read every topic from the beginning, without a consumer group, until `stop`."""
    schemas = validators(asyncapi)
    header_schemas = header_validators(asyncapi)
    consumer = AIOKafkaConsumer(
        *topics(asyncapi),
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for msg in records:
                    check(seen, schemas, header_schemas, msg)
    finally:
        await consumer.stop()
