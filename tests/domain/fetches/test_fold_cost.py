"""Folding a URL fetch's stream costs work linear in its events.

A fetch may hold 40,000 pieces (one file's manifest limit), each append an event. The actor
host folds each into the state it keeps, and the API folds the stream from the start when
the state is not in its cache. Each append used to copy the whole piece tuple, and each
segment's append joined every segment's pieces again, so a fold did n^2/2 copies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import RecordedEvent
from domain.fetches import state as fetch_state
from domain.fetches.events import (
    FetchAttemptFailed,
    FetchBytesAppended,
    FetchCompleted,
    FetchPaused,
    FetchRequested,
    FetchResponseReceived,
    FetchResumed,
    FetchSegmentBytesAppended,
    FetchSegmented,
    FetchStarted,
)
from domain.fetches.state import evolve
from domain.kernel import Event
from domain.registry import AGGREGATES
from domain.values import Piece
from tests.domain.folding import assert_fold_is_evolving, counting_states, shares_full_blocks
from tests.domain.recorded import recorded as stream_records

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SHA = "0" * 64
FOLD = AGGREGATES["fetches"].fold
N = 40_000
SEGMENTS = 4


def sha(i: int) -> str:
    return f"{i:064x}"


def recorded(events: list[Event]) -> list[RecordedEvent]:
    return stream_records(events, "fetch-f1", T0)


def head(total: int) -> list[Event]:
    return [
        FetchRequested(fetch_id="f1", owner="alice", url="http://x/a", at=T0),
        FetchStarted(runner="r", attempt=1, at=T0),
        FetchResponseReceived(restart=False, total=total, accept_ranges=True, at=T0),
    ]


def plain(n: int) -> list[RecordedEvent]:
    events = head(n)
    events += [
        FetchBytesAppended(
            offset=i, pieces=(Piece(sha(i), 1),), size=1, at=T0 + timedelta(seconds=i)
        )
        for i in range(n)
    ]
    return recorded(events)


def segmented(n: int) -> list[RecordedEvent]:
    """`n` one-byte pieces over SEGMENTS segments, appended round-robin (as parallel
    segments arrive); piece i of the body is at offset i."""
    per = n // SEGMENTS
    bounds = tuple((s * per, (s + 1) * per) for s in range(SEGMENTS))
    events = head(n)
    events.append(FetchSegmented(plan="p", bounds=bounds, at=T0))
    for k in range(per):
        for s in range(SEGMENTS):
            i = s * per + k
            events.append(
                FetchSegmentBytesAppended(
                    segment=s, offset=i, pieces=(Piece(sha(i), 1),), size=1, at=T0
                )
            )
    return recorded(events)


def test_folding_40000_appends_derives_a_few_states_not_one_per_append(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = plain(N)
    made = counting_states(monkeypatch, fetch_state)
    state = FOLD(events)
    assert state is not None and state.bytes == N and len(state.pieces) == N
    assert state.pieces[N - 1] == (sha(N - 1), 1)
    # FetchStarted and FetchResponseReceived derive two each; the 40,000 appends one.
    assert len(made) == 5


def test_folding_40000_segment_appends_derives_a_few_states_not_one_per_append(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = segmented(N)
    made = counting_states(monkeypatch, fetch_state)
    state = FOLD(events)
    assert state is not None and state.bytes == N and all(s.done for s in state.segments)
    # The body in segment order, whatever order the segments' pieces came in.
    assert list(state.pieces) == [(sha(i), 1) for i in range(N)]
    assert state.manifest()[N // 2] == {"sha256": sha(N // 2), "size": 1}
    # Started, response, segmented: two each; the 40,000 appends one state and one per
    # segment.
    assert len(made) == 6 + 1 + SEGMENTS


def test_one_more_append_at_40000_pieces_copies_only_the_last_block() -> None:
    # The actor host folds each append into the state it holds: that step copied the
    # whole tuple of pieces.
    events = plain(N)
    state = FOLD(events[:-1])
    assert state is not None and len(state.pieces) == N - 1
    after = FOLD(events[-1:], state)
    assert after is not None and len(after.pieces) == N and after.bytes == N
    assert len(state.pieces) == N - 1 and state.bytes == N - 1  # left as it was
    assert list(after.pieces)[: N - 1] == list(state.pieces)
    assert len(after.prefix._blocks) == 157  # 40,000 pieces in blocks of 256
    assert shares_full_blocks(state.prefix, after.prefix)


def test_one_more_segment_append_at_40000_shares_every_other_segment_and_full_block() -> None:
    # That step joined every segment's pieces into a new tuple, then copied the segment's.
    events = segmented(N + SEGMENTS)
    state = FOLD(events[:-1])
    assert state is not None and state.bytes == N + SEGMENTS - 1
    after = FOLD(events[-1:], state)
    assert after is not None and after.bytes == N + SEGMENTS
    assert not state.segments[-1].done and after.segments[-1].done  # state left as it was
    assert all(a is b for a, b in zip(state.segments[:-1], after.segments[:-1], strict=True))
    old, new = state.segments[-1].pieces, after.segments[-1].pieces
    assert len(new._blocks) == 40  # 10,001 pieces in blocks of 256
    assert shares_full_blocks(old, new)
    assert len(after.pieces) == N + SEGMENTS


def _append(size: int) -> Event:
    return FetchBytesAppended(offset=0, pieces=(Piece(sha(size), size),), size=size, at=T0)


def _segment_append(segment: int, size: int) -> Event:
    return FetchSegmentBytesAppended(
        segment=segment, offset=0, pieces=(Piece(sha(size), size),), size=size, at=T0
    )


_at = st.integers(0, 5).map(lambda s: T0 + timedelta(seconds=s))
_tail = st.one_of(
    st.builds(_append, st.integers(1, 4)),
    st.builds(_segment_append, st.integers(-1, 3), st.integers(1, 4)),  # -1, 2, 3: stale
    st.builds(
        lambda restart, at: FetchResponseReceived(restart=restart, total=24, at=at),
        st.booleans(),
        _at,
    ),
    st.builds(lambda at: FetchSegmented(plan="p", bounds=((0, 12), (12, 24)), at=at), _at),
    st.builds(lambda at: FetchAttemptFailed(error="x", retry_in=1.0, at=at), _at),
    st.builds(lambda at: FetchStarted(runner="r2", attempt=2, at=at), _at),
    st.just(FetchPaused(at=T0)),
    st.just(FetchResumed(at=T0)),
    st.just(FetchCompleted(sha256=SHA, size=24, file_id="f", at=T0)),
)


@settings(max_examples=200, deadline=None)
@given(
    split=st.booleans(),
    tail=st.lists(_tail, max_size=14),
    cut=st.integers(0, 18),
)
def test_folding_in_one_pass_equals_evolving_event_by_event(
    split: bool, tail: list[Event], cut: int
) -> None:
    events = head(24)
    if split:
        events.append(FetchSegmented(plan="p", bounds=((0, 8), (8, 24)), at=T0))
    events += tail
    folds = assert_fold_is_evolving(FOLD, evolve, events, recorded(events), cut)
    folded, by_hand = folds.whole, folds.by_hand
    assert folded is not None and by_hand is not None
    assert folded.pieces == by_hand.pieces and folded.manifest() == by_hand.manifest()
    # The body's pieces (joined from the segments where it has them) are left as they were.
    if folds.mid is not None:
        assert list(folds.mid.pieces) == list(folds.before.pieces)
