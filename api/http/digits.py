"""Decimal numbers in request text (headers, path segments, query values): ASCII digits.

Python takes more than HTTP means: `int()` reads "+1", "1_0", " 1" and full-width digits,
and `str.isdigit()` is true for "²", which `int()` then refuses with a ValueError (a
500 wherever the one was trusted to guard the other). So every such field goes through
`ascii_int`.
"""

from __future__ import annotations


def ascii_int(text: str | None, max_digits: int = 19) -> int | None:
    """`text` as a non-negative integer if it is 1 to `max_digits` ASCII digits (19: any
    such number fits PostgreSQL's bigint), else None."""
    if text is None or not 0 < len(text) <= max_digits:
        return None
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text)
