"""Chunks a fetch recorded are referenced (the collector keeps them) until it is cancelled."""

from __future__ import annotations

from datetime import UTC, datetime

from bus.blobs.references import effects
from domain.events import RecordedEvent
from domain.fetches.events import FetchBytesAppended, FetchCancelled, FetchFailed

AT = datetime(2026, 1, 1, tzinfo=UTC)


def ev(version: int, type_: str, data: dict) -> RecordedEvent:
    return RecordedEvent(
        id=str(version), stream_id="fetch-x", version=version, position=version,
        type=type_, schema_version=1, data={**data, "at": AT.isoformat()}, occurred_at=AT,
    )  # fmt: skip


def test_fetch_pieces_are_referenced_and_released_by_cancel_only() -> None:
    piece = {"sha256": "b" * 64, "size": 7}
    adds, releases = effects(
        [
            ev(1, FetchBytesAppended.type, {"offset": 0, "pieces": [piece], "size": 7}),
            ev(2, FetchFailed.type, {"error": "x"}),
        ]
    )
    assert adds == {("b" * 64, "fetch-x"): (7, None)} and releases == {}
    _, releases = effects([ev(3, FetchCancelled.type, {})])
    assert releases == {"fetch-x": AT}
