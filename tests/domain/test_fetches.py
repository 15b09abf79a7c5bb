"""The fetch aggregate: transitions, the runner rule, offsets, restarts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import fetches as f
from domain.commands import (
    AppendFetchBytes,
    CancelFetch,
    Command,
    CompleteFetch,
    FailFetch,
    PauseFetch,
    RecordFetchResponse,
    RequestFetch,
    ResumeFetch,
    RetryFetch,
    StartFetch,
)
from domain.errors import Conflict, NotFound
from domain.kernel import JSON
from domain.registry import AGGREGATES

AT = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "a" * 64


def run(state: f.FetchState | None, cmd: Command) -> f.FetchState | None:
    for ev in f.decide(state, cmd):
        state = f.evolve(state, ev)
    return state


def kw(caller: str = "u") -> JSON:
    return {"aggregate_id": "id1", "caller": caller, "at": AT}


def requested() -> f.FetchState:
    st = run(None, RequestFetch(**kw(), owner="u", url="http://x/a"))
    assert st is not None and st.status == f.FetchStatus.PENDING
    return st


def test_request_twice_is_one_fetch() -> None:
    st = requested()
    assert f.decide(st, RequestFetch(**kw(), owner="u", url="http://x/a")) == []


def test_only_the_current_runner_records() -> None:
    st = run(requested(), StartFetch(**kw(), runner="r1"))
    assert st is not None and st.status == f.FetchStatus.IN_PROGRESS and st.attempts == 1
    st = run(
        st, AppendFetchBytes(**kw(), runner="r1", offset=0, pieces=[{"sha256": SHA, "size": 5}])
    )
    assert st is not None and st.bytes == 5
    # taken over: the old runner is refused, the new one continues at the offset
    st = run(st, StartFetch(**kw(), runner="r2"))
    with pytest.raises(Conflict):
        f.decide(
            st, AppendFetchBytes(**kw(), runner="r1", offset=5, pieces=[{"sha256": SHA, "size": 1}])
        )
    with pytest.raises(Conflict):  # wrong offset
        f.decide(
            st, AppendFetchBytes(**kw(), runner="r2", offset=0, pieces=[{"sha256": SHA, "size": 1}])
        )
    st = run(st, RecordFetchResponse(**kw(), runner="r2", restart=True, etag='"v2"'))
    assert st is not None and st.bytes == 0 and st.pieces == () and st.etag == '"v2"'
    with pytest.raises(Conflict):
        f.decide(st, CompleteFetch(**kw(), runner="r2", sha256=SHA, size=5, file_id="f"))
    st = run(st, CompleteFetch(**kw(), runner="r2", sha256=SHA, size=0, file_id="f"))
    assert st is not None and st.status == f.FetchStatus.COMPLETED


def test_controls_and_conflicts() -> None:
    st = run(run(requested(), StartFetch(**kw(), runner="r")), PauseFetch(**kw()))
    assert st is not None and st.status == f.FetchStatus.PAUSED and st.runner is None
    assert f.decide(st, PauseFetch(**kw())) == []
    with pytest.raises(Conflict):
        f.decide(st, RetryFetch(**kw()))
    st = run(st, ResumeFetch(**kw()))
    assert st is not None and st.status == f.FetchStatus.PENDING
    st = run(run(st, StartFetch(**kw(), runner="r")), FailFetch(**kw(), runner="r", error="x"))
    assert st is not None and st.status == f.FetchStatus.FAILED
    with pytest.raises(Conflict):
        f.decide(st, PauseFetch(**kw()))
    st = run(st, RetryFetch(**kw()))
    assert st is not None and st.status == f.FetchStatus.PENDING and st.attempts == 0
    st = run(st, CancelFetch(**kw()))
    assert st is not None and st.status == f.FetchStatus.CANCELLED
    with pytest.raises(Conflict):
        f.decide(st, ResumeFetch(**kw()))
    with pytest.raises(NotFound):
        f.decide(st, PauseFetch(**kw("someone-else")))


def test_registered() -> None:
    assert AGGREGATES["fetches"] is f.AGGREGATE
    # through the store's JSON form and back: decode(encode(e)) folds to the same state
    events = [
        *f.AGGREGATE.decide(None, RequestFetch(**kw(), owner="u", url="http://x/a")),
        *f.AGGREGATE.decide(requested(), StartFetch(**kw(), runner="r")),
    ]
    st = f.AGGREGATE.fold(events)
    assert st is not None and st.status == f.FetchStatus.IN_PROGRESS and st.runner == "r"
