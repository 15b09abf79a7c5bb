"""The AsyncAPI document for Kafka consumers: topics, keys, the envelope, event types.

Channels and messages come from the domain's registry; each message's `data` schema is
derived from the typed event definition (msgspec's JSON Schema of the event dataclass), so
the published schema cannot drift from what `decide` writes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bus.config.settings import Settings
from domain.kernel import Event
from domain.registry import AGGREGATES, EVENTS

_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "type",
        "schema_version",
        "stream_id",
        "version",
        "position",
        "occurred_at",
        "data",
    ],
    "properties": {
        "id": {
            "type": "string",
            "format": "uuid",
            "description": "event id; duplicates carry the same id",
        },
        "type": {"type": "string"},
        "schema_version": {"type": "integer"},
        "stream_id": {"type": "string", "description": "<aggregate>-<uuid>"},
        "version": {"type": "integer", "description": "1-based position within the stream"},
        "position": {"type": "integer", "description": "global position in the event store"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "owner": {"type": ["string", "null"]},
        "correlation_id": {"type": ["string", "null"]},
        "causation_id": {"type": ["string", "null"]},
        "data": {"type": "object"},
    },
}


def _data_schema(cls: type[Event]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema of the event's `data`, the definitions it refers to under `#/$defs/`).

    The definitions go into each message payload, so every payload schema stands alone:
    a consumer can validate a message with it without resolving the rest of the document."""
    (ref,), defs = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
    return ref, defs


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type, (_, cls) in sorted(EVENTS.items()):
        version = cls.schema_version
        data, defs = _data_schema(cls)
        messages[event_type] = {
            "name": event_type,
            "title": f"{event_type} (schema v{version})",
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "event-id": {"type": "string"},
                    "event-type": {"const": event_type},
                    "traceparent": {"type": "string"},
                },
            },
            "payload": {
                **_ENVELOPE,
                "properties": {
                    **_ENVELOPE["properties"],
                    "type": {"const": event_type},
                    "schema_version": {"const": version},
                    "data": data,
                },
                "$defs": defs,
            },
        }
    for agg in AGGREGATES:
        topic = settings.topic(agg)
        channels[agg] = {
            "address": topic,
            "description": f"Every event of the {agg} aggregates, keyed by aggregate id, in order per aggregate.",
            "messages": {
                t: {"$ref": f"#/components/messages/{t}"}
                for t, (owner, _) in sorted(EVENTS.items())
                if owner == agg
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Cairn events",
            "version": "1.0.0",
            "description": "At-least-once delivery; `id` and (`stream_id`, `version`) identify duplicates.",
        },
        "channels": channels,
        "operations": {
            f"consume_{agg}": {"action": "receive", "channel": {"$ref": f"#/channels/{agg}"}}
            for agg in AGGREGATES
        },
        "components": {"messages": messages},
    }
