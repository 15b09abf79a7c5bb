"""Conditional requests (RFC 9110 §13): validators in, a verdict out; pure, no I/O.

The served file's validators are a strong ETag (its sha256: the same bytes always give
the same tag, other bytes another) and Last-Modified (its creation; a file's bytes never
change after it). `evaluate` applies the preconditions in the order §13.2.2 prescribes:

1. If-Match (else If-Unmodified-Since) false -> 412;
2. If-None-Match (else If-Modified-Since, GET and HEAD only) false -> 304 for GET/HEAD;
3. then If-Range decides, for a GET with Range, whether the range applies (`if_range_ok`).

Unparseable values: an If-Match list with garbage in it matches nothing, so the method is
not performed (412), the only safe reading of a condition the server cannot evaluate; a
garbage If-None-Match matches nothing either (so the request proceeds); a date that is not
an HTTP-date makes If-(Un)Modified-Since ignored (§13.1.3, §13.1.4); a garbage If-Range
is a changed validator (full 200).
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Any

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text
_ETAG_RE = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# IMF-fixdate, obsolete RFC 850 and asctime formats (§5.6.7), all to be accepted.
_IMF_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT",
    re.ASCII,
)
_RFC850_RE = re.compile(
    r"(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    r"(\d\d)-([A-Z][a-z]{2})-(\d\d) (\d\d):(\d\d):(\d\d) GMT",
    re.ASCII,
)
_ASCTIME_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})",
    re.ASCII,
)


class Verdict(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = 304
    PRECONDITION_FAILED = 412


ANY = "*"


def parse_etags(value: str) -> list[tuple[bool, str]] | str | None:
    """`*`, or the list of (weak, opaque-tag) in a `#entity-tag` field; None if malformed."""
    value = value.strip(" \t")
    if value == ANY:
        return ANY
    tags: list[tuple[bool, str]] = []
    for element in value.split(","):
        element = element.strip(" \t")
        if not element:  # empty list elements are allowed and ignored
            continue
        m = _ETAG_RE.fullmatch(element)
        if m is None:
            return None
        tags.append((m.group(1) is not None, m.group(2)))
    return tags or None


def field_value(headers: Any, name: str) -> str | None:
    """A list header's value as one field: its lines joined by ", " (RFC 9110 §5.3, what a
    proxy may send in their place), None if absent. Reading only the first line, a write
    with `If-Match: <the live ETag>` and a second If-Match went ahead, while the same
    conditions as one line were refused."""
    values = headers.getall(name.lower(), [])
    return ", ".join(values) if values else None


def write_match(value: str) -> str | None:
    """What an If-Match on a write (PUT, DELETE) names: `*`, or the opaque tag of exactly
    one strong entity-tag; None for anything else (a list, a weak tag, garbage), which a
    write refuses (400) rather than guess at."""
    tags = parse_etags(value)
    if tags == ANY:
        return ANY
    if isinstance(tags, list) and len(tags) == 1 and not tags[0][0]:
        return tags[0][1]
    return None


def format_etag(opaque: str) -> str:
    return f'"{opaque}"'


def format_http_date(at: datetime) -> str:
    """IMF-fixdate, the only format a sender may generate."""
    at = at.astimezone(UTC)
    return (
        f"{_WEEKDAYS[at.weekday()]}, {at.day:02d} {_MONTHS[at.month - 1]} {at.year:04d} "
        f"{at.hour:02d}:{at.minute:02d}:{at.second:02d} GMT"
    )


def parse_http_date(value: str) -> datetime | None:
    """An HTTP-date in any of its three formats, as an aware UTC datetime; else None."""
    value = value.strip(" \t")
    try:
        if m := _IMF_RE.fullmatch(value):
            _, day, mon, year, hh, mm, ss = m.groups()
            return _date(int(year), mon, int(day), hh, mm, ss)
        if m := _RFC850_RE.fullmatch(value):
            _, day, mon, yy, hh, mm, ss = m.groups()
            # §5.6.7: a two-digit year more than 50 years in the future is in the past.
            year = 2000 + int(yy)
            if year > datetime.now(UTC).year + 50:
                year -= 100
            return _date(year, mon, int(day), hh, mm, ss)
        if m := _ASCTIME_RE.fullmatch(value):
            _, mon, day, hh, mm, ss, year = m.groups()
            return _date(int(year), mon, int(day.strip()), hh, mm, ss)
    except ValueError:  # e.g. 31 Feb, 25:00:00, an unknown month
        return None
    return None


def _date(year: int, mon: str, day: int, hh: str, mm: str, ss: str) -> datetime:
    if mon not in _MONTHS:
        raise ValueError(mon)
    return datetime(year, _MONTHS.index(mon) + 1, day, int(hh), int(mm), int(ss), tzinfo=UTC)


def _seconds(at: datetime) -> datetime:
    """HTTP dates have one-second resolution: compare at that resolution."""
    return at.astimezone(UTC).replace(microsecond=0)


def _strong_match(tags: list[tuple[bool, str]] | str | None, etag: str) -> bool:
    if tags == ANY:
        return True
    return isinstance(tags, list) and any(not weak and t == etag for weak, t in tags)


def _weak_match(tags: list[tuple[bool, str]] | str | None, etag: str) -> bool:
    if tags == ANY:
        return True
    return isinstance(tags, list) and any(t == etag for _, t in tags)


def evaluate(
    method: str,
    *,
    etag: str,
    last_modified: datetime,
    if_match: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    if_unmodified_since: str | None = None,
) -> Verdict:
    """The outcome of the preconditions for an existing representation (opaque `etag`)."""
    lm = _seconds(last_modified)
    if if_match is not None:
        if not _strong_match(parse_etags(if_match), etag):
            return Verdict.PRECONDITION_FAILED
    elif if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        if since is not None and lm > since:
            return Verdict.PRECONDITION_FAILED
    safe = method in ("GET", "HEAD")
    if if_none_match is not None:
        if _weak_match(parse_etags(if_none_match), etag):
            return Verdict.NOT_MODIFIED if safe else Verdict.PRECONDITION_FAILED
    elif if_modified_since is not None and safe:
        since = parse_http_date(if_modified_since)
        if since is not None and lm <= since:
            return Verdict.NOT_MODIFIED
    return Verdict.PROCEED


def if_range_ok(value: str | None, *, etag: str, last_modified: datetime) -> bool:
    """Whether a Range may apply given the request's If-Range (§13.1.5).

    An entity-tag must match strongly (a weak tag never does); a date must equal
    Last-Modified exactly (our Last-Modified is a strong validator: the bytes behind it never
    change). Anything else, garbage included, means the client's copy is stale: send all."""
    if value is None:
        return True
    value = value.strip(" \t")
    if value.startswith(('"', "W/")):
        m = _ETAG_RE.fullmatch(value)
        return m is not None and m.group(1) is None and m.group(2) == etag
    since = parse_http_date(value)
    return since is not None and since == _seconds(last_modified)
