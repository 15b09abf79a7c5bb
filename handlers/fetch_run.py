"""One worker's run of one fetch (`cairn run fetcher`, handlers/fetcher.py): from StartFetch
to completion, failure or halt.

The worker (handlers/fetcher.py) claims a fetch and hands it to a FetchRun, which reads
the fetch's stream, streams the origin's body into content-addressed blobs and records
the durable prefix at most about once a second (RECORD_EVERY), so a resume continues from
it with `Range: bytes=N-` and `If-Range`. It watches the stream every WATCH_EVERY seconds
for a pause, a cancel or a take-over by another runner, and stops (Halted) without
recording anything more when one comes. Split ranges run through handlers/fetch_segments.py,
a reusable earlier download through handlers/fetch_reuse.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx

from bus.actors.commandbus import CommandResult
from bus.blobs.errors import BlobStoreUnavailable
from bus.blobs.manifests import hash_manifest
from bus.blobs.sniff import content_type_of
from bus.config.logs import get_logger
from bus.fetch import origin
from bus.fetch.lowspeed import LowSpeed, TooSlow, head_within, made_progress
from bus.fetch.origin import Fatal, Retryable, StartOver
from bus.fetch.ssrf import UnsafeUrl, check_url, redirect_location
from domain import fetches as f
from domain.commands import (
    AppendFetchBytes,
    AppendFetchSegmentBytes,
    Command,
    CompleteFetch,
    FailFetch,
    PlanFetchSegments,
    RecordFetchAttemptError,
    RecordFetchResponse,
)
from domain.errors import DomainError
from domain.policies import fetch_file_command_id, fetch_result_file_id, file_from_fetch
from handlers import fetch_reuse, fetch_segments
from handlers.destination import bucket_gone
from projections.usage import QUOTA_EXCEEDED, over_quota, release, reserve, storage_used

if TYPE_CHECKING:
    from handlers.fetcher import Fetcher

log = get_logger(__name__)

MAX_REDIRECTS = 5
RECORD_EVERY = 1.0  # seconds between progress events of one fetch (at most about)
WATCH_EVERY = 0.5  # seconds between looks for pause / cancel / take-over
_INT64_MAX = (1 << 63) - 1  # the largest size the commands, events and read models carry


class Halted(Exception):
    """The fetch was paused, cancelled or taken over: stop without recording anything."""


class RateLimiter:
    """A token bucket in bytes per second (0 = unlimited), shared by whoever holds it."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._allowance = float(rate)
        self._last = time.monotonic()

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        self._allowance = min(float(self.rate), self._allowance + (now - self._last) * self.rate)
        self._last = now
        self._allowance -= n
        if self._allowance < 0:
            await asyncio.sleep(-self._allowance / self.rate)


def now() -> datetime:
    return datetime.now(UTC)


