"""The AsyncAPI document FastStream generates from the declared event publishers: one
channel per publisher (event type and version) on its aggregate's topic. What consumers
rely on in it is tested in tests/api/test_asyncapi.py (the served document)."""

from __future__ import annotations

import orjson
import pytest

from bus.config.settings import Settings
from bus.kafka.clients import AGGREGATES
from bus.kafka.spec import _self_contained, asyncapi_document, event_schemas
from tests.wire import EVENT_ENVELOPE


def test_one_channel_per_event_type_and_version_on_its_aggregate_topic() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9092", topic_prefix="spec")
    doc = orjson.loads(orjson.dumps(asyncapi_document(settings)))  # plain JSON
    assert doc["asyncapi"] == "3.0.0"
    schemas = event_schemas()
    assert {s.type for s in schemas} >= {"UploadInitiated", "UploadCompleted", "FileCreated"}
    assert any(s.version > 1 for s in schemas)  # UploadInitiated is at v2
    for s in schemas:
        channel = doc["channels"][f"spec.{s.aggregate}:{s.type}.v{s.version}"]
        assert channel["address"] == f"spec.{s.aggregate}"
        assert channel["bindings"]["kafka"]["topic"] == f"spec.{s.aggregate}"
        assert f"(schema v{s.version})" in channel["description"]
        assert channel["messages"] == {s.type: {"$ref": f"#/components/messages/{s.type}"}}
        payload = doc["components"]["messages"][s.type]["payload"]
        assert payload["properties"]["schema_version"]["const"] == s.version
        # Every key of the envelope is always sent (API.md), `owner` and the ids too.
        assert set(payload["required"]) == EVENT_ENVELOPE
    # Every aggregate topic is in the document, also those with no event type yet.
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {f"spec.{a}" for a in AGGREGATES}
    assert all(op["action"] == "send" for op in doc["operations"].values())
    # FastStream's shared components.schemas are inlined into each payload.
    assert set(doc["components"]) == {"messages"}


def test_a_recursive_schema_fails_at_build_time() -> None:
    schemas = {"Node": {"properties": {"next": {"$ref": "#/components/schemas/Node"}}}}
    with pytest.raises(TypeError, match="recursive event schema Node -> Node"):
        _self_contained({"$ref": "#/components/schemas/Node"}, schemas)


def test_every_event_type_s_data_schema_names_exactly_its_fields() -> None:
    """Each event type of the domain's registry is a message whose `data` schema has the
    properties its data really carries (the dataclass's fields, as `Event.data` writes
    them), the ones without a default required, and no property it never carries."""
    import dataclasses

    from domain.registry import EVENTS

    settings = Settings(kafka_bootstrap="127.0.0.1:9092", topic_prefix="spec")
    doc = orjson.loads(orjson.dumps(asyncapi_document(settings)))
    messages = doc["components"]["messages"]
    assert set(messages) == set(EVENTS)
    for event_type, (aggregate, cls) in EVENTS.items():
        fields = dataclasses.fields(cls)
        data = messages[event_type]["payload"]["properties"]["data"]
        assert set(data["properties"]) == {f.name for f in fields}, event_type
        required = {
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        assert set(data.get("required", [])) == required, event_type
        channels = [c for c in doc["channels"].values() if event_type in c["messages"]]
        assert [c["address"] for c in channels] == [f"spec.{aggregate}"], event_type
