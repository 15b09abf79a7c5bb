"""The fetch worker process (`cairn run fetcher`): downloads requested URLs into files.

A process kind of its own (not part of `handlers`) because it is bound by bandwidth and
connections, not by events: it scales by running more of them, on any host, and killing
one loses at most the bytes it had not yet recorded.

A new fetch is claimed at once: the worker LISTENs for the projector's changes to
readmodel.fetches and looks when one arrives, and otherwise polls every POLL_EVERY seconds
(bus/store/pickup.py).

Who runs what: workers claim runnable fetches (read model status PENDING or IN_PROGRESS)
through leases in `work.fetch_leases`, renewed every lease/3 seconds. A worker that dies
stops renewing, and after CAIRN_FETCH_LEASE seconds another (or the restarted one) takes
the fetch over: it sends StartFetch with a new runner id, which makes the aggregate refuse
anything the old run might still try to record, and resumes from the last recorded byte.
So a fetch is never IN_PROGRESS for longer than a lease without a live worker.

The body streams into content-addressed blobs (CAIRN_FETCH_CHUNK_BYTES each, or less when
a second passes first, so slow origins still make durable progress) and the pieces are
recorded at most about once a second: the recorded pieces are exactly the durable prefix
a resume continues from (`Range: bytes=N-` with `If-Range`). Pause and cancel are seen
within half a second by polling the fetch's stream for new events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import asyncpg
import httpx

from bus.actors.commandbus import BusUnavailable, CommandBus, CommandResult
from bus.actors.wake import Nudger
from bus.aio import BoundedLRU
from bus.blobs.factory import open_blob_store
from bus.blobs.manifests import hash_manifest
from bus.blobs.sniff import content_type_of
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.fetch import origin
from bus.fetch.origin import Fatal, Retryable, StartOver
from bus.fetch.ssrf import UnsafeUrl, check_url, guarded_client, redirect_location
from bus.store.eventstore import PostgresEventStore
from bus.store.pickup import FETCHES_CHANGED, Pickup
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
    StartFetch,
)
from domain.errors import DomainError
from domain.policies import fetch_file_command_id, fetch_result_file_id, file_from_fetch
from handlers import fetch_reuse, fetch_segments

log = get_logger(__name__)

MAX_REDIRECTS = 5
RECORD_EVERY = 1.0  # seconds between progress events of one fetch (at most about)
WATCH_EVERY = 0.5  # seconds between looks for pause / cancel / take-over
# Seconds between looks for new fetches without a notification (bus/store/pickup.py: a
# new fetch wakes the worker at once); finds fetches whose lease ran out (a dead worker).
POLL_EVERY = 0.5
MAX_CRASHES = 3  # runs of one fetch crashing in a row before it is failed (_after_crash)
_CLAIM_LOCK = 727_300  # advisory lock: claims are serialised so concurrency limits hold


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


class Fetcher:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.store = PostgresEventStore(pool)
        self.blobs = open_blob_store(settings.blobs_url, settings)
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # Runs of a fetch that crashed in a row, in this worker (see _after_crash).
        self.crashes: BoundedLRU[str, int] = BoundedLRU(4096)
        self.global_rate = RateLimiter(settings.fetch_rate)
        self.bus: CommandBus | None = None
        self.client: httpx.AsyncClient | None = None

    # ---- the loop: claim, renew, release ---------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.bus = CommandBus(s, nudge=Nudger(self.pool), pool=self.pool)
        await self.bus.start()
        self.client = guarded_client(
            allow_private=s.fetch_allow_private,
            allow_networks=s.fetch_allow_networks,
            timeout=httpx.Timeout(s.fetch_timeout, connect=min(10.0, s.fetch_timeout)),
        )
        pickup = Pickup(s.database_url or "", POLL_EVERY, FETCHES_CHANGED)
        pickup.start()
        log.info("fetch worker started", holder=self.holder)
        last_renew = 0.0
        try:
            while not stop.is_set():
                renew_in: float | None = None
                try:
                    if time.monotonic() - last_renew >= s.fetch_lease / 3:
                        await self._renew()
                        last_renew = time.monotonic()
                    free = s.fetch_concurrency - len(self.tasks)
                    if free > 0:
                        for fetch_id in await self._claim(free):
                            if fetch_id in self.tasks:
                                continue  # ours already (a renewal came late): keep that run
                            task = asyncio.create_task(
                                self._run(fetch_id), name=f"fetch-{fetch_id}"
                            )
                            # A slot comes free: look for the next fetch at once.
                            task.add_done_callback(lambda _t: pickup.nudge())
                            self.tasks[fetch_id] = task
                    if self.tasks:
                        renew_in = last_renew + s.fetch_lease / 3 - time.monotonic()
                except (OSError, asyncpg.PostgresError) as e:
                    # Retried at the next poll (not sooner: the database is down).
                    log.warning("fetch worker: database unavailable", error=str(e))
                # Until new work is announced, the next poll, or the next lease renewal.
                await pickup.wait(stop, renew_in)
        finally:
            await pickup.stop()
            for task in self.tasks.values():
                task.cancel()
            for task in list(self.tasks.values()):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            # Released, not left to expire: a restarted worker takes over at once.
            with contextlib.suppress(Exception):
                await self.pool.execute(
                    "DELETE FROM work.fetch_leases WHERE holder = $1", self.holder
                )
            await self.client.aclose()
            await self.bus.stop()
            await self.blobs.close()

    async def _claim(self, n: int) -> list[str]:
        s = self.settings
        # A cheap look first (a partial index): idle workers take no lock and no transaction.
        if not await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM readmodel.fetches f"
            " LEFT JOIN work.fetch_leases l ON l.fetch_id = f.id"
            " WHERE f.status IN ('PENDING', 'IN_PROGRESS')"
            "   AND (l.fetch_id IS NULL OR l.lease_until < now()))"
        ):
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialised so two workers never both see room under a limit and both take it.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _CLAIM_LOCK)
            rows = await conn.fetch(
                "SELECT f.id, f.owner FROM readmodel.fetches f"
                " LEFT JOIN work.fetch_leases l ON l.fetch_id = f.id"
                " WHERE f.status IN ('PENDING', 'IN_PROGRESS')"
                "   AND (l.fetch_id IS NULL OR l.lease_until < now())"
                " ORDER BY f.created_at LIMIT $1",
                max(n, 1) * 4,
            )
            if not rows:
                return []
            held = await conn.fetch(
                "SELECT owner, count(*) AS n FROM work.fetch_leases"
                " WHERE lease_until >= now() GROUP BY owner"
            )
            per_owner = {r["owner"]: int(r["n"]) for r in held}
            running = sum(per_owner.values())
            claimed: list[str] = []
            for r in rows:
                if len(claimed) >= n or running >= s.fetch_concurrency:
                    break
                if per_owner.get(r["owner"], 0) >= s.fetch_per_owner:
                    continue
                await conn.execute(
                    "INSERT INTO work.fetch_leases (fetch_id, owner, holder, lease_until)"
                    " VALUES ($1, $2, $3, now() + make_interval(secs => $4))"
                    " ON CONFLICT (fetch_id) DO UPDATE SET holder = $3, owner = $2,"
                    " lease_until = now() + make_interval(secs => $4)",
                    r["id"],
                    r["owner"],
                    self.holder,
                    s.fetch_lease,
                )
                per_owner[r["owner"]] = per_owner.get(r["owner"], 0) + 1
                running += 1
                claimed.append(str(r["id"]))
            return claimed

    async def _renew(self) -> None:
        if self.tasks:
            await self.pool.execute(
                "UPDATE work.fetch_leases SET lease_until = now() + make_interval(secs => $2)"
                " WHERE holder = $1",
                self.holder,
                self.settings.fetch_lease,
            )

    async def _release(self, fetch_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.pool.execute(
                "DELETE FROM work.fetch_leases WHERE fetch_id = $1 AND holder = $2",
                uuid.UUID(fetch_id),
                self.holder,
            )

    # ---- one fetch --------------------------------------------------------------------

    async def _send(self, cmd: Command) -> CommandResult:
        assert self.bus is not None
        return await self.bus.send(cmd)

    async def _run(self, fetch_id: str) -> None:
        runner = f"{self.holder}-{uuid.uuid4().hex[:8]}"
        owner: str | None = None  # known once the fetch is read
        try:
            stream_id = f"fetch-{fetch_id}"
            events = await self.store.read_stream(stream_id)
            state: f.FetchState | None = f.AGGREGATE.fold(events)
            if state is None or state.status not in f.RUNNABLE:
                return
            owner = state.owner
            await self._send(
                StartFetch(aggregate_id=fetch_id, caller=state.owner, at=_now(), runner=runner)
            )
            run = _Run(self, fetch_id, runner)
            await run.execute()
            self.crashes.pop(fetch_id)
        except (DomainError, BusUnavailable) as e:
            log.info("fetch run ended", fetch=fetch_id, reason=str(e))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("fetch run crashed", fetch=fetch_id)
            try:
                await self._after_crash(fetch_id, owner, runner, e)
            except Exception as failed:  # the store or the bus down: the next crash counts
                log.warning("crashed fetch not failed", fetch=fetch_id, error=repr(failed))
        finally:
            self.tasks.pop(fetch_id, None)
            await self._release(fetch_id)

    async def _after_crash(
        self, fetch_id: str, owner: str | None, runner: str, error: Exception
    ) -> None:
        """A run that crashed (a bug, or input nothing foresaw) is picked up again at once;
        the same crash MAX_CRASHES times in a row fails the fetch, naming the error, so
        that it neither spins for ever nor hides from its owner (who may retry it)."""
        crashes = (self.crashes.get(fetch_id) or 0) + 1
        self.crashes[fetch_id] = crashes
        if crashes < MAX_CRASHES or owner is None:  # (None: it crashed reading the fetch)
            return
        self.crashes.pop(fetch_id)
        with contextlib.suppress(DomainError, BusUnavailable):
            await self._send(
                FailFetch(
                    aggregate_id=fetch_id,
                    caller=owner,
                    at=_now(),
                    runner=runner,
                    error=f"the fetch worker failed {crashes} times: {type(error).__name__}",
                    details={"code": "worker_failed", "crashes": crashes},
                )
            )


def _now() -> datetime:
    return datetime.now(UTC)


class _Run:
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
        cmd = cmd_type(aggregate_id=self.fetch_id, caller=self.state.owner, at=_now(), **kw)
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
            attempt += 1
            if attempt > self.s.fetch_retries:
                with contextlib.suppress(Halted):
                    await self._cmd(
                        FailFetch,
                        runner=self.runner,
                        error=f"gave up after {attempt} attempts: {error}",
                        details={"code": "retries_exhausted", "attempts": attempt},
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
            "etag": h.get("etag"),
            "last_modified": h.get("last-modified"),
            "content_type": h.get("content-type"),
            "file_name": origin.file_name(resp, url),
            "accept_ranges": "bytes" in (h.get("accept-ranges") or "").lower(),
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
            _now(),
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
            changed = self.state.etag is not None and h.get("etag") not in (None, self.state.etag)
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
            await self._cmd(
                RecordFetchResponse, runner=self.runner, restart=False, total=total, **validators
            )
        elif code == 200:
            length = h.get("content-length")
            total = int(length) if length and length.isdigit() else None
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
        if self.state.total is not None and self.state.total > self.s.fetch_max_bytes:
            raise Fatal(
                "fetch_too_large",
                f"the resource is {self.state.total} bytes, over the limit",
                {"max_bytes": self.s.fetch_max_bytes, "total": self.state.total},
            )
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
        pending: list[dict[str, Any]] = []
        pending_bytes = 0
        last_record = time.monotonic()
        limit = self.s.fetch_max_bytes

        async def piece() -> AsyncIterator[bytes]:
            nonlocal leftover, ended, broken, remaining
            budget = self.s.fetch_chunk_bytes
            if remaining is not None:
                budget = min(budget, remaining)
            started = time.monotonic()
            while budget > 0:
                if leftover:
                    data, leftover = leftover, b""
                else:
                    try:
                        data = await anext(source)
                    except StopAsyncIteration:
                        ended = True
                        return
                    except (httpx.HTTPError, OSError) as e:
                        broken = e
                        ended = True
                        return
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

    async def _finish(self, digest: str | None = None) -> None:
        """Complete the fetch with what it holds; `digest` when its sha256 is known already."""
        st = self.state
        if st.total is not None and st.bytes != st.total:
            raise Retryable(f"holding {st.bytes} of {st.total} bytes")
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
        content_type = await content_type_of(
            self.w.blobs, manifest, name, (st.content_type or "").split(";")[0].strip()
        )
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