class FetchRun:
    """One worker's run of one fetch, from StartFetch to completion, failure or halt."""

    def __init__(self, fetcher: Fetcher, fetch_id: str, runner: str) -> None:
        self.w = fetcher
        self.s = fetcher.settings
        self.fetch_id = fetch_id
        self.runner = runner
        self.stream_id = f"fetch-{fetch_id}"
        self.state: f.FetchState
        self.version = 0
        self.rate = RateLimiter(self.s.fetch_rate)
        self._folding = asyncio.Lock()
        # The owner's quota and what they used when this attempt began (_check_quota).
        self.quota = 0
        self.used = 0

    async def _reload(self) -> None:
        events = await self.w.store.read_stream(self.stream_id)
        state = f.AGGREGATE.fold(events)
        if state is None:
            raise Halted("no such fetch")
        self.state = state
        self.version = events[-1].version if events else 0

    def _halted(self) -> bool:
        st = self.state
        return st.status != f.FetchStatus.IN_PROGRESS or st.runner != self.runner

    async def _watch(self) -> None:
        """Return once the fetch is paused, cancelled or taken over (new events say so)."""
        while True:
            await asyncio.sleep(WATCH_EVERY)
            await self._catch_up()
            if self._halted():
                return

    async def _cmd(self, cmd_type: type[Command], **kw: Any) -> CommandResult:
        cmd = cmd_type(aggregate_id=self.fetch_id, caller=self.state.owner, at=now(), **kw)
        try:
            result = await self.w._send(cmd)
        except DomainError as e:
            if e.code == "fetch_not_running":
                raise Halted(e.message) from None
            if e.code in ("wrong_segment_plan", "fetch_segmented", "fetch_not_segmentable"):
                # Another stream of this run changed the fetch (a restart dropped the
                # split): what this stream holds no longer fits. Start the attempt over.
                raise StartOver(e.message) from None
            raise
        # Fold our own events too, so offsets and validators are current.
        await self._catch_up()
        return result

    async def _catch_up(self) -> None:
        """Fold the events after the last one folded. The watcher and the transfer both
        call this: the lock and the version filter make each event folded exactly once
        (folding one twice would double its pieces in our copy of the state)."""
        async with self._folding:
            new = await self.w.store.read_stream(self.stream_id, self.version + 1)
            new = [e for e in new if e.version > self.version]
            if new:
                self.state = f.AGGREGATE.fold(new, self.state) or self.state
                self.version = new[-1].version

    async def execute(self) -> None:
        await self._reload()
        if self._halted():
            return
        attempt = 0
        # The most bytes this run has held. A failed attempt that took the fetch past it
        # made progress: the count of failures starts again, as a segment's does
        # (fetch_segments), so a link that breaks every few minutes still brings a large
        # file in (wget -c, aria2). Against the high-water mark, not the last attempt, so
        # an origin that changes at every request and keeps dropping the bytes held (each
        # restart then regains what it lost) still gives up. An attempt counts only if
        # the fetch went at the low-speed limit's rate on the whole since it last gained
        # bytes, the backoff included (lowspeed.made_progress): a trickle's few bytes each
        # time, or an origin breaking every connection after a few, would retry for ever.
        best, since = self.state.bytes, time.monotonic()
        while True:
            work = asyncio.create_task(self._attempt())
            watch = asyncio.create_task(self._watch())
            try:
                done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (work, watch):
                    t.cancel()
                for t in (work, watch):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            if work not in done or work.cancelled():
                return  # paused, cancelled or taken over: every recorded byte is kept
            error = work.exception()
            if error is None:
                return
            if isinstance(error, Halted):
                return
            if isinstance(error, Fatal):
                log.info("fetch failed", fetch=self.fetch_id, code=error.code)
                with contextlib.suppress(Halted):
                    await self._cmd(
                        FailFetch,
                        runner=self.runner,
                        error=error.message,
                        details={"code": error.code, **error.details},
                    )
                return
            if not isinstance(error, Retryable):
                raise error
            if self.state.bytes > best:
                gained, seconds = self.state.bytes - best, time.monotonic() - since
                if made_progress(gained, seconds, self.s.fetch_low_speed_bytes):
                    attempt = 0
                best, since = self.state.bytes, time.monotonic()
            attempt += 1
            if attempt > self.s.fetch_retries:
                # The last failure's reason, when it has a name (too_slow), for a client
                # that reads the details rather than the message.
                reason = {"reason": error.code} if error.code else {}
                with contextlib.suppress(Halted):
                    await self._cmd(
                        FailFetch,
                        runner=self.runner,
                        error=f"gave up after {attempt} attempts: {error}",
                        details={"code": "retries_exhausted", "attempts": attempt, **reason},
                    )
                return
            delay = (
                min(error.retry_after, 300.0)
                if error.retry_after is not None
                else origin.backoff(attempt, self.s.fetch_backoff)
            )
            log.info("fetch attempt failed", fetch=self.fetch_id, error=str(error), retry_in=delay)
            await self._cmd(
                RecordFetchAttemptError, runner=self.runner, error=str(error), retry_in=delay
            )
            # Wait out the backoff, but stop at once if paused or cancelled meanwhile.
            watch = asyncio.create_task(self._watch())
            try:
                async with asyncio.timeout(delay):
                    await asyncio.shield(watch)
                return
            except TimeoutError:
                pass
            finally:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watch

    # ---- one attempt: request, check the answer, stream the body -----------------------

    async def _attempt(self) -> None:
        try:
            await self._transfer()
        except (Halted, Fatal, Retryable):
            raise
        except BlobStoreUnavailable as e:
            # The store down or full for a while (S3 unreachable, a full disk): another
            # attempt after the backoff, as for an origin's failure, not a worker crash
            # (three of which fail the fetch as worker_failed).
            raise Retryable(f"blob store unavailable: {e}", e.retry_after) from None
        except (httpx.HTTPError, OSError) as e:
            raise origin.classify(e) from None

    def validator(self) -> str | None:
        """What If-Range carries: the strong ETag, else Last-Modified."""
        return origin.strong_etag(self.state.etag) or self.state.last_modified

    def headers(self, first: int | None = None, last: int | None = None) -> dict[str, str]:
        """Request headers; with `first`, a Range from there (to `last` inclusive, if given),
        guarded by If-Range when a validator is recorded."""
        headers = {"Accept-Encoding": "identity", "User-Agent": "cairn-fetch/1"}
        if first is not None:
            headers["Range"] = f"bytes={first}-{'' if last is None else last}"
            validator = self.validator()
            if validator is not None:
                headers["If-Range"] = validator
        return headers

    def validators(self, resp: httpx.Response, url: str) -> dict[str, Any]:
        h = resp.headers
        return {
            "etag": origin.bounded(h.get("etag"), origin.MAX_VALIDATOR),
            "last_modified": origin.bounded(h.get("last-modified"), origin.MAX_VALIDATOR),
            "content_type": origin.bounded(h.get("content-type"), origin.MAX_CONTENT_TYPE),
            "file_name": origin.file_name(resp, url),
            "accept_ranges": "bytes" in (h.get("accept-ranges") or "").lower(),
            "content_encoding": origin.content_encoding(h.get("content-encoding")),
        }

    async def open(self, headers: dict[str, str]) -> tuple[httpx.Response, str]:
        """GET the fetch's URL, following up to MAX_REDIRECTS redirects, every hop checked."""
        assert self.w.client is not None
        url = self.state.url
        for hop in range(MAX_REDIRECTS + 1):
            try:
                url = check_url(
                    url,
                    allow_private=self.s.fetch_allow_private,
                    allow_networks=self.s.fetch_allow_networks,
                )
            except UnsafeUrl as e:
                raise Fatal(e.code, e.message, {"hop": hop}) from None
            req = self.w.client.build_request("GET", url, headers=headers)
            # A head that trickles in is the low-speed limit's too (lowspeed.head_within).
            async with head_within(
                self.s.fetch_low_speed_bytes, self.s.fetch_timeout, self.s.fetch_low_speed_time
            ):
                resp = await self.w.client.send(req, stream=True)
            location = redirect_location(resp)
            if resp.status_code in (301, 302, 303, 307, 308) and location:
                await resp.aclose()
                if hop == MAX_REDIRECTS:
                    raise Fatal("too_many_redirects", f"more than {MAX_REDIRECTS} redirects", {})
                url = urljoin(url, location)
                continue
            return resp, url
        raise AssertionError("unreachable")

    async def _transfer(self) -> None:
        st = self.state
        # The owner's usage, read once per attempt (one query), not per piece. Fetches
        # running at once for one owner may each pass (usage counts files, not fetches
        # under way): the quota limits what a user keeps, as for uploads (api/limits.py).
        self.quota = self.s.quota_for(st.owner)
        self.used = await storage_used(self.w.store, st.owner) if self.quota > 0 else 0
        reused = await self._reuse()
        if reused is not None:
            await self._finish(digest=reused)
            return
        if st.segments:  # a split recorded earlier (a pause, a retry, a take-over)
            await fetch_segments.run_segments(self, None)
            await self._finish()
            return
        if st.total is not None and 0 < st.total == st.bytes:
            # A run that recorded the last byte died before completing. Asking for
            # `bytes=N-` now is unsatisfiable, and an origin may answer it with the whole
            # body (RFC 9110 lets it ignore Range): that restart would download and record
            # every byte a second time. What is held is what the dead run would have
            # completed with, so complete it.
            await self._finish()
            return
        if st.bytes > 0 and self.validator() is not None:
            headers, ranged = self.headers(st.bytes), True  # resume
        elif st.bytes == 0 and self.s.fetch_segments > 1:
            # The probe: a 206 with a length says the origin serves ranges (segments).
            headers, ranged = self.headers(0), True
        else:
            headers, ranged = self.headers(), False
        resp, url = await self.open(headers)
        try:
            await self._answer(resp, url, ranged)
        finally:
            await resp.aclose()

    async def _reuse(self) -> str | None:
        """Take the bytes of the owner's completed fetch of this URL, if this fetch may
        (handlers/fetch_reuse.py); once they are recorded as this fetch's, their sha256
        (the source's: the same pieces, so nothing is read again to hash them)."""
        source = await fetch_reuse.reusable_source(
            self.w.pool,
            self.w.store,
            self.w.blobs,
            self.state,
            now(),
            self.s.fetch_ttl,
            self.s.fetch_max_bytes,
        )
        if source is None or source.completed_sha256 is None:
            return None
        await self._cmd(
            RecordFetchResponse,
            runner=self.runner,
            restart=False,
            reason=f"reused the bytes of fetch {source.id}",
            etag=source.etag,
            last_modified=source.last_modified,
            total=source.bytes,
            content_type=source.content_type,
            file_name=source.file_name,
            accept_ranges=source.accept_ranges,
            content_encoding=source.content_encoding,
        )
        await self._cmd(AppendFetchBytes, runner=self.runner, offset=0, pieces=source.manifest())
        log.info("fetch reused", fetch=self.fetch_id, source=source.id, bytes=source.bytes)
        return source.completed_sha256

    async def _answer(self, resp: httpx.Response, url: str, ranged: bool) -> None:
        code = resp.status_code
        asked_from = self.state.bytes if ranged else 0
        h = resp.headers
        if code in (408, 429) or code >= 500:
            raise Retryable(f"origin answered {code}", origin.retry_after(h.get("retry-after")))
        validators = self.validators(resp, url)
        if code == 416 and ranged:
            length = origin.unsatisfied_length(h.get("content-range"))
            if length is not None and length == self.state.bytes:
                if length == 0:
                    # The probe of an empty resource (`bytes=0-` cannot be satisfied):
                    # record its name and type, then it is done.
                    await self._cmd(
                        RecordFetchResponse,
                        runner=self.runner,
                        restart=False,
                        **{**validators, "total": 0},
                    )
                await self._finish()  # we already hold every byte
                return
            await self._cmd(
                RecordFetchResponse,
                runner=self.runner,
                restart=True,
                reason="416 at the resume offset",
                **{**validators, "total": None},
            )
            raise Retryable("range not satisfiable: starting over")
        if code == 206:
            cr = origin.content_range(h.get("content-range"))
            changed = self.state.bytes > 0 and origin.another_representation(
                self.state.etag,
                self.state.last_modified,
                self.state.total,
                h.get("etag"),
                h.get("last-modified"),
                None if cr is None else cr[2],
            )
            if not ranged or cr is None or cr[0] != self.state.bytes or changed:
                # Another offset, or another version of the resource: never append.
                await self._cmd(
                    RecordFetchResponse,
                    runner=self.runner,
                    restart=True,
                    reason="206 at another offset or with another validator",
                    **{**validators, "total": None},
                )
                raise Retryable("the origin changed: starting over")
            total = cr[2]
            self._check_size(total)
            await self._cmd(
                RecordFetchResponse, runner=self.runner, restart=False, total=total, **validators
            )
        elif code == 200:
            length = h.get("content-length")
            total = int(length) if length and length.isdigit() else None
            self._check_size(total)
            await self._cmd(
                RecordFetchResponse,
                runner=self.runner,
                restart=self.state.bytes > 0,
                reason="200 to a resume: the origin ignores ranges or changed"
                if self.state.bytes
                else "",
                total=total,
                **validators,
            )
        else:
            raise Fatal(f"origin_{code}", f"origin answered {code}", {"status": code})
        if self.state.bytes != (asked_from if code == 206 else 0):
            # Someone else recorded bytes between our request and now: these bytes would
            # not continue the recorded ones. Ask again from the recorded offset.
            raise Retryable("the recorded offset moved under this request")
        if self.state.total is not None:
            self._check_quota(self.state.total)  # before the body, as for the limit
        if code == 206 and asked_from == 0 and await self._split():
            await fetch_segments.run_segments(self, resp)  # segment 0 reads this answer
            await self._finish()
            return
        await self._stream(resp)
        total = self.state.total
        if total is not None and self.state.bytes > total:
            raise Fatal("too_many_bytes", f"the origin sent more than its {total} bytes", {})
        if total is not None and self.state.bytes < total:
            raise Retryable(f"the body ended at {self.state.bytes} of {total} bytes")
        await self._finish()

    def _check_size(self, total: int | None) -> None:
        """Fail the fetch if the origin announces more than CAIRN_FETCH_MAX_BYTES, before
        that length is recorded: an origin may announce any number (a Content-Range is
        not bounded at all), and one past 64 bits cannot travel in a command or an event."""
        if total is not None and total > self.s.fetch_max_bytes:
            details: dict[str, object] = {"max_bytes": self.s.fetch_max_bytes}
            if total <= _INT64_MAX:  # the announced length only if it is a 64-bit size
                details["total"] = total
            raise Fatal(
                "fetch_too_large", f"the resource is {total} bytes, over the limit", details
            )

    async def _split(self) -> bool:
        """Record a segment split of the (empty) body if it is worth one and safe: a known
        length of two segments or more, and a validator for If-Range (without one, a
        changed origin could not be told apart and segments of two versions would mix)."""
        st = self.state
        if st.total is None or st.bytes != 0 or self.validator() is None:
            return False
        bounds = fetch_segments.plan(st.total, self.s.fetch_segments, self.s.fetch_segment_min)
        if not bounds:
            return False
        await self._cmd(
            PlanFetchSegments, runner=self.runner, plan=uuid.uuid4().hex[:12], bounds=bounds
        )
        return bool(self.state.segments)

    async def _stream(
        self, resp: httpx.Response, segment: int | None = None, cap: int | None = None
    ) -> None:
        """Body -> blobs of at most chunk_bytes (or one second's worth), recorded ~1/s.
        With `segment`, the pieces continue that segment, and at most `cap` bytes are read
        (the rest of the answer, if any, is not this segment's)."""
        source = resp.aiter_raw()
        remaining = cap
        leftover = b""
        ended = False
        # A broken body (reset, timeout, early close) ends the piece being written normally,
        # so every byte that arrived is kept and recorded; the error is raised after that.
        broken: Exception | None = None
        # The low-speed limit, per connection: for a segmented fetch, per segment, as aria2
        # checks each connection. What trickles is one connection (a stuck path, one slow
        # server behind a balancer); its segment is retried on a new one on its own while
        # the others go on. A rate of the fetch as a whole would hide one stuck segment
        # behind fast ones until they finished. Once below it, nothing more is asked of
        # the origin: what came is stored and recorded, then the attempt ends TooSlow.
        meter = LowSpeed(self.s.fetch_low_speed_bytes, self.s.fetch_low_speed_time)
        slow: TooSlow | None = None
        pending: list[dict[str, Any]] = []
        pending_bytes = 0
        last_record = time.monotonic()
        limit = self.s.fetch_max_bytes
        total = self.state.total if segment is None else None  # a segment has its cap

        async def piece() -> AsyncIterator[bytes]:
            nonlocal leftover, ended, broken, remaining, slow
            budget = self.s.fetch_chunk_bytes
            if remaining is not None:
                budget = min(budget, remaining)
            if self.quota > 0:
                # At most one byte past what the quota leaves: a body going over it is cut
                # off there (_check_quota below), not a whole piece (8 MiB) later.
                left = self.quota - self.used - self.state.bytes - pending_bytes
                budget = min(budget, max(0, left) + 1)
            started = time.monotonic()
            while budget > 0:
                if leftover:
                    data, leftover = leftover, b""
                elif slow is not None:
                    broken = slow
                    ended = True
                    return
                else:
                    meter.waiting()
                    try:
                        data = await anext(source)
                    except StopAsyncIteration:
                        ended = True
                        return
                    except (httpx.HTTPError, OSError) as e:
                        broken = e
                        ended = True
                        return
                    slow = meter.arrived(len(data))
                if len(data) > budget:
                    data, leftover = data[:budget], data[budget:]
                budget -= len(data)
                if remaining is not None:
                    remaining -= len(data)
                await self.rate.take(len(data))
                await self.w.global_rate.take(len(data))
                yield data
                if time.monotonic() - started >= RECORD_EVERY:
                    return

        while not ended:
            if remaining == 0:
                ended = True  # the segment is full: what follows is not its bytes
                break
            sha, size = await self.w.blobs.put_stream(piece())
            if size:
                pending.append({"sha256": sha, "size": size})
                pending_bytes += size
                if self.state.bytes + pending_bytes > limit:
                    raise Fatal(
                        "fetch_too_large",
                        f"the body is over {limit} bytes",
                        {"max_bytes": limit},
                    )
                # Past the announced length (a 206's Content-Range, which does not frame
                # the body as a Content-Length does): cut off now, nothing more recorded.
                if total is not None and self.state.bytes + pending_bytes > total:
                    raise Fatal(
                        "too_many_bytes", f"the origin sent more than its {total} bytes", {}
                    )
                # A body of no announced length (or one longer than announced) is cut
                # off once past the quota (a byte past it: the piece's budget above), not
                # downloaded whole to be refused at the end.
                self._check_quota(self.state.bytes + pending_bytes)
            if pending and (
                ended or remaining == 0 or time.monotonic() - last_record >= RECORD_EVERY
            ):
                await self._record(segment, pending)
                pending, pending_bytes = [], 0
                last_record = time.monotonic()
        if broken is not None:
            raise broken

    async def _record(self, segment: int | None, pieces: list[dict[str, Any]]) -> None:
        st = self.state
        if segment is None:
            await self._cmd(AppendFetchBytes, runner=self.runner, offset=st.bytes, pieces=pieces)
            return
        if st.plan is None or segment >= len(st.segments):
            raise StartOver("the segment split was dropped")
        await self._cmd(
            AppendFetchSegmentBytes,
            runner=self.runner,
            plan=st.plan,
            segment=segment,
            offset=st.segments[segment].offset,
            pieces=pieces,
        )

    def _check_quota(self, size: int) -> None:
        """Fail the fetch if a file of `size` bytes would take its owner over their quota
        (CAIRN_QUOTA_BYTES / CAIRN_QUOTAS), with the same details as an upload's 413."""
        if (details := over_quota(self.quota, self.used, size)) is not None:
            raise Fatal(
                "quota_exceeded",
                f"{QUOTA_EXCEEDED}: {self.used} bytes used + {size} > {self.quota}",
                dict(details),
            )

    async def _finish(self, digest: str | None = None) -> None:
        """Complete the fetch with what it holds; `digest` when its sha256 is known already.

        The last gate of the quota (reused bytes, a take-over's bytes): checked against what
        the owner uses now, and held (projections.usage.reserve) until the files read model
        has the fetch's file, so that uploads and other fetches of the owner deciding
        meanwhile see these bytes."""
        st = self.state
        if st.total is not None and st.bytes != st.total:
            raise Retryable(f"holding {st.bytes} of {st.total} bytes")
        if self.quota <= 0 or st.bytes <= 0:
            await self._complete(digest)
            return
        rid, details, used = await reserve(self.w.store, st.owner, self.quota, st.bytes)
        if details is not None or rid is None:
            self.used = used
            self._check_quota(st.bytes)  # raises, with the figures of now
        assert rid is not None
        made: str | None = None
        try:
            await self._complete(digest)
            made = fetch_result_file_id(self.state)
        finally:
            await asyncio.shield(release(self.w.store.pool, rid, made))

    async def _complete(self, digest: str | None) -> None:
        st = self.state
        # Asked first: hashing a big file for a bucket that is gone would be for nothing.
        if await bucket_gone(self.w.store, st.bucket, st.owner, st.created_at):
            # Deleted while the bytes came (or made again by someone else since): the
            # fetch makes nothing there; its bytes are left to the blob collector.
            raise Fatal("bucket_not_found", "the fetch's bucket is gone", {"bucket": st.bucket})
        manifest = [(sha, n) for sha, n in st.pieces]
        if digest is None:
            digest = await hash_manifest(self.w.blobs, manifest)
        if st.sha256 is not None and digest != st.sha256:
            raise Fatal(
                "sha256_mismatch",
                f"sha256 mismatch: declared {st.sha256}, fetched {digest}",
                {"declared": st.sha256, "actual": digest},
            )
        file_id = fetch_result_file_id(st)
        name = st.file_name or "download"
        content_type = await content_type_of(self.w.blobs, manifest, name, st.stored_type)
        # With the detected type the actor creates a plain file in the same step as the
        # completion (domain.policies.follow_ups): once the fetch reads COMPLETED its file
        # exists, even if this worker dies right after. An object's put (a fetch naming a
        # key) stays with the key's own actor: it is sent here, and by the handlers.
        done = await self._cmd(
            CompleteFetch,
            runner=self.runner,
            sha256=digest,
            size=st.bytes,
            file_id=file_id,
            file_content_type=content_type,
        )
        if done.followed_by(fetch_file_command_id(self.fetch_id)):
            return
        # Timed as the completion, like the actor's and the handler's: the same command.
        create = file_from_fetch(self.state, content_type, self.state.updated_at)
        assert self.w.bus is not None and create is not None
        try:
            await self.w.bus.send(create)
        except DomainError as e:
            # file_exists: the handlers created it first, the same file. (An object's put
            # is not refused when sent twice: its command id makes it applied once.)
            if e.code != "file_exists":
                raise
