"""The low-speed meter and the progress rule of URL fetches, on a clock the tests move (no
real window is waited for)."""

from __future__ import annotations

import asyncio

import pytest

from bus.fetch.lowspeed import LowSpeed, TooSlow, head_within, made_progress
from bus.fetch.origin import Retryable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(meter: LowSpeed, clock: Clock, wait: float, n: int) -> TooSlow | None:
    """The origin takes `wait` seconds to send `n` bytes."""
    meter.waiting()
    clock.now += wait
    return meter.arrived(n)


def test_a_trickle_trips_once_a_whole_window_is_below_the_limit() -> None:
    clock = Clock()
    meter = LowSpeed(1024, 60.0, clock)
    # A few bytes every 20 s: never silent long enough for the read timeout.
    assert feed(meter, clock, 20, 10) is None
    assert feed(meter, clock, 20, 10) is None
    slow = feed(meter, clock, 20, 10)  # 60 s of origin time
    assert slow is not None and slow.code == "too_slow"
    assert isinstance(slow, Retryable)
    assert str(slow).startswith("too_slow: 0 B/s over the last 60 s")
    assert "limit of 1024 B/s" in str(slow)


def test_the_measured_rate_is_the_last_windows() -> None:
    clock = Clock()
    meter = LowSpeed(1000, 10.0, clock)
    # A fast start, then 500 B/s: the fast bytes leave the window and it trips.
    assert feed(meter, clock, 1, 100_000) is None
    results = [feed(meter, clock, 1, 500) for _ in range(12)]
    slow = next(r for r in results if r is not None)
    assert 450 <= slow.rate <= 600, slow.rate  # about what the window held, in B/s
    assert "too_slow: 5" in str(slow)


def test_above_the_limit_never_trips() -> None:
    clock = Clock()
    meter = LowSpeed(1024, 5.0, clock)
    for _ in range(1000):
        assert feed(meter, clock, 0.1, 110) is None  # 1100 B/s, for 100 s
    # and the window is kept in a few buckets, not one entry per piece
    assert len(meter._buckets) <= 20


def test_not_before_a_whole_window() -> None:
    clock = Clock()
    meter = LowSpeed(1024, 60.0, clock)
    assert feed(meter, clock, 59, 1) is None
    assert feed(meter, clock, 1, 1) is not None


def test_the_workers_own_time_is_not_the_origins() -> None:
    # The bytes come at once when asked for; the worker then spends 10 s on its own each
    # time (a slow disk, the broker, its own rate limit): the origin is not slow.
    clock = Clock()
    meter = LowSpeed(1024, 5.0, clock)
    for _ in range(20):
        assert feed(meter, clock, 0.01, 100) is None
        clock.now += 10
    assert meter._elapsed < 1


def test_zero_turns_it_off() -> None:
    clock = Clock()
    meter = LowSpeed(0, 1.0, clock)
    for _ in range(100):
        assert feed(meter, clock, 20, 1) is None


def test_a_failed_attempt_counts_as_progress_only_at_the_limits_rate() -> None:
    assert not made_progress(5_000, 62.0, 1024)  # a trickle's few bytes
    # Six tries of a trickling segment in one attempt, each just under a window's worth:
    # together over one window's worth, but still under the limit's rate.
    assert not made_progress(6 * 60_000, 6 * 61.0, 1024)
    assert made_progress(10 << 20, 70.0, 1024)  # fast, then slowed down or broken
    # A connection broken after a few bytes, again and again: each time some bytes, too
    # few for the time they took (counting any byte retried such an origin for ever).
    assert not made_progress(10, 0.1, 1024)
    assert not made_progress(1, 600.0, 1024)
    assert not made_progress(0, 1.0, 1024)
    assert made_progress(1, 600.0, 0)  # the limit off: any byte
    assert not made_progress(0, 1.0, 0)


async def test_a_head_not_in_by_its_deadline_is_too_slow() -> None:
    never = asyncio.Event()
    with pytest.raises(TooSlow) as e:
        async with head_within(1024, read_timeout=0.05, window=0.05):
            await never.wait()  # the head that never completes
    assert str(e.value) == "too_slow: no complete answer head in 0.1 s"
    assert e.value.code == "too_slow"


async def test_a_head_deadline_only_with_the_limit_on_and_only_its_own() -> None:
    async with head_within(0, read_timeout=0.01, window=0.01):
        await asyncio.sleep(0.05)  # no deadline with the limit off
    # A TimeoutError from inside (not the deadline's) goes through as it is.
    with pytest.raises(TimeoutError):
        async with head_within(1024, read_timeout=60, window=60):
            raise TimeoutError("someone else's")
