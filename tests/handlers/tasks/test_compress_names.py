"""Names inside a compress's archive: a name repeated many times is numbered in work
linear in the names."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.tasks import compress
from handlers.tasks.compress import numbered, unique_names


def reference(names: list[str]) -> list[str]:
    """The rule, spelt out: each name, or its first numbered form no earlier one took."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = numbered(name, n)
        seen.add(candidate)
        out.append(candidate)
    return out


def test_a_name_repeated_5000_times_is_numbered_without_retrying_every_earlier_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A phone names every photo image.jpg: the k-th copy tried the k-1 numbers before it,
    # so 80,000 of them (a task's most) were 3.2 billion tries on the worker's event loop.
    made: list[int] = []

    def counted(name: str, n: int) -> str:
        made.append(n)
        return numbered(name, n)

    monkeypatch.setattr(compress, "numbered", counted)
    names = ["image.jpg"] * 5000
    out = unique_names(names)
    assert out[:3] == ["image.jpg", "image (2).jpg", "image (3).jpg"]
    assert out[-1] == "image (5000).jpg" and len(set(out)) == 5000
    assert len(made) <= 2 * len(names), len(made)  # was 12.5 million


names_ = st.lists(
    st.sampled_from(["a.txt", "a (2).txt", "a (3).txt", "b", "b (2)", "d/a.txt", "d/a (2).txt"]),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(names=names_)
def test_the_numbering_is_the_rule_whatever_names_came_before(names: list[str]) -> None:
    assert unique_names(names) == reference(names)


def test_many_names_with_numbered_ones_among_them_follow_the_rule() -> None:
    rnd = random.Random(7)
    pool: list[Any] = ["x.bin", "x (2).bin", "x (7).bin", "y", "y (3)", "z/x.bin"]
    names = [rnd.choice(pool) for _ in range(3000)]
    assert unique_names(names) == reference(names)
