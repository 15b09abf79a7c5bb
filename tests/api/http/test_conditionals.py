"""RFC 9110 §13 preconditions, table-driven: If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since in their evaluation order, If-Range, and the HTTP-date formats."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.http.conditionals import (
    Verdict,
    evaluate,
    format_http_date,
    if_range_ok,
    parse_etags,
    parse_http_date,
    write_match,
)

TAG = "a" * 64
OTHER = "b" * 64
LM = datetime(2026, 11, 6, 8, 49, 37, 123456, tzinfo=UTC)  # sub-second part is not sent
LM_S = "Fri, 06 Nov 2026 08:49:37 GMT"
BEFORE = "Fri, 06 Nov 2026 08:49:36 GMT"
AFTER = "Fri, 06 Nov 2026 08:49:38 GMT"

P, NM, PF = Verdict.PROCEED, Verdict.NOT_MODIFIED, Verdict.PRECONDITION_FAILED

CASES = [
    # (method, headers, verdict)
    ("GET", {}, P),
    # If-Match: strong comparison; "*" matches any existing representation
    ("GET", {"if_match": f'"{TAG}"'}, P),
    ("GET", {"if_match": f'"{OTHER}", "{TAG}"'}, P),
    ("GET", {"if_match": "*"}, P),
    ("GET", {"if_match": f'"{OTHER}"'}, PF),
    ("GET", {"if_match": f'W/"{TAG}"'}, PF),  # weak tags never match strongly
    ("GET", {"if_match": "garbage"}, PF),  # an unparseable condition is not true
    ("GET", {"if_match": f"{TAG}"}, PF),  # unquoted
    ("GET", {"if_match": f'"{TAG}", garbage'}, PF),
    ("GET", {"if_match": ""}, PF),
    # If-Unmodified-Since (only without If-Match)
    ("GET", {"if_unmodified_since": LM_S}, P),
    ("GET", {"if_unmodified_since": AFTER}, P),
    ("GET", {"if_unmodified_since": BEFORE}, PF),
    ("GET", {"if_unmodified_since": "not a date"}, P),  # ignored
    ("GET", {"if_match": f'"{TAG}"', "if_unmodified_since": BEFORE}, P),  # If-Match wins
    # If-None-Match: weak comparison; 304 for GET and HEAD
    ("GET", {"if_none_match": f'"{TAG}"'}, NM),
    ("HEAD", {"if_none_match": f'"{TAG}"'}, NM),
    ("GET", {"if_none_match": f'W/"{TAG}"'}, NM),
    ("GET", {"if_none_match": f'"{OTHER}", W/"{TAG}"'}, NM),
    ("GET", {"if_none_match": "*"}, NM),
    ("GET", {"if_none_match": f'"{OTHER}"'}, P),
    ("GET", {"if_none_match": "garbage"}, P),
    # If-Modified-Since (only without If-None-Match, only GET/HEAD)
    ("GET", {"if_modified_since": LM_S}, NM),
    ("HEAD", {"if_modified_since": AFTER}, NM),
    ("GET", {"if_modified_since": BEFORE}, P),
    ("GET", {"if_modified_since": "yesterday"}, P),
    ("GET", {"if_modified_since": LM_S + ", " + LM_S}, P),  # more than one member: ignored
    ("GET", {"if_none_match": f'"{OTHER}"', "if_modified_since": AFTER}, P),  # INM wins
    # order: a failed If-Match beats a matching If-None-Match
    ("GET", {"if_match": f'"{OTHER}"', "if_none_match": f'"{TAG}"'}, PF),
    ("GET", {"if_unmodified_since": BEFORE, "if_modified_since": AFTER}, PF),
    ("GET", {"if_match": f'"{TAG}"', "if_none_match": f'"{TAG}"'}, NM),
]


@pytest.mark.parametrize(("method", "headers", "want"), CASES)
def test_preconditions(method: str, headers: dict[str, str], want: Verdict) -> None:
    assert evaluate(method, etag=TAG, last_modified=LM, **headers) is want


IF_RANGE = [
    (None, True),
    (f'"{TAG}"', True),
    (f'"{OTHER}"', False),
    (f'W/"{TAG}"', False),  # If-Range needs a strong match
    (LM_S, True),
    (BEFORE, False),
    (AFTER, False),  # must be an exact match, not "not modified since"
    ("garbage", False),
    ('"unterminated', False),
]


@pytest.mark.parametrize(("value", "ok"), IF_RANGE)
def test_if_range(value: str | None, ok: bool) -> None:
    assert if_range_ok(value, etag=TAG, last_modified=LM) is ok


DATES = [
    "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
    "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
    "Sun Nov  6 08:49:37 1994",  # asctime
]


@pytest.mark.parametrize("value", DATES)
def test_http_date_formats(value: str) -> None:
    assert parse_http_date(value) == datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "1994-11-06T08:49:37Z",
    ],
)
def test_not_http_dates(value: str) -> None:
    assert parse_http_date(value) is None


def test_format_http_date_round_trips() -> None:
    assert format_http_date(LM) == LM_S
    assert parse_http_date(format_http_date(LM)) == LM.replace(microsecond=0)


def test_parse_etags() -> None:
    assert parse_etags("*") == "*"
    assert parse_etags('"a", W/"b" ,, ""') == [(False, "a"), (True, "b"), (False, "")]
    assert parse_etags('"a" "b"') is None
    assert parse_etags('W/ "a"') is None


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("*", "*"),
        (' "abc" ', "abc"),
        ('W/"abc"', None),  # a write needs a strong tag
        ('"a", "b"', None),  # one version, not a choice
        ("abc", None),
        ("", None),
    ],
)
def test_write_match(value: str, want: str | None) -> None:
    assert write_match(value) == want
