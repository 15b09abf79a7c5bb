"""The building blocks every aggregate is made of: commands, typed events, upcasters, and
the spec that ties one aggregate's pieces together for the registry.

An event type is one frozen dataclass (its fields are its JSON `data`, its `type` and
`schema_version` are class constants). Older schema versions are not classes: a stored
event of an old version is turned into the current one by the class's `upcasters` before
it is decoded, so `evolve` only ever sees the current shape. Decoding goes through msgspec
(lenient about ints sent as strings, strict about shapes); encoding is written here so the
JSON stays exactly what it has always been (datetimes as `isoformat()`, all fields present).

What every aggregate's `decide` would otherwise write again is here too: `by_command` (one
small function per command type, picked from a table), `owned` (the caller's aggregate or
the same 404 as a missing one) and `Stamped` (an event that carries only its time).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import msgspec

from domain.errors import InvalidInput, NewerSchema, NotFound

JSON = dict[str, Any]
Upcaster = Callable[[JSON], JSON]
"""A pure function from the `data` of one schema version to the next version's."""


def to_json(value: Any) -> Any:
    """The JSON form of an event field: dataclasses as objects, tuples as lists,
    datetimes as `isoformat()` (the format stored since the first event)."""
    if value is None or isinstance(value, (str, int, float)):  # the common case first
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_json(getattr(value, name)) for name in _field_names(type(value))}
    return value


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True, kw_only=True)
class Event:
    """One event type at its current schema version. Subclasses are frozen dataclasses."""

    type: ClassVar[str] = "Event"
    schema_version: ClassVar[int] = 1
    # from schema version -> the function that makes the next version's data
    upcasters: ClassVar[Mapping[int, Upcaster]] = {}

    @property
    def data(self) -> JSON:
        """The event's JSON `data`, as stored and published."""
        out: JSON = to_json(self)
        return out

    @classmethod
    def decode(cls, data: JSON) -> Self:
        """Read current-version `data` (see `upcast` for older versions)."""
        return msgspec.convert(data, cls, strict=False)

    @classmethod
    def newer(cls, schema_version: int) -> NewerSchema | None:
        """The refusal to read `schema_version` if it is newer than this class (written by a
        newer deployment); None if this code knows it."""
        if schema_version > cls.schema_version:
            return NewerSchema(cls.type, schema_version, cls.schema_version)
        return None

    @classmethod
    def upcast(cls, schema_version: int, data: JSON) -> tuple[int, JSON]:
        """Walk the chain from a stored version to the current one. Never mutates `data`.
        Raises NewerSchema for a version newer than this class: its fields may mean
        something else, and reading them as the current version's would decide on a
        misread event."""
        if (newer := cls.newer(schema_version)) is not None:
            raise newer
        while schema_version < cls.schema_version:
            step = cls.upcasters.get(schema_version)
            if step is None:
                raise LookupError(f"no upcaster for {cls.type} v{schema_version}")
            data = step(data)
            schema_version += 1
        return schema_version, data


@dataclass(frozen=True, kw_only=True)
class Stamped(Event):
    """An event whose only data is when it happened: a control that changes a status and
    nothing else (paused, resumed, cancelled, retried, deleted). Its JSON is `{"at": ...}`."""

    at: datetime


@dataclass(frozen=True)
class NewEvent:
    """An event decided but not yet stored: what the event store appends.

    `owner`: the owner an event names in its own data (a creation: `BucketCreated`,
    `FileCreated`, ...). The store records it as this event's owner, and the owner of the
    events after it in the same append, instead of the append's `EventMeta.owner` (the
    aggregate's owner before the append): a deleted bucket's name, or an object key in it,
    taken again by someone else continues the old stream, and the new owner's events must
    not be recorded, published and streamed as the previous owner's."""

    type: str
    data: JSON
    schema_version: int = 1
    owner: str | None = None

    @staticmethod
    def of(event: Event) -> NewEvent:
        owner = getattr(event, "owner", None)
        return NewEvent(
            event.type, event.data, event.schema_version, owner if isinstance(owner, str) else None
        )


def owners(events: Iterable[NewEvent], owner: str | None) -> list[str | None]:
    """The owner recorded with each of `events` appended together: `owner` (the append's)
    until an event names its own, that one from there on (see NewEvent)."""
    out: list[str | None] = []
    for ev in events:
        owner = ev.owner or owner
        out.append(owner)
    return out


class StoredEvent(Protocol):
    """What folding needs of a recorded event (see domain.events.RecordedEvent)."""

    @property
    def type(self) -> str: ...

    @property
    def schema_version(self) -> int: ...

    @property
    def data(self) -> JSON: ...


