"""The one registry of aggregate types. Everything generic over aggregates derives from it:
stream ids and prefixes, topics (bus/kafka/clients.py), command routing and the actor
host's lookup, command (de)serialisation (domain/commands.py), upcasting and typed decoding
of stored events, and the published event schemas (bus/kafka/spec.py).

Adding an aggregate = one package under domain/ (commands, events, state, decide, and an
`AGGREGATE` spec in its __init__) + one line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain import buckets, fetches, files, tasks, uploads
from domain.errors import NewerSchema
from domain.kernel import JSON, AggregateSpec, Command, Event, StoredEvent

AGGREGATES: Mapping[str, AggregateSpec[Any]] = {
    spec.name: spec
    for spec in (
        uploads.AGGREGATE,
        files.AGGREGATE,
        fetches.AGGREGATE,
        buckets.AGGREGATE,
        tasks.AGGREGATE,
    )
}

STREAM_PREFIXES: Mapping[str, str] = {a.stream_prefix: a.name for a in AGGREGATES.values()}
"""Stream prefix -> aggregate name (`upload` -> `uploads`)."""

COMMAND_AGGREGATES: tuple[str, ...] = tuple(a.name for a in AGGREGATES.values() if a.commands)
"""The aggregates that take commands (and so have a command topic)."""

COMMANDS: Mapping[str, type[Command]] = {c.type: c for a in AGGREGATES.values() for c in a.commands}
"""Command type name -> class."""

EVENTS: Mapping[str, tuple[str, type[Event]]] = {
    e.type: (a.name, e) for a in AGGREGATES.values() for e in a.events
}
"""Event type name -> (aggregate name, class at the current schema version)."""


def aggregate_of(stream_id: str) -> str:
    """`upload-<uuid>` -> `uploads` (the topic suffix and aggregate name)."""
    prefix = stream_id.split("-", 1)[0]
    return STREAM_PREFIXES.get(prefix, prefix)


def stream_id_for(aggregate: str, aggregate_id: str) -> str:
    spec = AGGREGATES.get(aggregate)
    if spec is None:
        raise ValueError(f"unknown aggregate {aggregate!r}")
    return spec.stream_id(aggregate_id)


def newer_schema(event_type: str, schema_version: int) -> NewerSchema | None:
    """The refusal to read an event of a known type stored at a schema version newer than
    this code's class (see domain.errors.NewerSchema); None when it can be read (a known
    version, or a type this code does not know at all, which readers skip)."""
    found = EVENTS.get(event_type)
    return None if found is None else found[1].newer(schema_version)


def require_known(ev: StoredEvent) -> None:
    """Raise NewerSchema if `ev` cannot be read by this code: for readers that look at an
    event's `data` without decoding it (a projection reading fields by name)."""
    if (newer := newer_schema(ev.type, ev.schema_version)) is not None:
        raise newer


def upcast(event_type: str, schema_version: int, data: JSON) -> tuple[int, JSON]:
    """Bring stored `data` to the current schema version; unknown types pass unchanged.
    Raises NewerSchema for a known type stored at a newer version than this code's."""
    found = EVENTS.get(event_type)
    if found is None:
        return schema_version, data
    return found[1].upcast(schema_version, data)


def decode(ev: StoredEvent) -> Event | None:
    """The typed event of a stored (upcast) one; None for a type this code does not know;
    NewerSchema raised for a known type at a newer schema version."""
    found = EVENTS.get(ev.type)
    return None if found is None else AGGREGATES[found[0]].decode(ev)
