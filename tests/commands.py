"""Commands run the way an actor runs them, without the bus (the bus is not under test):
fold the stream, decide, append at the version it was read at."""

from __future__ import annotations

from domain.commands import Command
from domain.events import EventMeta, RecordedEvent
from domain.ports import EventStore
from domain.registry import AGGREGATES


async def decide_and_append(store: EventStore, cmd: Command) -> list[RecordedEvent]:
    """`cmd` decided against its stream's full fold in `store` and its events appended,
    at the command's time and by its caller; returns what was appended."""
    agg = AGGREGATES[cmd.aggregate]
    history = await store.read_stream(cmd.stream_id)
    new = agg.decide(agg.fold(history), cmd)
    return await store.append(
        cmd.stream_id,
        history[-1].version if history else 0,
        new,
        EventMeta(occurred_at=cmd.at, owner=cmd.caller),
    )
