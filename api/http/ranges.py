"""Range request headers (RFC 9110 §14) parsed into byte ranges: pure, no I/O.

Kept apart from the code that streams bytes, in Starlette's manner: `parse_range` turns a
`Range` field value and the representation's size into the ranges to send, or raises one
of two named exceptions that the caller maps to HTTP:

- `MalformedRange`: not a syntactically valid `bytes` range set (or another unit). RFC 9110
  lets a server ignore such a field, so the caller answers the full 200;
- `UnsatisfiableRange`: valid, but no range overlaps the representation, or (its subclass
  `TooManyRanges`) an excessive request of many small ranges, which §15.5.17 allows to
  reject: the caller answers 416 with `Content-Range: bytes */size`.

Ends past the end are clamped, suffix ranges count from the end, and overlapping or
adjacent ranges are coalesced (§14.2 allows it), keeping the order in which the client
asked for them otherwise (§14.6: parts SHOULD come in request order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Beyond this many range-specs the header is refused before any coalescing: parsing stays
# cheap whatever a client sends, and no real client asks for that many pieces at once.
MAX_RANGE_SPECS = 1000
# Numbers longer than this are treated as "past any end": int() of thousands of digits is
# slow (and Python refuses more than 4300), and no representation is 10**30 bytes long.
_MAX_DIGITS = 30
_HUGE = 10**_MAX_DIGITS

_UNIT_RE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)=(.*)", re.DOTALL)
_SPEC_RE = re.compile(r"([0-9]*)-([0-9]*)")


class MalformedRange(ValueError):
    """Not a valid bytes range set: ignore the Range field (full 200)."""


class UnsatisfiableRange(ValueError):
    """No requested range can be served: 416 with `Content-Range: bytes */size`."""

    code = "range_not_satisfiable"


class TooManyRanges(UnsatisfiableRange):
    """More (non-adjacent) ranges than this server serves in one response: 416 as well."""

    code = "too_many_ranges"


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of the representation; `end` is exclusive, unlike the header's."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        """The `Content-Range` value for this range of a representation of `size` bytes."""
        return f"bytes {self.start}-{self.end - 1}/{size}"


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else _HUGE


def parse_range(value: str, size: int, *, max_ranges: int = 100) -> list[ByteRange]:
    """The ranges of a `size`-byte representation that the `Range` field `value` selects.

    Returns them clamped, coalesced and non-empty, in request order. An empty list means
    the request is satisfiable but selects nothing sendable as a part: a suffix range of a
    zero-length representation (RFC 9110 §14.1.2); the caller then sends the whole (empty)
    representation with 200."""
    m = _UNIT_RE.fullmatch(value.strip())
    if m is None or m.group(1).lower() != "bytes":
        raise MalformedRange(f"not a bytes range: {value[:100]!r}")
    elements = [e.strip(" \t") for e in m.group(2).split(",")]
    # `1#range-spec`: empty list elements are allowed (and ignored), at least one must not be.
    specs = [e for e in elements if e]
    if not specs:
        raise MalformedRange("empty range set")
    if len(specs) > MAX_RANGE_SPECS:
        raise TooManyRanges(f"{len(specs)} ranges requested, at most {MAX_RANGE_SPECS} parsed")
    wanted: list[ByteRange] = []
    suffix_seen = False
    for spec in specs:
        sm = _SPEC_RE.fullmatch(spec)
        if sm is None or not (sm.group(1) or sm.group(2)):
            raise MalformedRange(f"invalid range-spec {spec[:50]!r}")
        first, last = sm.group(1), sm.group(2)
        if not first:  # suffix-range: the last N bytes
            n = _number(last)
            if n > 0:
                suffix_seen = True
                if size > 0:
                    wanted.append(ByteRange(max(0, size - n), size))
            continue
        start = _number(first)
        if last:
            end_incl = _number(last)
            if end_incl < start:  # an invalid int-range makes the whole set invalid
                raise MalformedRange(f"range-spec {spec[:50]!r} ends before it starts")
        else:
            end_incl = size - 1
        if start < size:  # satisfiable; ends past the end are clamped
            wanted.append(ByteRange(start, min(end_incl, size - 1) + 1))
    if not wanted:
        if suffix_seen:  # size == 0: only a non-zero suffix is satisfiable, and selects nothing
            return []
        raise UnsatisfiableRange(f"no range overlaps the {size} bytes")
    merged = coalesce(wanted)
    if len(merged) > max_ranges:
        raise TooManyRanges(f"{len(merged)} separate ranges requested, at most {max_ranges}")
    return merged


def coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge overlapping or adjacent ranges; each merged range takes the place of its first
    member in the request, other ranges keep their order."""
    order = sorted(range(len(ranges)), key=lambda i: (ranges[i].start, ranges[i].end))
    groups: list[tuple[int, ByteRange]] = []  # (first request position, merged range)
    for i in order:
        r = ranges[i]
        if groups and r.start <= groups[-1][1].end:
            pos, last = groups[-1]
            groups[-1] = (min(pos, i), ByteRange(last.start, max(last.end, r.end)))
        else:
            groups.append((i, r))
    groups.sort(key=lambda g: g[0])
    return [r for _, r in groups]
