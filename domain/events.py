"""Events as stored and published, and the upcaster chain that reads old schema versions.

An event is immutable once appended. When an event's shape changes we bump its schema
version and register an upcaster from the old version; readers only ever see the current
version, so `evolve` never has to know history existed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class NewEvent:
    """An event decided but not yet stored: the output of `decide`."""

    type: str
    data: JSON
    schema_version: int = 1


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


STREAM_PREFIXES = {
    "upload": "uploads",
    "file": "files",
    "fetch": "fetches",
    "task": "tasks",
    "bucket": "buckets",
}


def aggregate_of(stream_id: str) -> str:
    """`upload-<uuid>` -> `uploads` (the topic suffix and aggregate name)."""
    prefix = stream_id.split("-", 1)[0]
    return STREAM_PREFIXES.get(prefix, prefix)


def stream_id_for(aggregate: str, aggregate_id: str) -> str:
    for prefix, name in STREAM_PREFIXES.items():
        if name == aggregate:
            return f"{prefix}-{aggregate_id}"
    raise ValueError(f"unknown aggregate {aggregate!r}")


Upcaster = Callable[[JSON], JSON]

# (event type, from schema version) -> function producing the data of version + 1
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}
CURRENT_VERSIONS: dict[str, int] = {}


def register_event(event_type: str, current_version: int) -> None:
    CURRENT_VERSIONS[event_type] = current_version


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a pure function that turns version `from_version` data into the next."""

    def deco(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return deco


def upcast(event_type: str, schema_version: int, data: JSON) -> tuple[int, JSON]:
    """Walk the chain from the stored version to the current one."""
    target = CURRENT_VERSIONS.get(event_type, schema_version)
    while schema_version < target:
        fn = _UPCASTERS.get((event_type, schema_version))
        if fn is None:
            raise LookupError(f"no upcaster for {event_type} v{schema_version}")
        data = fn(data)
        schema_version += 1
    return schema_version, data


def upcast_recorded(ev: RecordedEvent) -> RecordedEvent:
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
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
