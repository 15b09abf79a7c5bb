"""Folding an upload's stream costs work linear in its events.

An upload may have 40,000 chunks (or tus pieces), each an event. The API folds such a
stream from the start whenever its state is not in its cache (bus/store/state_cache.py),
and the actor host does when it meets the stream cold. Each chunk event used to copy the whole chunk map (each
append the whole piece tuple), so a fold did n^2/2 copies: 10 s of CPU for 40,000 chunks,
blocking the API's event loop on every GET of that upload.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import RecordedEvent
from domain.kernel import Event
from domain.registry import AGGREGATES
from domain.uploads import state as upload_state
from domain.uploads.events import (
    UploadAborted,
    UploadBytesAppended,
    UploadChunkStored,
    UploadCompleted,
    UploadInitiated,
    UploadLengthDeclared,
)
from domain.uploads.state import evolve
from domain.values import Piece
from tests.domain.folding import assert_fold_is_evolving, counting_states, shares_full_blocks
from tests.domain.recorded import recorded as stream_records

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SHA = "0" * 64
FOLD = AGGREGATES["uploads"].fold


def recorded(events: list[Event]) -> list[RecordedEvent]:
    return stream_records(events, "upload-u1", T0)


def chunked(n: int) -> list[RecordedEvent]:
    events: list[Event] = [
        UploadInitiated(
            upload_id="u1",
            owner="alice",
            file_name="f",
            file_size=n,
            chunk_size=1,
            total_chunks=n,
            at=T0,
        )
    ]
    events += [
        UploadChunkStored(index=i, offset=i, size=1, sha256=SHA, at=T0 + timedelta(seconds=i))
        for i in range(n)
    ]
    return recorded(events)


def appended(n: int) -> list[RecordedEvent]:
    events: list[Event] = [
        UploadInitiated(
            upload_id="u1",
            owner="alice",
            file_name="f",
            file_size=None,
            chunk_size=1,
            total_chunks=0,
            mode="stream",
            at=T0,
        )
    ]
    events += [
        UploadBytesAppended(offset=i, size=1, pieces=(Piece(SHA, 1),), at=T0) for i in range(n)
    ]
    return recorded(events)


def test_folding_40000_chunks_derives_one_state_not_one_per_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The quadratic fold derived a state per chunk event, each copying the whole map.
    events = chunked(40_000)
    made = counting_states(monkeypatch, upload_state)
    state = FOLD(events)
    assert state is not None and len(state.chunks) == 40_000
    assert state.bytes_received == 40_000 and state.all_received
    assert len(made) == 1


def test_folding_40000_tus_pieces_derives_one_state_not_one_per_append(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = appended(40_000)
    made = counting_states(monkeypatch, upload_state)
    state = FOLD(events)
    assert state is not None and len(state.pieces) == 40_000 and state.offset == 40_000
    assert len(made) == 1


_tail = st.one_of(
    st.builds(
        lambda i, size: UploadChunkStored(index=i, offset=i * 4, size=size, sha256=SHA, at=T0),
        st.integers(0, 5),
        st.integers(1, 4),
    ),
    st.builds(
        lambda size: UploadBytesAppended(offset=0, size=size, pieces=(Piece(SHA, size),), at=T0),
        st.integers(1, 4),
    ),
    st.just(UploadLengthDeclared(file_size=24, at=T0)),
    st.just(UploadAborted(at=T0)),
    st.just(UploadCompleted(file_id="f1", sha256=SHA, size=24, manifest=(), at=T0)),
)


@settings(max_examples=200, deadline=None)
@given(
    mode=st.sampled_from(["chunks", "stream"]),
    tail=st.lists(_tail, max_size=12),
    cut=st.integers(0, 13),
)
def test_folding_in_one_pass_equals_evolving_event_by_event(
    mode: str, tail: list[Event], cut: int
) -> None:
    head = UploadInitiated(
        upload_id="u1",
        owner="alice",
        file_name="f",
        file_size=24,
        chunk_size=4,
        total_chunks=6 if mode == "chunks" else 0,
        mode=mode,
        at=T0,
    )
    events: list[Event] = [head, *tail]
    assert_fold_is_evolving(FOLD, evolve, events, recorded(events), cut)


def test_one_more_chunk_at_40000_copies_one_block_of_the_map() -> None:
    # The actor host folds each chunk's event into the state it holds: that step copied
    # the whole chunk map, 25 us at 1,000 chunks and 550 us at 40,000 (11 s of the actor
    # host's CPU over one upload of 40,000 chunks). Now every block but the one the chunk
    # lands in is the previous map's own.
    events = chunked(40_000)
    state = FOLD(events[:40_000])
    assert state is not None and len(state.chunks) == 39_999
    after = FOLD(events[40_000:], state)
    assert after is not None and len(after.chunks) == 40_000
    assert len(state.chunks) == 39_999  # the state it began from is left as it was
    old, new = state.chunks._blocks, after.chunks._blocks
    assert len(new) == 157  # 40,000 chunks in blocks of 256
    assert [k for k in new if old.get(k) is not new[k]] == [39_999 // 256]


def test_one_more_tus_append_at_40000_pieces_copies_only_the_last_block() -> None:
    # The same for a tus upload's pieces: each append copied the whole tuple (18 us at
    # 1,000 pieces, 440 us at 40,000).
    events = appended(40_000)
    state = FOLD(events[:40_000])
    assert state is not None and len(state.pieces) == 39_999
    after = FOLD(events[40_000:], state)
    assert after is not None and len(after.pieces) == 40_000
    assert list(after.pieces)[:39_999] == list(state.pieces) and len(state.pieces) == 39_999
    assert len(after.pieces._blocks) == 157
    assert shares_full_blocks(state.pieces, after.pieces)
