"""The AsyncAPI document: one channel per registered aggregate, one message per event type
with the JSON schema of its `data` derived from the typed event (pure: no system needed)."""

from __future__ import annotations

from typing import Any

import orjson

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
    assert set(doc["channels"]["fetches"]["messages"]) == set()  # reserved: topic only


def test_each_message_has_its_schema_version_and_data_schema() -> None:
    doc = _doc()
    schemas = doc["components"]["schemas"]
    for event_type, (_, cls) in EVENTS.items():
        payload = doc["components"]["messages"][event_type]["payload"]["properties"]
        assert payload["type"] == {"const": event_type}
        assert payload["schema_version"] == {"const": cls.schema_version}
        ref = payload["data"]["$ref"]
        data_schema = schemas[ref.rsplit("/", 1)[1]]
        # Every field the event writes is described; the required ones are exactly those
        # without a default.
        _, golden = GOLDEN[event_type]
        assert set(data_schema["properties"]) == set(golden)
        assert "at" in data_schema["required"]


def test_schemas_describe_field_types_and_shared_pieces() -> None:
    schemas = _doc()["components"]["schemas"]
    chunk = schemas["UploadChunkStored"]["properties"]
    assert chunk["size"] == {"type": "integer"} and chunk["sha256"] == {"type": "string"}
    pieces = schemas["UploadBytesAppended"]["properties"]["pieces"]
    assert pieces["items"] == {"$ref": "#/components/schemas/Piece"}
    assert schemas["Piece"]["required"] == ["sha256", "size"]
    size = schemas["UploadInitiated"]["properties"]["file_size"]
    assert {"type": "null"} in size["anyOf"]  # a deferred length
