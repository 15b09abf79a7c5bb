"""What the wire carries, as API.md fixes it: the tests check the code against these, so
they are written out here, not taken from the code."""

from __future__ import annotations

# Every key of an event's envelope on Kafka, always sent (`owner` and the ids too, as null).
EVENT_ENVELOPE = frozenset(
    {
        "id",
        "type",
        "schema_version",
        "stream_id",
        "version",
        "position",
        "occurred_at",
        "owner",
        "correlation_id",
        "causation_id",
        "data",
    }
)
