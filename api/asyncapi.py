"""The AsyncAPI document for Kafka consumers: topics, keys, the envelope, event types."""

from __future__ import annotations

from typing import Any

from bus.config.settings import Settings
from bus.kafka.clients import AGGREGATES
from domain import files, uploads  # noqa: F401  (registers event types)
from domain.events import CURRENT_VERSIONS, STREAM_PREFIXES

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


def _aggregate_of_type(event_type: str) -> str:
    for prefix, name in STREAM_PREFIXES.items():
        if event_type.lower().startswith(prefix):
            return name
    return "other"


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type, version in sorted(CURRENT_VERSIONS.items()):
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
                },
            },
        }
    for agg in AGGREGATES:
        topic = settings.topic(agg)
        channels[agg] = {
            "address": topic,
            "description": f"Every event of the {agg} aggregates, keyed by aggregate id, in order per aggregate.",
            "messages": {
                t: {"$ref": f"#/components/messages/{t}"}
                for t in messages
                if _aggregate_of_type(t) == agg
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
