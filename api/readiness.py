"""What `/ready` means: a command can be served now, end to end.

Reachable Postgres and Kafka are not enough (after a start the API answered ready seconds
before the actor host consumed anything). Ready means:

- actors: a probe went through the command topic, the actor host and the reply topic
  (`CommandBus.probe`), which also proves Kafka and this process's reply consumer;
- relay: a relay holds the leader lock (bus/store/relay.py), so new events reach Kafka;
- projector: a projector process is connected to this database (its connections carry the
  application_name `cairn-projector`, see bus/run/processes.py), so read models follow, and
  it is not held before an event of a newer schema version than it reads (a rolling
  upgrade in progress: `readmodel.schema_holds`, projections/holds.py);
- postgres and the blob store answer.

That is the whole system's readiness (`/ready`). `/ready?scope=process` is this API
process's own (`Readiness(process=True)`): what it needs to serve reads and downloads, which
do not go through the actors: postgres and the blob store answer and its Kafka producer
reaches the broker (`kafka`). Behind a load balancer or a Kubernetes Service, probe that
one: when the shared actor host is down every replica fails `/ready` at once, and reads
would fail with it.

The answer is cached briefly (a success for `OK_FOR` seconds, a failure for `FAIL_FOR`):
load balancers and `cairn up` poll /ready, and each check costs a command round trip.

A failed check answers its cause in a few words: the exception's `reason` when it has one
(the blob store's names the setting to check, never a value: /ready is public), else its
type. The full message is logged ("not ready"), once when a check starts failing or fails
differently, not at every poll.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from api.context import AppContext
from bus.config.logs import get_logger
from bus.run.processes import application_name
from bus.store.relay import RELAY_LOCK
from projections.holds import UNRESOLVED_COUNT

log = get_logger(__name__)

OK_FOR = 1.5
FAIL_FOR = 0.25
CHECK_TIMEOUT = 5.0

_PG_CHECK = f"""
SELECT
  EXISTS (SELECT 1 FROM pg_locks
          WHERE locktype = 'advisory' AND classid = $1::int::oid AND objsubid = 2 AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
    AS relay,
  EXISTS (SELECT 1 FROM pg_stat_activity
          WHERE application_name = $2 AND datname = current_database()) AS projector,
  ({UNRESOLVED_COUNT}) AS held
"""


class Readiness:
    def __init__(self, process: bool = False) -> None:
        self._process = process
        self._checked_at = 0.0
        self._result: tuple[bool, dict[str, str]] = (False, {})
        self._lock = asyncio.Lock()

    async def check(self, c: AppContext) -> tuple[bool, dict[str, str]]:
        # One check at a time: concurrent pollers share it instead of each sending a probe.
        async with self._lock:
            ok, _ = self._result
            if time.monotonic() - self._checked_at < (OK_FOR if ok else FAIL_FOR):
                return self._result
            before = self._result[1]
            ok, checks, errors = await (self._run_process(c) if self._process else self._run(c))
            for name, error in errors.items():
                if before.get(name) != checks[name]:  # newly failing, or differently
                    log.warning("not ready", check=name, error=error)
            self._result = (ok, checks)
            self._checked_at = time.monotonic()
            return self._result

    @staticmethod
    async def _run_process(c: AppContext) -> tuple[bool, dict[str, str], dict[str, str]]:
        checks: dict[str, str] = {}
        errors: dict[str, str] = {}
        check = _checker(checks, errors)
        await asyncio.gather(
            check("postgres", c.pool.fetchval("SELECT 1")),
            check("blob_store", c.blobs.ping(), _blob_setting(c)),
            check("kafka", c.bus.ping()),
        )
        return all(v == "ok" for v in checks.values()), checks, errors

    @staticmethod
    async def _run(c: AppContext) -> tuple[bool, dict[str, str], dict[str, str]]:
        checks: dict[str, str] = {}
        errors: dict[str, str] = {}
        check = _checker(checks, errors)
        row, *_ = await asyncio.gather(
            check(
                "postgres",
                c.pool.fetchrow(_PG_CHECK, RELAY_LOCK, application_name("projector")),
            ),
            check("actors", c.bus.probe(CHECK_TIMEOUT)),
            check("blob_store", c.blobs.ping(), _blob_setting(c)),
        )
        if row is not None:
            checks["relay"] = "ok" if row["relay"] else "error: no relay is publishing"
            checks["projector"] = (
                "error: no projector is running"
                if not row["projector"]
                else f"error: held at {row['held']} event(s) of a newer schema version than"
                " it reads (upgrade in progress?)"
                if row["held"]
                else "ok"
            )
        return all(v == "ok" for v in checks.values()), checks, errors


def _blob_setting(c: AppContext) -> str:
    """The setting to check when the blob store does not answer at all."""
    return "CAIRN_S3_ENDPOINT" if c.settings.blobs_url.startswith("s3://") else "CAIRN_BLOB_STORE"


def _checker(checks: dict[str, str], errors: dict[str, str]) -> Any:
    """A check runner recording into `checks` (ok or the cause in a few words) and
    `errors` (the full message, for the log)."""

    async def check(name: str, coro: Any, setting: str | None = None) -> Any:
        bound = asyncio.timeout(CHECK_TIMEOUT)
        try:
            async with bound:
                result = await coro
            checks[name] = "ok"
            return result
        except TimeoutError as e:
            if not bound.expired():
                return failed(name, e)
            # Its own words (a bare TimeoutError said nothing), and the setting to check.
            why = f"no answer within {CHECK_TIMEOUT:g} s" + (f" ({setting})" if setting else "")
            checks[name] = f"error: {why}"
            errors[name] = f"TimeoutError: {why}"
            return None
        except Exception as e:
            return failed(name, e)

    def failed(name: str, e: Exception) -> None:
        checks[name] = f"error: {getattr(e, 'reason', None) or type(e).__name__}"
        errors[name] = f"{type(e).__name__}: {e}"[:500]

    return check
