"""Events as stored and published: the envelope, and the typed view of its data.

An event is immutable once appended. When an event's shape changes its class in the
aggregate's package bumps `schema_version` and gains an upcaster from the old version;
readers only ever see the current version (the event store and `from_envelope` upcast), so
`evolve` never has to know history existed. An event stored at a version NEWER than this
code's (a newer deployment wrote it) is left as stored, and reading it typed raises
`domain.errors.NewerSchema`: never read as if it were the current version.
`RecordedEvent.data` is the raw (upcast) JSON; `RecordedEvent.payload` is the typed event
(see domain.registry).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from domain.kernel import JSON, Event, NewEvent
from domain.registry import (
    STREAM_PREFIXES,
    aggregate_of,
    decode,
    newer_schema,
    stream_id_for,
    upcast,
)
from domain.values import aware

__all__ = [
    "JSON",
    "STREAM_PREFIXES",
    "EventMeta",
    "NewEvent",
    "RecordedEvent",
    "aggregate_of",
    "event_time",
    "stream_id_for",
    "upcast",
    "upcast_recorded",
]


@dataclass(frozen=True)
class EventMeta:
    """Who and why: carried next to every event of one append."""

    occurred_at: datetime
    owner: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None


@dataclass(frozen=True)
class RecordedEvent:
    """An event as read back from the store, upcast to its current schema version."""

    id: str
    stream_id: str
    version: int
    position: int
    type: str
    schema_version: int
    data: JSON
    occurred_at: datetime
    owner: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    extra: JSON = field(default_factory=dict)

    @property
    def aggregate(self) -> str:
        return aggregate_of(self.stream_id)

    @property
    def aggregate_id(self) -> str:
        return self.stream_id.split("-", 1)[1]

    @property
    def payload(self) -> Event | None:
        """The typed event; None for an event type this code does not know (written by a
        newer version): readers skip those. Raises NewerSchema for a known type at a newer
        schema version than this code's (domain.errors)."""
        return decode(self)

    @staticmethod
    def from_envelope(env: JSON, traceparent: str | None = None) -> RecordedEvent:
        """Parse the Kafka JSON value (see `envelope`), upcasting old schema versions."""
        return upcast_recorded(
            RecordedEvent(
                id=str(env["id"]),
                stream_id=str(env["stream_id"]),
                version=int(env["version"]),
                position=int(env["position"]),
                type=str(env["type"]),
                schema_version=int(env["schema_version"]),
                data=dict(env["data"]),
                occurred_at=datetime.fromisoformat(str(env["occurred_at"])),
                owner=env.get("owner"),
                correlation_id=env.get("correlation_id"),
                causation_id=env.get("causation_id"),
                traceparent=traceparent,
            )
        )

    def envelope(self) -> JSON:
        """The JSON value published on Kafka (see API.md)."""
        return {
            "id": self.id,
            "type": self.type,
            "schema_version": self.schema_version,
            "stream_id": self.stream_id,
            "version": self.version,
            "position": self.position,
            "occurred_at": self.occurred_at.isoformat(),
            "owner": self.owner,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "data": self.data,
        }


def upcast_recorded(ev: RecordedEvent) -> RecordedEvent:
    """`ev` at its current schema version: upcast if older; as stored if newer than this
    code's (passed on untouched by the event store's reads, so the relay publishes it as
    written for readers that know it; typed reading refuses it, see `payload`)."""
    if newer_schema(ev.type, ev.schema_version) is not None:
        return ev
    version, data = upcast(ev.type, ev.schema_version, ev.data)
    if version == ev.schema_version:
        return ev
    return replace(ev, schema_version=version, data=data)


def event_time(ev: RecordedEvent) -> datetime:
    """The domain time of the event (`data.at`), else when it was recorded; always aware."""
    raw = ev.data.get("at")
    at = ev.occurred_at
    if isinstance(raw, str):
        try:
            at = datetime.fromisoformat(raw)
        except ValueError:
            pass
    return aware(at)
