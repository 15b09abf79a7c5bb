"""Events as the store would give them back, for tests that fold streams without one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from domain.events import NewEvent, RecordedEvent
from domain.kernel import Event


def recorded(
    events: Sequence[Event | NewEvent], stream_id: str, at: datetime
) -> list[RecordedEvent]:
    """`events` (typed, or as decided: NewEvent) as one stream's records, versions and
    positions from 1, all at `at`."""
    out = []
    for i, e in enumerate(events):
        n = e if isinstance(e, NewEvent) else NewEvent.of(e)
        out.append(
            RecordedEvent(
                id=f"e{i}",
                stream_id=stream_id,
                version=i + 1,
                position=i + 1,
                type=n.type,
                schema_version=n.schema_version,
                data=n.data,
                occurred_at=at,
            )
        )
    return out
