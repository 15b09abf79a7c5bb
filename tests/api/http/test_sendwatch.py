"""The send watch (api/http/sendwatch.py): only time spent paused counts, only once a stream
asked, and a connection whose stream is gone is not cut."""

from __future__ import annotations

import asyncio

from api.http.sendwatch import SEND_TIMEOUT_EXTENSION, SendWatch, bound_sends


async def test_writes_paused_for_the_timeout_cut_the_connection() -> None:
    cut = asyncio.Event()
    watch = SendWatch(asyncio.get_running_loop(), "sse")
    watch.pause_writing()  # paused before the stream asked: counted from when it asks
    watch.arm(0.05, lambda: cut.set() or True)
    await asyncio.wait_for(cut.wait(), 5)
    assert watch.seconds is None  # once


async def test_writes_that_resume_in_time_are_not_cut() -> None:
    cuts: list[int] = []
    watch = SendWatch(asyncio.get_running_loop(), "ws")
    watch.arm(30.0, lambda: cuts.append(1) or True)
    assert watch._timer is None  # not paused: nothing runs
    watch.pause_writing()
    assert watch._timer is not None
    watch.resume_writing()  # the client read: the clock stops
    assert watch._timer is None
    watch.pause_writing()
    watch.disarm()  # the connection is gone
    assert watch._timer is None and cuts == []


async def test_a_connection_not_asked_for_is_never_watched() -> None:
    watch = SendWatch(asyncio.get_running_loop(), "sse")
    watch.pause_writing()
    assert watch._timer is None


async def test_a_stream_that_is_no_longer_there_is_not_cut() -> None:
    fired = asyncio.Event()

    def gone() -> bool:
        fired.set()
        return False  # a later response on the same connection: left alone

    watch = SendWatch(asyncio.get_running_loop(), "sse")
    watch.pause_writing()
    watch.arm(0.01, gone)
    await asyncio.wait_for(fired.wait(), 5)
    assert watch.seconds is None


def test_bound_sends_asks_the_server_when_it_offers_the_extension() -> None:
    asked: list[float] = []
    bound_sends({"extensions": {SEND_TIMEOUT_EXTENSION: asked.append}}, 30.0)
    bound_sends({"extensions": None}, 30.0)  # another server (a test client): nothing
    bound_sends({}, 30.0)
    assert asked == [30.0]