@dataclass(frozen=True, kw_only=True)
class Command:
    """A request to change one aggregate. Carries everything `decide` needs, including the
    time (`at`): the domain never reads a clock. `caller` is the authenticated user."""

    type: ClassVar[str] = "Command"
    aggregate: ClassVar[str] = ""
    stream_prefix: ClassVar[str] = ""

    aggregate_id: str
    caller: str
    at: datetime
    admin: bool = False
    command_id: str = ""

    @property
    def stream_id(self) -> str:
        return f"{self.stream_prefix}-{self.aggregate_id}"

    def payload(self) -> JSON:
        """The command-specific fields (everything but the envelope)."""
        base = {f.name for f in dataclasses.fields(Command)}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in base
        }


S = TypeVar("S")


class _Owned(Protocol):
    @property
    def owner(self) -> str: ...


Own = TypeVar("Own", bound=_Owned)


def owned(state: Own | None, cmd: Command) -> Own:
    """The aggregate's state if the command's caller owns it or is an admin. A missing
    aggregate and someone else's are refused alike, `<prefix>_not_found` (never reveal
    that another user's id exists)."""
    if state is None or (state.owner != cmd.caller and not cmd.admin):
        p = cmd.stream_prefix
        raise NotFound(f"{p}_not_found", f"no such {p}", {"id": cmd.aggregate_id})
    return state


Step = Callable[[S | None, Any], list[Event]]
"""One command's `decide`: the state (None before the first event) and the command."""


def by_command(
    aggregate: str, steps: Mapping[type[Command], Step[S]]
) -> Callable[[S | None, Command], list[Event]]:
    """An aggregate's `decide` from one small function per command type: the step of the
    command's exact type, or `unknown_command` for a type the aggregate does not take."""

    def decide(state: S | None, cmd: Command) -> list[Event]:
        """Pure: what happens if `cmd` is applied to `state`. Raises a DomainError to
        refuse; an empty list means the command was already applied (a replay)."""
        step = steps.get(type(cmd))
        if step is None:
            raise InvalidInput("unknown_command", f"{aggregate} cannot handle {cmd.type}")
        return step(state, cmd)

    return decide


@dataclass(frozen=True)
class AggregateSpec(Generic[S]):
    """Everything the adapters need to know about one aggregate type.

    `decide(state, cmd)` returns the typed events a command produces (raising a DomainError
    to refuse; an empty list means already applied); `evolve(state, event)` is pure and
    total. An aggregate with no commands is topic-only: its topic exists (it is part of
    the published contract) but nothing writes it yet."""

    name: str  # aggregate name = topic suffix (cairn.<name>, cairn.commands.<name>)
    stream_prefix: str  # streams are `<prefix>-<aggregate id>`
    commands: tuple[type[Command], ...] = ()
    events: tuple[type[Event], ...] = ()
    state: type[S] | None = None
    decide_typed: Callable[[S | None, Command], list[Event]] | None = None
    evolve: Callable[[S | None, Event], S | None] | None = None
    # `evolve` over many events at once, for an aggregate whose `evolve` copies a
    # collection that grows with each event (an upload's chunks): linear, not quadratic.
    evolve_many: Callable[[S | None, Iterable[Event]], S | None] | None = None
    event_types: Mapping[str, type[Event]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_types", {e.type: e for e in self.events})
        for c in self.commands:
            if c.aggregate != self.name or c.stream_prefix != self.stream_prefix:
                raise ValueError(f"{c.__name__} does not belong to aggregate {self.name}")

    @property
    def takes_commands(self) -> bool:
        return bool(self.commands)

    def stream_id(self, aggregate_id: str) -> str:
        return f"{self.stream_prefix}-{aggregate_id}"

    def decode(self, ev: StoredEvent) -> Event | None:
        """The typed event of a stored one (upcast first), or None for a type this code
        does not know (written by a newer version: readers skip it). Raises NewerSchema for
        a known type at a schema version newer than this code's (see Event.upcast)."""
        cls = self.event_types.get(ev.type)
        if cls is None:
            return None
        try:
            _, data = cls.upcast(ev.schema_version, ev.data)
        except NewerSchema as e:
            stream_id, owner = getattr(ev, "stream_id", None), getattr(ev, "owner", None)
            e.stream_id = stream_id if isinstance(stream_id, str) else None
            e.owner = owner if isinstance(owner, str) else None
            raise
        return cls.decode(data)

    def decide(self, state: S | None, cmd: Command) -> list[NewEvent]:
        """`decide_typed`, encoded for the event store."""
        if self.decide_typed is None:
            raise LookupError(f"aggregate {self.name} takes no commands")
        return [NewEvent.of(e) for e in self.decide_typed(state, cmd)]

    def fold(self, events: Iterable[StoredEvent], state: S | None = None) -> S | None:
        if self.evolve is None:
            return state
        if self.evolve_many is not None:
            decoded = (self.decode(ev) for ev in events)
            return self.evolve_many(state, (e for e in decoded if e is not None))
        for ev in events:
            typed = self.decode(ev)
            if typed is not None:
                state = self.evolve(state, typed)
        return state
