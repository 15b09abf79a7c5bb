"""The event topics as FastStream publisher declarations, and the AsyncAPI document
FastStream builds from them.

Not served yet: /schema/asyncapi.json is still api/asyncapi.py, whose shape (channels
keyed by aggregate, messages by event type, msgspec data schemas) tests/api/test_asyncapi.py
fixes; this document carries the same information in FastStream's shape (a channel per
event type) and is meant to replace it once the two shapes are reconciled.

Every event type at its current schema version is one declared publisher on its
aggregate's topic, whose schema is the event envelope (API.md) with `type` and
`schema_version` fixed and `data` typed by the event's own definition; FastStream turns
the declarations into an AsyncAPI 3.0 document with one message per event type and
version. Aggregates with no event type yet (reserved topics) get one envelope publisher.

The event types come from `event_schemas()`, the one place that reads them from the
domain's registry of aggregates and typed events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, Field, create_model

from bus.config.settings import Settings
from bus.kafka.clients import AGGREGATES
from domain.registry import EVENTS


@dataclass(frozen=True)
class EventSchema:
    aggregate: str
    type: str
    version: int
    # A type pydantic can describe (a dataclass, a msgspec-free model, a mapping).
    data: Any


def event_schemas() -> list[EventSchema]:
    """Every event type at its current schema version, from the domain's registry; `data`
    is the typed event definition (a frozen dataclass), which pydantic describes."""
    return [
        EventSchema(aggregate, cls.type, cls.schema_version, cls)
        for event_type, (aggregate, cls) in sorted(EVENTS.items())
    ]


# Headers of every event message (bus/store/relay.py `event_message`).
EVENT_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event-id": {"type": "string", "description": "the envelope's id"},
        "event-type": {"type": "string", "description": "the envelope's type"},
        "schema-version": {"type": "string", "description": "the envelope's schema_version"},
        "traceparent": {
            "type": "string",
            "description": "W3C trace context of the command that caused the event",
        },
        "content-type": {"const": "application/json"},
    },
}


def envelope_model(event_type: str | None, version: int | None, data: Any) -> type[BaseModel]:
    """The envelope (API.md) of one event type and version; any event when both are None."""
    type_field: Any = (str, ...) if event_type is None else (Literal[event_type], ...)
    version_field: Any = (int, ...) if version is None else (Literal[version], ...)
    name = "Event" if event_type is None else f"{event_type}V{version}"
    model: type[BaseModel] = create_model(
        name,
        id=(str, Field(description="event id; duplicates carry the same id")),
        type=type_field,
        schema_version=version_field,
        stream_id=(str, Field(description="<aggregate>-<uuid>")),
        version=(int, Field(description="1-based position within the stream")),
        position=(int, Field(description="global position in the event store")),
        occurred_at=(datetime, ...),
        owner=(str | None, None),
        correlation_id=(str | None, None),
        causation_id=(str | None, None),
        data=(data, ...),
    )
    return model


def declare_event_publishers(
    broker: KafkaBroker, settings: Settings, schemas: list[EventSchema] | None = None
) -> None:
    """One publisher per event type and version on its aggregate's topic."""
    schemas = event_schemas() if schemas is None else schemas
    for aggregate in AGGREGATES:
        topic = settings.topic(aggregate)
        mine = [s for s in schemas if s.aggregate == aggregate]
        description = (
            f"Every event of the {aggregate} aggregates, keyed by aggregate id, in order per"
            " aggregate. At-least-once: `id` and (`stream_id`, `version`) identify duplicates."
        )
        if not mine:
            broker.publisher(
                topic,
                title=topic,
                description=description + " No event type is published here yet.",
                schema=envelope_model(None, None, dict[str, Any]),
            )
        for s in mine:
            broker.publisher(
                topic,
                title=f"{topic}:{s.type}",
                description=f"{s.type} (schema v{s.version}). {description}",
                schema=envelope_model(s.type, s.version, s.data),
            )


_DOCUMENTS: dict[tuple[str, str | None], dict[str, Any]] = {}


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The document for these settings' topics, built once per process."""
    key = (settings.topic_prefix, settings.kafka_bootstrap)
    if key not in _DOCUMENTS:
        _DOCUMENTS[key] = _document(settings)
    return _DOCUMENTS[key]


def _document(settings: Settings) -> dict[str, Any]:
    # Never connected: only its declarations are read.
    broker = KafkaBroker(settings.kafka_bootstrap or "localhost:9092")
    declare_event_publishers(broker, settings)
    doc: dict[str, Any] = (
        AsyncAPI(
            broker,
            title="Cairn events",
            version="1.0.0",
            description="Domain events, one topic per aggregate type, keyed by aggregate id."
            " At-least-once delivery: `id` and (`stream_id`, `version`) identify duplicates.",
            schema_version="3.0.0",
        )
        .to_specification()
        .to_jsonable()
    )
    return _published_form(doc)


def _published_form(doc: dict[str, Any]) -> dict[str, Any]:
    """The document in the form README promises consumers: each message under its event
    type (`components.messages.<type>`), its payload a self-contained JSON Schema of the
    whole value (FastStream's `$ref`s into `components.schemas` inlined), its headers the
    ones the relay sends, its correlation id in the envelope (not a header)."""
    components = doc.setdefault("components", {})
    schemas = components.get("schemas", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                return inline(schemas[ref.rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    renamed: dict[str, str] = {}
    messages: dict[str, Any] = {}
    for key, message in components.get("messages", {}).items():
        payload = inline(message["payload"])
        name = payload.get("properties", {}).get("type", {}).get("const")
        name = name or key.removesuffix(":Message")
        renamed[key] = name
        messages[name] = {
            **message,
            "name": name,
            "title": payload.get("title", name),
            "payload": payload,
            "headers": EVENT_HEADERS,
            "contentType": "application/json",
            "correlationId": {"location": "$message.payload#/correlation_id"},
        }
    components["messages"] = messages
    for channel in doc.get("channels", {}).values():
        for ref in channel.get("messages", {}).values():
            old = ref["$ref"].rsplit("/", 1)[-1]
            ref["$ref"] = f"#/components/messages/{renamed.get(old, old)}"
    return doc
