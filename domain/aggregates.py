"""The registry of aggregate types: how to decide and evolve each, by name.

Adapters (the actor host, the API's loaders) stay generic over aggregates through this."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from domain import fetches, files, uploads
from domain.commands import Command
from domain.events import JSON, NewEvent, RecordedEvent


@dataclass(frozen=True)
class Aggregate:
    name: str
    decide: Callable[[Any, Command], list[NewEvent]]
    evolve: Callable[[Any, str, JSON], Any]

    def fold(self, events: Iterable[RecordedEvent], state: Any = None) -> Any:
        for ev in events:
            state = self.evolve(state, ev.type, ev.data)
        return state


AGGREGATES: dict[str, Aggregate] = {
    "uploads": Aggregate("uploads", uploads.decide, uploads.evolve),
    "files": Aggregate("files", files.decide, files.evolve),
    "fetches": Aggregate("fetches", fetches.decide, fetches.evolve),
}
