"""RFC 9110 §14 Range parsing, table-driven: every form of range-spec, clamping,
coalescing, and the two refusals (malformed -> ignore, unsatisfiable -> 416)."""

from __future__ import annotations

import pytest

from api.http.ranges import (
    MAX_RANGE_SPECS,
    ByteRange,
    MalformedRange,
    TooManyRanges,
    UnsatisfiableRange,
    coalesce,
    parse_range,
)

SIZE = 10_000


def R(start: int, end_incl: int) -> ByteRange:
    return ByteRange(start, end_incl + 1)


SATISFIABLE = [
    # single int-ranges
    ("bytes=0-499", SIZE, [R(0, 499)]),
    ("bytes=500-999", SIZE, [R(500, 999)]),
    ("bytes=0-0", SIZE, [R(0, 0)]),
    ("bytes=9999-9999", SIZE, [R(9999, 9999)]),
    # open range: to the end
    ("bytes=9500-", SIZE, [R(9500, 9999)]),
    ("bytes=0-", SIZE, [R(0, 9999)]),
    # suffix ranges: the last N bytes; longer than the file = all of it
    ("bytes=-500", SIZE, [R(9500, 9999)]),
    ("bytes=-1", SIZE, [R(9999, 9999)]),
    ("bytes=-10000", SIZE, [R(0, 9999)]),
    ("bytes=-20000", SIZE, [R(0, 9999)]),
    # ends past the end are clamped
    ("bytes=9000-20000", SIZE, [R(9000, 9999)]),
    ("bytes=0-99999999999999999999999999999999999", SIZE, [R(0, 9999)]),
    # unit is case-insensitive; OWS around list elements; empty elements ignored
    ("BYTES=0-1", SIZE, [R(0, 1)]),
    ("Bytes=0-1", SIZE, [R(0, 1)]),
    ("bytes=0-1 , 5-6", SIZE, [R(0, 1), R(5, 6)]),
    ("bytes=0-1,\t5-6", SIZE, [R(0, 1), R(5, 6)]),
    ("bytes=,0-1,,5-6,", SIZE, [R(0, 1), R(5, 6)]),
    ("  bytes=0-1  ", SIZE, [R(0, 1)]),
    # several ranges keep request order
    ("bytes=500-600,100-200", SIZE, [R(500, 600), R(100, 200)]),
    ("bytes=0-0,-1", SIZE, [R(0, 0), R(9999, 9999)]),
    # overlapping or adjacent ranges are coalesced
    ("bytes=0-499,400-999", SIZE, [R(0, 999)]),
    ("bytes=0-499,500-999", SIZE, [R(0, 999)]),
    ("bytes=500-999,0-499", SIZE, [R(0, 999)]),
    ("bytes=0-10,0-10,0-10", SIZE, [R(0, 10)]),
    ("bytes=0-,100-200", SIZE, [R(0, 9999)]),
    ("bytes=-100,9950-", SIZE, [R(9900, 9999)]),
    ("bytes=100-199,0-9,150-300", SIZE, [R(100, 300), R(0, 9)]),
    # unsatisfiable members are dropped when another one is satisfiable
    ("bytes=0-9,20000-30000", SIZE, [R(0, 9)]),
    ("bytes=20000-,-5", SIZE, [R(9995, 9999)]),
    ("bytes=-0,0-0", SIZE, [R(0, 0)]),
    # chunk-sized files and tiny files
    ("bytes=-5", 3, [R(0, 2)]),
    ("bytes=1-", 2, [R(1, 1)]),
]


@pytest.mark.parametrize(("header", "size", "want"), SATISFIABLE)
def test_satisfiable(header: str, size: int, want: list[ByteRange]) -> None:
    assert parse_range(header, size) == want


MALFORMED = [
    "bytes",
    "bytes=",
    "bytes=,",
    "bytes=-",
    "bytes=abc",
    "bytes=1-2-3",
    "bytes=--1",
    "bytes=5-1",  # last-pos < first-pos: the whole set is invalid
    "bytes=0-1,5-1",
    "bytes=0x10-20",
    "bytes=+1-2",
    "bytes=-+1",
    "bytes=1 - 2",
    "bytes = 0-1",
    "bytes=0-1;2-3",
    "items=0-5",  # another unit
    "0-5",
    "",
    "bytes=\u0661-2",  # non-ASCII digits are not DIGIT
]


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_is_named(header: str) -> None:
    with pytest.raises(MalformedRange):
        parse_range(header, SIZE)


UNSATISFIABLE = [
    ("bytes=10000-", SIZE),
    ("bytes=10000-20000", SIZE),
    ("bytes=99999999999999999999999999999999999999999-", SIZE),
    ("bytes=-0", SIZE),
    ("bytes=-0,10000-", SIZE),
    ("bytes=0-0", 0),
    ("bytes=0-", 0),
]


@pytest.mark.parametrize(("header", "size"), UNSATISFIABLE)
def test_unsatisfiable_is_named(header: str, size: int) -> None:
    with pytest.raises(UnsatisfiableRange) as e:
        parse_range(header, size)
    assert not isinstance(e.value, TooManyRanges)


def test_suffix_of_an_empty_representation_selects_nothing() -> None:
    # §14.1.2: the only satisfiable range-spec of a zero-length representation; the
    # caller then sends the (empty) representation whole.
    assert parse_range("bytes=-5", 0) == []


def test_many_separate_ranges_are_refused_not_served() -> None:
    header = "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(101))
    with pytest.raises(TooManyRanges):
        parse_range(header, SIZE, max_ranges=100)
    assert len(parse_range(header, SIZE, max_ranges=101)) == 101


def test_ten_thousand_parts_are_refused_before_parsing_them_all() -> None:
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(10_000))
    assert 10_000 > MAX_RANGE_SPECS
    with pytest.raises(TooManyRanges):
        parse_range(header, 1 << 30, max_ranges=10**6)


def test_many_overlapping_ranges_coalesce_to_one() -> None:
    header = "bytes=" + ",".join(f"{i}-{i + 10}" for i in range(500))
    assert parse_range(header, SIZE, max_ranges=1) == [R(0, 509)]


def test_coalesce_keeps_request_order_of_separate_groups() -> None:
    got = coalesce([ByteRange(50, 60), ByteRange(0, 10), ByteRange(55, 70), ByteRange(10, 20)])
    assert got == [ByteRange(50, 70), ByteRange(0, 20)]


def test_content_range_is_inclusive() -> None:
    assert R(0, 499).content_range(SIZE) == "bytes 0-499/10000"
    assert R(9999, 9999).length == 1
