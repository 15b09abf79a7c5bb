"""The AsyncAPI document FastStream generates from the declared event publishers."""

from __future__ import annotations

import orjson
from jsonschema import Draft202012Validator

from bus.config.settings import Settings
from bus.kafka.clients import AGGREGATES
from bus.kafka.spec import asyncapi_document, event_schemas


def test_one_message_per_event_type_and_version_on_its_aggregate_topic() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9092", topic_prefix="spec")
    doc = orjson.loads(orjson.dumps(asyncapi_document(settings)))  # plain JSON
    assert doc["asyncapi"] == "3.0.0"
    schemas = event_schemas()
    assert {s.type for s in schemas} >= {"UploadInitiated", "UploadCompleted", "FileCreated"}
    for s in schemas:
        channel = doc["channels"][f"spec.{s.aggregate}:{s.type}"]
        assert channel["address"] == f"spec.{s.aggregate}"
        [ref] = channel["messages"].values()
        # The form README promises: components.messages.<type>, payload self-contained.
        assert ref["$ref"] == f"#/components/messages/{s.type}"
        message = doc["components"]["messages"][s.type]
        assert message["headers"]["properties"]["traceparent"]["type"] == "string"
        payload = message["payload"]
        assert "$ref" not in orjson.dumps(payload).decode()
        Draft202012Validator.check_schema(payload)
        assert payload["properties"]["type"]["const"] == s.type
        assert payload["properties"]["schema_version"]["const"] == s.version
        assert {"id", "stream_id", "version", "position", "occurred_at", "data"} <= set(
            payload["required"]
        )
    # Every aggregate topic is in the document, also those with no event type yet.
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {f"spec.{a}" for a in AGGREGATES}
    assert all(op["action"] == "send" for op in doc["operations"].values())
