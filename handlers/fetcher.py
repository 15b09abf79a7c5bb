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

One claimed fetch is one run (handlers/fetch_run.py): the body streams into
content-addressed blobs (CAIRN_FETCH_CHUNK_BYTES each, or less when a second passes first,
so slow origins still make durable progress) and the pieces are recorded at most about
once a second: the recorded pieces are exactly the durable prefix a resume continues from
(`Range: bytes=N-` with `If-Range`). Pause and cancel are seen within half a second by
polling the fetch's stream for new events.

A fetch whose stream (or a command's target stream) holds an event of a newer schema
version than this code reads (a rolling upgrade, or a rollback: `upgrade_in_progress`)
is given back and not claimed again by this worker for 1 s, then 2, 4... up to 30 s
(handlers/held.py), until a worker of the new version takes it; logged once per event type
and version, counted in `cairn_handler_events_held{worker="fetcher"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid

import asyncpg
import httpx

from bus.actors.commandbus import BusUnavailable, CommandBus, CommandResult
from bus.actors.wake import Nudger
from bus.aio import BoundedLRU
from bus.blobs.factory import open_blob_store
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.fetch.ssrf import guarded_client
from bus.store.eventstore import PostgresEventStore
from bus.store.pickup import FETCHES_CHANGED, Pickup
from domain import fetches as f
from domain.commands import (
    Command,
    FailFetch,
    StartFetch,
)
from domain.errors import DomainError
from handlers.fetch_run import FetchRun, RateLimiter, now
from handlers.held import Holds, upgrade_in_progress

log = get_logger(__name__)

# Seconds between looks for new fetches without a notification (bus/store/pickup.py: a
# new fetch wakes the worker at once); finds fetches whose lease ran out (a dead worker).
POLL_EVERY = 0.5
MAX_CRASHES = 3  # runs of one fetch crashing in a row before it is failed (_after_crash)
_CLAIM_LOCK = 727_300  # advisory lock: claims are serialised so concurrency limits hold


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
        # Fetches waiting for a newer version of Cairn (not claimed until due).
        self.holds = Holds("fetcher")
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
                    self.holds.prune()
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
        # Held for a newer version (see the module's docstring): not claimed until due.
        waiting = [uuid.UUID(k) for k in self.holds.waiting()]
        # A cheap look first (a partial index): idle workers take no lock and no transaction.
        if not await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM readmodel.fetches f"
            " LEFT JOIN work.fetch_leases l ON l.fetch_id = f.id"
            " WHERE f.status IN ('PENDING', 'IN_PROGRESS')"
            "   AND (l.fetch_id IS NULL OR l.lease_until < now())"
            "   AND f.id <> ALL($1::uuid[]))",
            waiting,
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
                "   AND f.id <> ALL($2::uuid[])"
                " ORDER BY f.created_at LIMIT $1",
                max(n, 1) * 4,
                waiting,
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
        attempt = self.holds.attempt(fetch_id, "fetch")
        try:
            stream_id = f"fetch-{fetch_id}"
            events = await self.store.read_stream(stream_id)
            state: f.FetchState | None = f.AGGREGATE.fold(events)
            if state is None or state.status not in f.RUNNABLE:
                return
            owner = state.owner
            await self._send(
                StartFetch(aggregate_id=fetch_id, caller=state.owner, at=now(), runner=runner)
            )
            run = FetchRun(self, fetch_id, runner)
            await run.execute()
            self.crashes.pop(fetch_id)
        except (DomainError, BusUnavailable) as e:
            if upgrade_in_progress(e):
                # Given back, tried again after a back-off (a worker of the new version
                # may take it meanwhile): logged once per event type and version.
                assert isinstance(e, DomainError)
                attempt.hold(e)
            else:
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
            attempt.end()
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
                    at=now(),
                    runner=runner,
                    error=f"the fetch worker failed {crashes} times: {type(error).__name__}",
                    details={"code": "worker_failed", "crashes": crashes},
                )
            )
