"""Parallel segments of one URL fetch (CAIRN_FETCH_SEGMENTS), like `aria2c -x N`.

The fetch worker's first request carries `Range: bytes=0-` (the probe). When the origin
answers 206 with a known length worth two segments or more (CAIRN_FETCH_SEGMENT_MIN_BYTES
each) and a validator, the worker records a split (PlanFetchSegments: `[start, end)`
ranges in order, under a fresh plan id) and fetches the ranges at once, each on its own
connection: segment 0 keeps reading the probe's answer, the others ask for
`Range: bytes=a-b` with `If-Range`. Each segment records its own durable prefix
(AppendFetchSegmentBytes), so after a dropped connection, a pause, a crash or a take-over
each continues from its own last recorded byte. The file's manifest is the segments'
pieces in segment order.

Retries: a segment whose connection breaks, or falls below the low-speed limit
(bus/fetch/lowspeed.py, measured per segment), retries on its own (backoff with jitter),
and only a segment that fails CAIRN_FETCH_RETRIES times in a row without progress
(bytes at the low-speed limit's rate on the whole since it last gained any:
lowspeed.made_progress) ends the attempt. An answer that is not the asked range of the
same representation (a 200, a 206 at another offset or of another length, another ETag,
a 416) means the origin changed: the worker records a restart, which drops the split and
every byte, and the attempt starts over from byte 0 (StartOver). The plan id makes the
aggregate refuse any append of the dropped split that was still on its way.

Memory: every segment streams through the same bounded pieces as a single stream
(CAIRN_FETCH_CHUNK_BYTES at most, per segment).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import httpx

from bus.fetch import origin
from bus.fetch.lowspeed import made_progress
from bus.fetch.origin import Fatal, Retryable, StartOver
from domain.commands import RecordFetchAttemptError, RecordFetchResponse

if TYPE_CHECKING:
    from handlers.fetch_run import FetchRun


def plan(total: int, segments: int, min_bytes: int) -> list[list[int]]:
    """`[start, end)` bounds splitting `total` bytes into at most `segments` ranges of at
    least `min_bytes` each (sizes differ by at most one byte); [] when fewer than two."""
    count = min(segments, total // max(1, min_bytes))
    if count < 2:
        return []
    size, extra = divmod(total, count)
    bounds, at = [], 0
    for i in range(count):
        end = at + size + (1 if i < extra else 0)
        bounds.append([at, end])
        at = end
    return bounds


async def run_segments(run: FetchRun, first: httpx.Response | None) -> None:
    """Fetch every unfinished segment at once; return when all are complete. `first` is
    an answer to `Range: bytes=0-` that segment 0 reads instead of asking anew."""
    tasks = [
        asyncio.create_task(_segment(run, i, first if i == 0 else None), name=f"segment-{i}")
        for i, seg in enumerate(run.state.segments)
        if not seg.done
    ]
    if not tasks:
        return
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        # One segment failing ends the attempt: the others stop too (their recorded bytes
        # stay; the next attempt continues every segment from its own offset).
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    errors = [e for t in done if not t.cancelled() and (e := t.exception()) is not None]
    if errors:
        # The most decisive reason wins: a halt (or anything unexpected), then a fatal
        # error, then a start-over, then a plain retryable one.
        def rank(e: BaseException) -> int:
            for n, kind in enumerate((Fatal, StartOver, Retryable), start=1):
                if isinstance(e, kind):
                    return n
            return 0

        raise min(errors, key=rank)
    if run.state.segments and not all(s.done for s in run.state.segments):
        raise StartOver("the segment split changed")


async def _segment(run: FetchRun, i: int, first: httpx.Response | None) -> None:
    failures = 0
    since = time.monotonic()  # when this segment last gained bytes (or began)
    while True:
        segments = run.state.segments
        if i >= len(segments):
            raise StartOver("the segment split was dropped")
        seg = segments[i]
        if seg.done:
            return
        before = seg.bytes
        try:
            if first is not None:
                resp, first = first, None  # checked by the worker already
                await run._stream(resp, segment=i, cap=seg.end - seg.offset)
            else:
                resp, url = await run.open(run.headers(seg.offset, seg.end - 1))
                try:
                    await _check(run, resp, url, seg.offset)
                    await run._stream(resp, segment=i, cap=seg.end - seg.offset)
                finally:
                    await resp.aclose()
            now = run.state.segments[i] if i < len(run.state.segments) else None
            if now is not None and not now.done:
                raise Retryable(f"segment {i} ended at byte {now.offset} of {now.end}")
        except (Fatal, StartOver):
            raise
        except (Retryable, httpx.HTTPError, OSError) as e:
            error = origin.classify(e)
            if not isinstance(error, Retryable):
                raise error from None
            segments = run.state.segments
            gained = segments[i].bytes - before if i < len(segments) else 0
            seconds = time.monotonic() - since
            # Consecutive failures without progress: a segment that keeps moving on a
            # flaky link is not given up on. A byte is not enough, only the low-speed
            # limit's rate since the segment last gained bytes, the backoff included
            # (lowspeed.made_progress): a trickling segment, or one whose every connection
            # breaks after a few bytes, would retry for ever.
            progressed = made_progress(gained, seconds, run.s.fetch_low_speed_bytes)
            if gained > 0:
                since = time.monotonic()
            failures = 0 if progressed else failures + 1
            if failures > run.s.fetch_retries:
                raise error from None
            delay = (
                min(error.retry_after, 300.0)
                if error.retry_after is not None
                else origin.backoff(max(1, failures), run.s.fetch_backoff)
            )
            await run._cmd(
                RecordFetchAttemptError,
                runner=run.runner,
                error=f"segment {i}: {error}",
                retry_in=delay,
            )
            # A pause or cancel meanwhile cancels this task (the run's watcher).
            await asyncio.sleep(delay)


async def _check(run: FetchRun, resp: httpx.Response, url: str, asked: int) -> None:
    """The answer must be the asked range of the representation the split was made of."""
    code = resp.status_code
    h = resp.headers
    if code in (408, 429) or code >= 500:
        raise Retryable(f"origin answered {code}", origin.retry_after(h.get("retry-after")))
    if code not in (200, 206, 416):
        raise Fatal(f"origin_{code}", f"origin answered {code}", {"status": code})
    st = run.state
    if code == 206:
        cr = origin.content_range(h.get("content-range"))
        if (
            cr is not None
            and cr[0] == asked
            and cr[2] == st.total
            and not origin.another_representation(
                st.etag, st.last_modified, st.total, h.get("etag"), h.get("last-modified"), cr[2]
            )
        ):
            return
    await run._cmd(
        RecordFetchResponse,
        runner=run.runner,
        restart=True,
        reason=f"{code} to a segment's range: the origin changed",
        **{**run.validators(resp, url), "total": None},
    )
    raise StartOver("the origin changed: starting over")
