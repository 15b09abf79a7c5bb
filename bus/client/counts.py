"""Command-line numbers that count something (`--limit`, `--parallel`, `--streams`,
`--offset`), refused by argparse (exit 2, naming the option) when out of range.

As plain ints they went through unchecked: `cairn ls --limit 0` listed 100 files (0 read
as "not given"), `cairn events --limit 0` printed one event, `--parallel -1` ran one file
at a time without a word, and a negative `--limit` came back as the server's 400."""

from __future__ import annotations

import argparse


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None


def positive(value: str) -> int:
    """1 or more."""
    n = _int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: must be 1 or more")
    return n


def not_negative(value: str) -> int:
    """0 or more."""
    n = _int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: must be 0 or more")
    return n
