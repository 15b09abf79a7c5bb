"""The fetch aggregate: transitions, the runner rule, offsets, restarts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import fetches as f
from domain.commands import (
    AppendFetchBytes,
    AppendFetchSegmentBytes,
    CancelFetch,
    Command,
    CompleteFetch,
    FailFetch,
    PauseFetch,
    PlanFetchSegments,
    RecordFetchResponse,
    RequestFetch,
    ResumeFetch,
    RetryFetch,
    StartFetch,
)
from domain.errors import Conflict, InvalidInput, NotFound
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


def test_a_key_needs_a_bucket_and_must_be_an_object_key() -> None:
    for bucket, key, code in [
        ("default", "k", "key_needs_bucket"),
        ("bk1", "", "invalid_key"),
        ("bk1", "a\x00b", "invalid_key"),
        ("bk1", "x" * 1025, "invalid_key"),
    ]:
        with pytest.raises(InvalidInput) as e:
            f.decide(
                None, RequestFetch(**kw(), owner="u", url="http://x/a", bucket=bucket, key=key)
            )
        assert e.value.code == code
    st = run(None, RequestFetch(**kw(), owner="u", url="http://x/a", bucket="bk1", key="../k"))
    assert st is not None and (st.bucket, st.key) == ("bk1", "../k")


def test_request_twice_is_one_fetch() -> None:
    st = requested()
    assert f.decide(st, RequestFetch(**kw(), owner="u", url="http://x/a")) == []


def test_a_request_declaring_another_sha256_does_not_join_the_fetch() -> None:
    st = run(None, RequestFetch(**kw(), owner="u", url="http://x/a", sha256=SHA))
    assert st is not None
    assert f.decide(st, RequestFetch(**kw(), owner="u", url="http://x/a", sha256=SHA)) == []
    assert f.decide(st, RequestFetch(**kw(), owner="u", url="http://x/a")) == []
    for other in ("b" * 64, None):
        plain = run(None, RequestFetch(**kw(), owner="u", url="http://x/a", sha256=other))
        with pytest.raises(Conflict) as e:
            f.decide(plain, RequestFetch(**kw(), owner="u", url="http://x/a", sha256="c" * 64))
        assert e.value.code == "fetch_sha256_conflict"


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


def piece(sha: str, size: int) -> list[JSON]:
    return [{"sha256": sha, "size": size}]


def segmented(total: int = 10, plan: str = "p1") -> f.FetchState:
    st = run(requested(), StartFetch(**kw(), runner="r"))
    st = run(st, RecordFetchResponse(**kw(), runner="r", restart=False, total=total, etag='"e"'))
    st = run(st, PlanFetchSegments(**kw(), runner="r", plan=plan, bounds=[[0, 4], [4, total]]))
    assert st is not None and [(s.start, s.end) for s in st.segments] == [(0, 4), (4, total)]
    return st


def test_a_split_must_cover_the_known_length_of_an_empty_fetch() -> None:
    st = run(requested(), StartFetch(**kw(), runner="r"))
    st = run(st, RecordFetchResponse(**kw(), runner="r", restart=False, total=None))
    assert st is not None
    with pytest.raises(Conflict):  # no known length
        f.decide(st, PlanFetchSegments(**kw(), runner="r", plan="p", bounds=[[0, 1], [1, 2]]))
    st = run(st, RecordFetchResponse(**kw(), runner="r", restart=False, total=10))
    assert st is not None
    for bounds in ([[0, 10]], [[0, 4], [5, 10]], [[0, 4], [4, 9]], [[0, 0], [0, 10]], [[1, 10]]):
        with pytest.raises(InvalidInput):
            f.decide(st, PlanFetchSegments(**kw(), runner="r", plan="p", bounds=bounds))
    with pytest.raises(Conflict):  # only the current run
        f.decide(st, PlanFetchSegments(**kw(), runner="x", plan="p", bounds=[[0, 4], [4, 10]]))
    st = run(st, AppendFetchBytes(**kw(), runner="r", offset=0, pieces=piece(SHA, 1)))
    with pytest.raises(Conflict):  # bytes held already
        f.decide(st, PlanFetchSegments(**kw(), runner="r", plan="p", bounds=[[0, 4], [4, 10]]))


def test_segments_fill_independently_and_complete_in_order() -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    st = segmented()
    # segment 1 first: the body's order comes from the segments, not the arrival order
    st = run(st, AppendFetchSegmentBytes(**kw(), runner="r", plan="p1", segment=1, offset=4,
                                         pieces=piece(c, 6)))  # fmt: skip
    assert st is not None and st.bytes == 6 and st.segments[1].done
    with pytest.raises(Conflict):  # not done yet
        f.decide(st, CompleteFetch(**kw(), runner="r", sha256=SHA, size=6, file_id="f"))
    with pytest.raises(Conflict):  # segment 0 continues at 0, not 2
        f.decide(st, AppendFetchSegmentBytes(**kw(), runner="r", plan="p1", segment=0, offset=2,
                                             pieces=piece(a, 2)))  # fmt: skip
    with pytest.raises(InvalidInput):  # more than the segment holds
        f.decide(st, AppendFetchSegmentBytes(**kw(), runner="r", plan="p1", segment=0, offset=0,
                                             pieces=piece(a, 5)))  # fmt: skip
    with pytest.raises(Conflict):  # a segmented fetch takes no plain appends
        f.decide(st, AppendFetchBytes(**kw(), runner="r", offset=6, pieces=piece(a, 1)))
    for offset, sha in ((0, a), (2, b)):
        st = run(st, AppendFetchSegmentBytes(**kw(), runner="r", plan="p1", segment=0,
                                             offset=offset, pieces=piece(sha, 2)))  # fmt: skip
    assert st is not None and st.bytes == 10
    assert st.pieces == ((a, 2), (b, 2), (c, 6))  # segment order
    st = run(st, CompleteFetch(**kw(), runner="r", sha256=SHA, size=10, file_id="f"))
    assert st is not None and st.status == f.FetchStatus.COMPLETED


def test_a_restart_drops_the_split_and_refuses_its_late_pieces() -> None:
    st = segmented()
    st = run(st, AppendFetchSegmentBytes(**kw(), runner="r", plan="p1", segment=0, offset=0,
                                         pieces=piece(SHA, 3)))  # fmt: skip
    st = run(st, RecordFetchResponse(**kw(), runner="r", restart=True, etag='"e2"'))
    assert st is not None and st.segments == () and st.bytes == 0 and st.pieces == ()
    st = run(st, RecordFetchResponse(**kw(), runner="r", restart=False, total=10, etag='"e2"'))
    st = run(st, PlanFetchSegments(**kw(), runner="r", plan="p2", bounds=[[0, 4], [4, 10]]))
    # a piece of the dropped split, still on its way, fits segment 0's offset: refused
    with pytest.raises(Conflict) as e:
        f.decide(st, AppendFetchSegmentBytes(**kw(), runner="r", plan="p1", segment=0, offset=0,
                                             pieces=piece(SHA, 1)))  # fmt: skip
    assert e.value.code == "wrong_segment_plan"
    # a pause keeps the split and its bytes; the next run continues them
    st = run(st, AppendFetchSegmentBytes(**kw(), runner="r", plan="p2", segment=1, offset=4,
                                         pieces=piece(SHA, 2)))  # fmt: skip
    st = run(run(st, PauseFetch(**kw())), ResumeFetch(**kw()))
    st = run(st, StartFetch(**kw(), runner="r2"))
    assert st is not None and st.segments[1].offset == 6 and st.bytes == 2


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
