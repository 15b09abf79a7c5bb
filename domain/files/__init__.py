"""The file aggregate: an ordered manifest of content-addressed chunks plus its metadata.

A file never owns bytes directly; it references chunks by sha256, so the same bytes are
stored once and a file can be copied or concatenated without moving data. commands.py,
events.py, state.py (with `evolve`) and decide.py hold its parts; `AGGREGATE` ties them
together for domain.registry.
"""

from __future__ import annotations

from domain.files.commands import COMMANDS, FileCommand
from domain.files.decide import decide
from domain.files.events import EVENTS
from domain.files.state import FileState, evolve
from domain.kernel import AggregateSpec

AGGREGATE: AggregateSpec[FileState] = AggregateSpec(
    name=FileCommand.aggregate,
    stream_prefix=FileCommand.stream_prefix,
    commands=COMMANDS,
    events=EVENTS,
    state=FileState,
    decide_typed=decide,
    evolve=evolve,
)

__all__ = ["AGGREGATE", "FileState", "decide", "evolve"]
