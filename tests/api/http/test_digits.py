"""Decimal numbers in request text: ASCII digits and nothing Python also calls a number."""

from __future__ import annotations

import pytest

from api.http.digits import ascii_int


@pytest.mark.parametrize("text", ["0", "7", "0042", "9" * 19])
def test_ascii_digits_are_read(text: str) -> None:
    assert ascii_int(text) == int(text)


@pytest.mark.parametrize(
    "text",
    [None, "", "+1", "-0", "1_0", " 1", "1 ", "1.0", "0x1", "\uff11", "\u00b2", "9" * 20],
)
def test_anything_else_is_none(text: str | None) -> None:
    # "²" is str.isdigit() but not int(): trusted as a guard, it made a 500.
    assert ascii_int(text) is None


def test_the_digit_limit_is_the_callers() -> None:
    assert ascii_int("1" * 15, 15) == int("1" * 15)
    assert ascii_int("1" * 16, 15) is None
