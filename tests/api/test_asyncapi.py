"""The AsyncAPI document: one channel per registered aggregate, one message per event type
with the JSON schema of its `data` derived from the typed event (pure: no system needed)."""

from __future__ import annotations

from typing import Any

import orjson
from jsonschema import Draft202012Validator

from api.asyncapi import asyncapi_document
from bus.config.settings import Settings
from domain.registry import AGGREGATES, EVENTS
from tests.domain.test_registry import GOLDEN


def _doc() -> dict[str, Any]:
    doc = asyncapi_document(Settings(topic_prefix="t"))
    return orjson.loads(orjson.dumps(doc))  # what the endpoint serves: plain JSON


def test_a_channel_per_aggregate_with_its_event_types() -> None:
    doc = _doc()
    assert set(doc["channels"]) == set(AGGREGATES)
    for name, channel in doc["channels"].items():
        assert channel["address"] == f"t.{name}"
        assert set(channel["messages"]) == {e.type for e in AGGREGATES[name].events}
    assert "FetchBytesAppended" in doc["channels"]["fetches"]["messages"]


def test_each_message_has_its_schema_version_and_data_schema() -> None:
    doc = _doc()
    for event_type, (_, cls) in EVENTS.items():
        payload = doc["components"]["messages"][event_type]["payload"]
        Draft202012Validator.check_schema(payload)
        props = payload["properties"]
        assert props["type"] == {"const": event_type}
        assert props["schema_version"] == {"const": cls.schema_version}
        data_schema = _resolve(payload, props["data"])
        # Every field the event writes is described; the required ones are exactly those
        # without a default.
        _, golden = GOLDEN[event_type]
        assert set(data_schema["properties"]) == set(golden)
        assert "at" in data_schema["required"]


def _resolve(payload: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return payload["$defs"][ref.removeprefix("#/$defs/")] if ref else schema


def _data(event_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = _doc()["components"]["messages"][event_type]["payload"]
    return payload, _resolve(payload, payload["properties"]["data"])


def test_schemas_describe_field_types_and_shared_pieces() -> None:
    _, chunk = _data("UploadChunkStored")
    props = chunk["properties"]
    assert props["size"] == {"type": "integer"} and props["sha256"] == {"type": "string"}
    payload, appended = _data("UploadBytesAppended")
    assert appended["properties"]["pieces"]["items"] == {"$ref": "#/$defs/Piece"}
    assert payload["$defs"]["Piece"]["required"] == ["sha256", "size"]
    _, initiated = _data("UploadInitiated")
    assert {"type": "null"} in initiated["properties"]["file_size"]["anyOf"]  # deferred length


def test_each_payload_schema_validates_a_stored_event_on_its_own() -> None:
    """Without the rest of the document, as a plain consumer validates (tests/contract)."""
    for event_type, (version, data) in GOLDEN.items():
        payload, _ = _data(event_type)
        envelope = {
            "id": "6a4f1c2e-0000-4000-8000-000000000001",
            "type": event_type,
            "schema_version": version,
            "stream_id": "upload-x",
            "version": 1,
            "position": 1,
            "occurred_at": "2026-01-02T03:04:05+00:00",
            "data": data,
        }
        assert list(Draft202012Validator(payload).iter_errors(envelope)) == []
        broken = {**envelope, "data": {**data, "at": 5}}
        assert list(Draft202012Validator(payload).iter_errors(broken)) != []
