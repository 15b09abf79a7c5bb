"""The event topics as FastStream publisher declarations, and the AsyncAPI document
FastStream generates from them: what /schema/asyncapi.json serves (api/routes/ops.py).

Every event type at its current schema version is one declared publisher on its
aggregate's topic, whose schema is the event envelope (API.md) with `type` and
`schema_version` fixed and `data` typed by the event's own definition (the frozen
dataclass of domain/registry.py, which pydantic describes). The relay only ever publishes
the current version of each type (it upcasts), so one publisher per type is one per type
and version. Reserved topics (aggregates with no event type yet) get a publisher with no
schema: a channel with no message. FastStream turns the declarations into an AsyncAPI 3.0
document: one channel per publisher (so several channels share an aggregate's topic
address), one message each.

`_published_form` then adapts FastStream's output to what consumers rely on (README
"Kafka", tests/contract/): messages keyed by event type (`components.messages.<type>`);
each payload a self-contained JSON Schema of the whole value, FastStream's `$ref`s into
`components.schemas` inlined, so a plain JSON Schema validator checks a message with that
payload alone (and the document stays valid for the AsyncAPI parser, see
`_self_contained`); headers as the relay sends them
(bus/store/relay.py `event_message`); the correlation id in the envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, Field, create_model

from bus.config.settings import Settings
from bus.kafka.clients import AGGREGATES
from domain.registry import EVENTS

TITLE = "Cairn events"
VERSION = "1.0.0"
DESCRIPTION = "At-least-once delivery; `id` and (`stream_id`, `version`) identify duplicates."

_SCHEMAS = "#/components/schemas/"


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


def event_headers(event_type: str, version: int) -> dict[str, Any]:
    """The headers of one event type's messages (bus/store/relay.py `event_message`)."""
    return {
        "type": "object",
        "required": ["event-id", "event-type", "schema-version"],
        "properties": {
            "event-id": {"type": "string", "description": "the envelope's id"},
            "event-type": {"const": event_type, "description": "the envelope's type"},
            "schema-version": {
                "const": str(version),
                "description": "the envelope's schema_version",
            },
            "traceparent": {
                "type": "string",
                "description": "W3C trace context of the command that caused the event",
            },
            "content-type": {"const": "application/json"},
        },
    }


def envelope_model(event_type: str, version: int, data: Any) -> type[BaseModel]:
    """The envelope (API.md) of one event type and version."""
    # Literals of runtime values: typed Any, which is what pydantic takes them as.
    type_field: Any = (Literal[event_type], ...)
    version_field: Any = (Literal[version], ...)
    model: type[BaseModel] = create_model(
        f"{event_type}V{version}",
        id=(UUID, Field(description="event id; duplicates carry the same id")),
        type=type_field,
        schema_version=version_field,
        stream_id=(str, Field(description="<aggregate>-<uuid>")),
        version=(int, Field(description="1-based position within the stream")),
        position=(int, Field(description="global position in the event store")),
        occurred_at=(datetime, ...),
        # Always sent (the key is there, API.md); null only where nothing is known.
        owner=(
            str | None,
            Field(description="user id owning the aggregate when the event was recorded"),
        ),
        correlation_id=(str | None, Field(description="the request or command it came from")),
        causation_id=(str | None, Field(description="the command that caused it")),
        data=(data, ...),
    )
    return model


def channel_description(aggregate: str) -> str:
    return (
        f"Every event of the {aggregate} aggregates, keyed by aggregate id, in order per aggregate."
    )


