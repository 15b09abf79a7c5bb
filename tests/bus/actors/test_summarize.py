"""The actor host's reply view of a state is JSON: orjson cannot serialise a PieceSeq."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from bus.actors.host import summarize
from domain.fetches.events import (
    FetchBytesAppended,
    FetchRequested,
    FetchSegmentBytesAppended,
    FetchSegmented,
)
from domain.fetches.state import evolve
from domain.kernel import Event
from domain.values import Piece

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "a" * 64


def test_a_fetch_with_pieces_summarizes_to_json_without_them() -> None:
    plain: list[Event] = [
        FetchRequested(fetch_id="f1", owner="alice", url="http://x/a", at=T0),
        FetchBytesAppended(offset=0, pieces=(Piece(SHA, 3),), size=3, at=T0),
    ]
    split: list[Event] = [
        *plain[:1],
        FetchSegmented(plan="p", bounds=((0, 4), (4, 8)), at=T0),
        FetchSegmentBytesAppended(segment=1, offset=4, pieces=(Piece(SHA, 2),), size=2, at=T0),
    ]
    for events, held in ((plain, 3), (split, 2)):
        state = None
        for e in events:
            state = evolve(state, e)
        assert state is not None and len(state.pieces) == 1
        out = orjson.loads(orjson.dumps(summarize(state)))
        assert out["bytes"] == held and out["id"] == "f1"
        assert "pieces" not in out and "prefix" not in out and "segments" not in out
