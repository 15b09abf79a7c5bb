"""Waking idle consumers, so that an idle system does not poll the broker many times a second.

The embedded broker holds every fetch until its deadline, so a consumer that must see a
message within milliseconds fetches every 10 ms, busy or idle, and even the background
consumers (projector, handlers) fetched every 200 ms: on an idle `cairn up` that was most
of its CPU, in the broker as much as in the clients (measured: one consumer fetching every
200 ms costs the embedded broker about 1 % of a core, every 10 ms about 7 %; a paused one,
heartbeats included, nothing). Instead an `IdleGate` beside each consumer:

- stops fetching (pauses its partitions) after `IDLE_AFTER` seconds without work, and
  LISTENs on a Postgres channel;
- resumes fetching at once on a notification on that channel, in parallel with the message
  on its way through Kafka, so the first message after an idle spell is not slower;
- still finds a message nobody announced (a process without a database, a lost
  notification, a relay that took longer than `IDLE_AFTER` to publish): a paused consumer
  peeks at its partitions every `peek_every` seconds.

Two channels:

- `CHANNEL` (commands): whoever sends a command calls a `Nudger` first, which NOTIFYs it
  (at most once per `NUDGE_EVERY` seconds per process: a host woken by a nudge stays
  awake `IDLE_AFTER` seconds after its last command, longer than the gap between two
  nudges). The actor host peeks every `PEEK_EVERY` seconds. Readiness probes are
  deliberately not announced and do not keep the host awake, so that a load balancer
  polling /ready does not turn the polling back on; they are answered at the next peek.
- the event store's `cairn_events` (bus/store/eventstore.py), NOTIFYed by every append:
  the projector and the handlers wake when an event is appended, milliseconds before the
  relay publishes it, and peek every `PEEK_EVERY_BACKGROUND` seconds.

Without a working LISTEN connection a consumer simply never pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from bus.aio import sleep_unless_stopped
from bus.config.logs import get_logger

log = get_logger(__name__)

CHANNEL = "cairn_commands"
IDLE_AFTER = 2.0
NUDGE_EVERY = 0.5
PEEK_EVERY = 1.0
# Background consumers (projector, handlers) are woken by every append; a peek only matters
# when the relay took longer than IDLE_AFTER to publish (Kafka down, a standby taking over).
PEEK_EVERY_BACKGROUND = 2.0
# getmany timeouts: awake, the loop looks at the clock this often; peeking, one or two
# fetches of the embedded broker's 10 ms wait are enough to see a waiting command.
AWAKE_POLL_MS = 200
PEEK_POLL_MS = 50


class Nudger:
    """The sender's side: NOTIFY the actor hosts that a command is coming."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._last = float("-inf")
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < NUDGE_EVERY:
            return
        self._last = now
        # Not awaited: the command goes to Kafka meanwhile, the host wakes in parallel.
        task = asyncio.create_task(self._notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        try:
            await self.pool.execute("SELECT pg_notify($1, '')", CHANNEL)
        except Exception as e:  # the host's peek still finds the command
            self._last = float("-inf")
            log.debug("actor nudge failed", error=repr(e))


class IdleGate:
    """The consumer's side: pause fetching when idle, resume on a notification or to peek.

    `channel` is the Postgres channel to LISTEN on; `peek_every` how often a paused
    consumer looks anyway (None: `PEEK_EVERY`, read at each pause so tests can shorten it);
    `peek_ms` how long a peek keeps fetching (a few fetch waits of the consumer).
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        channel: str = CHANNEL,
        *,
        peek_every: float | None = None,
        peek_ms: int = PEEK_POLL_MS,
    ) -> None:
        self.consumer = consumer
        self.channel = channel
        self._peek_every = peek_every
        self._peek_ms = peek_ms
        self._nudged = asyncio.Event()
        self._awake_until = time.monotonic() + IDLE_AFTER
        self._paused = False
        self._peeking = False
        self._conn: Any = None
        self._listening = False

    async def listen(self, pool: asyncpg.Pool) -> None:
        """LISTEN on a connection of its own; without it the host never pauses."""
        try:
            self._conn = await pool.acquire()
            await self._conn.add_listener(self.channel, self._on_notify)
            self._conn.add_termination_listener(self._on_lost)
            self._listening = True
        except Exception as e:
            log.warning("consumer cannot LISTEN for wake-ups; it will not pause", error=repr(e))
            await self.close(pool)

    async def close(self, pool: asyncpg.Pool) -> None:
        self._listening = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.remove_listener(self.channel, self._on_notify)
            with contextlib.suppress(Exception):
                await pool.release(conn)

    def _on_notify(self, *_: object) -> None:
        self._nudged.set()

    def _on_lost(self, *_: object) -> None:
        # No more nudges can arrive: stay awake from now on.
        log.warning("consumer lost its LISTEN connection; it will not pause")
        self._listening = False
        self._nudged.set()

    @property
    def poll_ms(self) -> int:
        return self._peek_ms if self._peeking else AWAKE_POLL_MS

    async def wait_for_work(self, stop: asyncio.Event) -> None:
        """Before a poll: if paused, sleep until a nudge, the next peek, or stop."""
        if self._paused:
            waits = {asyncio.ensure_future(self._nudged.wait()), asyncio.ensure_future(stop.wait())}
            _, pending = await asyncio.wait(
                waits,
                timeout=PEEK_EVERY if self._peek_every is None else self._peek_every,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for w in pending:
                w.cancel()
            self._peeking = not self._nudged.is_set()
            self.consumer.resume(*self.consumer.assignment())
            self._paused = False
        if self._nudged.is_set():
            self._nudged.clear()
            self._peeking = False
            self._awake_until = time.monotonic() + IDLE_AFTER

    def after_poll(self, got_commands: bool) -> None:
        now = time.monotonic()
        if got_commands:
            self._peeking = False
            self._awake_until = now + IDLE_AFTER
        elif self._listening and (self._peeking or now >= self._awake_until):
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True
            self._peeking = False

    async def drive(self, stop: asyncio.Event, activity: Callable[[], int]) -> None:
        """Run the gate beside a subscriber's own poll loop (FastStream's) until `stop`.

        Its "poll" is a window of `poll_ms`; there was work when `activity()` (a counter the
        handler bumps at the start and the end of every batch with real work) changed
        within that window.
        """
        while not stop.is_set():
            await self.wait_for_work(stop)
            seen = activity()
            if await sleep_unless_stopped(stop, self.poll_ms / 1000):
                return
            self.after_poll(activity() != seen)