def declare_event_publishers(
    broker: KafkaBroker, settings: Settings, schemas: list[EventSchema] | None = None
) -> None:
    """One publisher per event type and version on its aggregate's topic; one without a
    message for each reserved topic."""
    schemas = event_schemas() if schemas is None else schemas
    for aggregate in AGGREGATES:
        topic = settings.topic(aggregate)
        mine = [s for s in schemas if s.aggregate == aggregate]
        if not mine:
            broker.publisher(
                topic,
                title=topic,
                description=channel_description(aggregate) + " Reserved: no event type yet.",
            )
        for s in mine:
            broker.publisher(
                topic,
                title=f"{topic}:{s.type}.v{s.version}",
                description=f"{s.type} (schema v{s.version}). {channel_description(aggregate)}",
                schema=envelope_model(s.type, s.version, s.data),
            )


_DOCUMENTS: dict[str, dict[str, Any]] = {}


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The document for these settings' topics, built once per process."""
    if settings.topic_prefix not in _DOCUMENTS:
        _DOCUMENTS[settings.topic_prefix] = _document(settings)
    return _DOCUMENTS[settings.topic_prefix]


def _document(settings: Settings) -> dict[str, Any]:
    # Never connected: only its declarations are read.
    broker = KafkaBroker("localhost")
    declare_event_publishers(broker, settings)
    doc: dict[str, Any] = (
        AsyncAPI(
            broker,
            title=TITLE,
            version=VERSION,
            description=DESCRIPTION,
            schema_version="3.0.0",
        )
        .to_specification()
        .to_jsonable()
    )
    return _published_form(doc)


def _self_contained(payload: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """`payload` with every schema it refers to inlined, so it has no `$ref` at all.

    Not `$defs` inside the payload: a `#/...` reference resolves against the root of the
    document it sits in, so the official AsyncAPI parser (@asyncapi/parser) looks for
    `#/$defs/X` at the document's root and rejects the document. Inlined, a payload is
    valid both inside the document and alone. Event types are not recursive; one that
    becomes so fails here, at build time, rather than publishing a broken schema."""

    def inline(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_SCHEMAS):
                name = ref.removeprefix(_SCHEMAS)
                if name in seen:
                    raise TypeError(f"recursive event schema {' -> '.join((*seen, name))}")
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**inline(schemas[name], (*seen, name)), **inline(rest, seen)}
            return {k: inline(v, seen) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v, seen) for v in node]
        return node

    out: dict[str, Any] = inline(payload, ())
    return out


def _published_form(doc: dict[str, Any]) -> dict[str, Any]:
    """FastStream's document in the form README promises consumers (module docstring)."""
    components = doc.setdefault("components", {})
    schemas = components.pop("schemas", {})
    renamed: dict[str, str | None] = {}
    messages: dict[str, Any] = {}
    for key, message in components.get("messages", {}).items():
        payload = _self_contained(message["payload"], schemas)
        props = payload.get("properties", {})
        event_type = props.get("type", {}).get("const")
        if event_type is None:  # a reserved topic's publisher: no message
            renamed[key] = None
            continue
        version = props["schema_version"]["const"]
        renamed[key] = event_type
        messages[event_type] = {
            **message,
            "name": event_type,
            "title": f"{event_type} (schema v{version})",
            "payload": payload,
            "headers": event_headers(event_type, version),
            "contentType": "application/json",
            "correlationId": {"location": "$message.payload#/correlation_id"},
        }
    components["messages"] = messages

    def target(ref: dict[str, str]) -> str | None:
        return renamed.get(ref["$ref"].rsplit("/", 1)[-1])

    # No servers: the bootstrap address is deployment detail (and FastStream's is the
    # placeholder above), not part of the published contract.
    doc.pop("servers", None)
    for channel in doc.get("channels", {}).values():
        channel.pop("servers", None)
        channel["messages"] = {
            name: {"$ref": f"#/components/messages/{name}"}
            for ref in channel.get("messages", {}).values()
            if (name := target(ref)) is not None
        }
    for operation in doc.get("operations", {}).values():
        channel_key = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        operation["messages"] = [
            {"$ref": f"#/channels/{channel_key}/messages/{name}"}
            for name in doc["channels"][channel_key]["messages"]
        ]
    return doc
