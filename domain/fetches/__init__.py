"""The fetch aggregate: a file Cairn downloads from a URL, resumable across pauses and crashes.

State moves PENDING -> IN_PROGRESS -> COMPLETED, or to PAUSED / FAILED / CANCELLED. The
bytes never come here: a fetch worker streams the origin's body into content-addressed
blobs and records them as pieces at an offset, so the stream's pieces are exactly the
durable prefix of the body. Only the worker run that started last (`runner`) may record
anything; a run that was taken over is refused and stops. A changed origin (`restart`)
drops every piece: bytes of two versions of a resource are never joined.

commands.py, events.py, state.py (with `evolve`) and decide.py hold its parts; `AGGREGATE`
ties them together for domain.registry.
"""

from __future__ import annotations

from domain.fetches.commands import COMMANDS, FetchCommand
from domain.fetches.decide import MAX_URL, decide
from domain.fetches.events import EVENTS
from domain.fetches.state import ACTIVE, RUNNABLE, FetchState, FetchStatus, evolve, fold
from domain.kernel import AggregateSpec

AGGREGATE: AggregateSpec[FetchState] = AggregateSpec(
    name=FetchCommand.aggregate,
    stream_prefix=FetchCommand.stream_prefix,
    commands=COMMANDS,
    events=EVENTS,
    state=FetchState,
    decide_typed=decide,
    evolve=evolve,
    evolve_many=fold,
)

__all__ = [
    "ACTIVE",
    "AGGREGATE",
    "MAX_URL",
    "RUNNABLE",
    "FetchState",
    "FetchStatus",
    "decide",
    "evolve",
]
