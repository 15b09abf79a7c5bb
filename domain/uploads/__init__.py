"""The upload aggregate: a file arriving in numbered chunks (native API) or as bytes appended
at an offset (tus), possibly out of order, until it completes into a file.

commands.py, events.py, state.py (with `evolve`) and decide.py hold its parts; `AGGREGATE`
ties them together for domain.registry.
"""

from __future__ import annotations

from domain.kernel import AggregateSpec
from domain.uploads.commands import COMMANDS, UploadCommand
from domain.uploads.decide import MAX_FILE_NAME, decide
from domain.uploads.events import EVENTS
from domain.uploads.state import (
    ACTIVE,
    LIVE,
    MODES,
    Chunk,
    UploadState,
    UploadStatus,
    evolve,
    expected_chunk_size,
    fold,
    total_chunks_for,
)
from domain.values import SHA256_RE

AGGREGATE: AggregateSpec[UploadState] = AggregateSpec(
    name=UploadCommand.aggregate,
    stream_prefix=UploadCommand.stream_prefix,
    commands=COMMANDS,
    events=EVENTS,
    state=UploadState,
    decide_typed=decide,
    evolve=evolve,
    evolve_many=fold,
)

__all__ = [
    "ACTIVE",
    "AGGREGATE",
    "LIVE",
    "MAX_FILE_NAME",
    "MODES",
    "SHA256_RE",
    "Chunk",
    "UploadState",
    "UploadStatus",
    "decide",
    "evolve",
    "expected_chunk_size",
    "total_chunks_for",
]
