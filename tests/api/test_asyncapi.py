"""The AsyncAPI document served at /schema/asyncapi.json (FastStream-generated, see
bus/kafka/spec.py): every aggregate topic, one message per event type and version with the
JSON schema of its `data` derived from the typed event (pure: no system needed)."""

from __future__ import annotations

from typing import Any

import orjson
from jsonschema import Draft202012Validator

from bus.config.settings import Settings
from bus.kafka.spec import asyncapi_document
from domain.registry import AGGREGATES, EVENTS
from tests.domain.test_registry import GOLDEN


def _doc() -> dict[str, Any]:
    doc = asyncapi_document(Settings(topic_prefix="t"))
    return orjson.loads(orjson.dumps(doc))  # what the endpoint serves: plain JSON


def test_info_and_version() -> None:
    doc = _doc()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "Cairn events"
    assert "identify duplicates" in doc["info"]["description"]
    assert "servers" not in doc  # the broker address is not part of the contract


def test_every_aggregate_topic_carries_its_event_types() -> None:
    doc = _doc()
    by_topic: dict[str, set[str]] = {}
    for channel in doc["channels"].values():
        names = by_topic.setdefault(channel["address"], set())
        for name, ref in channel["messages"].items():
            assert ref == {"$ref": f"#/components/messages/{name}"}
            names.add(name)
    assert by_topic == {
        f"t.{name}": {e.type for e in spec.events} for name, spec in AGGREGATES.items()
    }
    assert "FetchBytesAppended" in by_topic["t.fetches"]
    assert set(doc["components"]["messages"]) == set(EVENTS)
    # Each operation refers to its channel's messages, which exist.
    for operation in doc["operations"].values():
        channel_key = operation["channel"]["$ref"].removeprefix("#/channels/")
        channel = doc["channels"][channel_key]
        assert [m["$ref"].rsplit("/", 1)[-1] for m in operation["messages"]] == list(
            channel["messages"]
        )


def test_each_message_has_its_schema_version_headers_and_data_schema() -> None:
    doc = _doc()
    for event_type, (_, cls) in EVENTS.items():
        message = doc["components"]["messages"][event_type]
        assert message["title"] == f"{event_type} (schema v{cls.schema_version})"
        payload = message["payload"]
        Draft202012Validator.check_schema(payload)
        props = payload["properties"]
        assert props["type"]["const"] == event_type
        assert props["schema_version"]["const"] == cls.schema_version
        headers = message["headers"]["properties"]
        assert headers["event-type"]["const"] == event_type
        assert headers["schema-version"]["const"] == str(cls.schema_version)
        assert headers["traceparent"]["type"] == "string"
        data_schema = props["data"]
        # Every field the event writes is described; the required ones are exactly those
        # without a default.
        _, golden = GOLDEN[event_type]
        assert set(data_schema["properties"]) == set(golden)
        assert "at" in data_schema["required"]


def test_each_payload_is_self_contained() -> None:
    """No `$ref` at all: a payload validates alone, and the document stays valid for the
    AsyncAPI parser (which resolves `#/...` against the document's root)."""
    for name, message in _doc()["components"]["messages"].items():
        assert "$ref" not in orjson.dumps(message["payload"]).decode(), name


def _data(event_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = _doc()["components"]["messages"][event_type]["payload"]
    return payload, payload["properties"]["data"]


def _untitled(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "title"}


def test_schemas_describe_field_types_and_shared_pieces() -> None:
    _, chunk = _data("UploadChunkStored")
    props = chunk["properties"]
    assert _untitled(props["size"]) == {"type": "integer"}
    assert _untitled(props["sha256"]) == {"type": "string"}
    _, appended = _data("UploadBytesAppended")
    piece = appended["properties"]["pieces"]["items"]  # domain/values.py Piece, inlined
    assert piece["required"] == ["sha256", "size"]
    assert _untitled(piece["properties"]["size"]) == {"type": "integer"}
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
            "owner": "alice",
            "correlation_id": "c1",
            "causation_id": None,
            "data": data,
        }
        validator = Draft202012Validator(payload)
        # Every envelope key is always sent (domain/events.py `envelope`): one missing fails.
        assert list(validator.iter_errors({k: v for k, v in envelope.items() if k != "owner"}))
        assert list(validator.iter_errors(envelope)) == []
        broken = {**envelope, "data": {**data, "at": 5}}
        assert list(validator.iter_errors(broken)) != []
        other_version = {**envelope, "schema_version": version + 1}
        assert list(validator.iter_errors(other_version)) != []
