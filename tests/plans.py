"""The plans PostgreSQL runs, as the server's auto_explain logs them, for tests that must
fail when a statement's cost starts to grow with a table (issue 13).

A plan, not a time: a test asserts which nodes a statement ran (no sequential scan of a
table that keeps growing), which does not depend on the machine's speed. The pool's
connections load auto_explain and send every plan (nested statements of PL/pgSQL
functions included) to the client as a NOTICE, collected in `Plans.texts`."""

from __future__ import annotations

import re
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from bus.store import db

# Each a plan of its own: auto_explain settings per session (the test server's user is a
# superuser, which session_preload_libraries needs).
_SETTINGS = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_level": "notice",
    # The worst case a long-lived session meets: each statement (a PL/pgSQL function's
    # included) planned once, generically, and that plan kept however the tables grow.
    # PostgreSQL settles on such plans by itself after five executions when they look no
    # more costly than custom ones; forcing it makes the test not depend on that estimate.
    "plan_cache_mode": "force_generic_plan",
}


class Plans:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def listen(self, conn: asyncpg.Connection, message: Any) -> None:
        text = str(getattr(message, "message", message))
        if "plan:" in text:
            self.texts.append(text)

    def of(self, query_start: str) -> list[str]:
        """The plans of statements whose text starts with `query_start` (whitespace
        squeezed), oldest first."""
        want = " ".join(query_start.split())
        return [
            t
            for t in self.texts
            if " ".join(t.split("Query Text:", 1)[-1].split()).startswith(want)
        ]

    def clear(self) -> None:
        self.texts.clear()


def scans_table(plan: str, table: str) -> bool:
    """Whether `plan` reads `table` by a sequential or bitmap heap scan (every row or page
    of it), rather than by index probes."""
    return re.search(rf"(Seq Scan|Bitmap Heap Scan) on {re.escape(table)}\b", plan) is not None


@asynccontextmanager
async def explaining_pool(url: str) -> AsyncIterator[tuple[asyncpg.Pool, Plans]]:
    """A one-connection pool (one session: its cached plans are the ones logged)."""
    plans = Plans()

    async def setup(conn: asyncpg.Connection) -> None:
        conn.add_log_listener(plans.listen)

    pool = await db.create_pool(url, min_size=1, max_size=1, server_settings=_SETTINGS, setup=setup)
    try:
        with warnings.catch_warnings():
            # The listener stays for the pool's life on purpose: asyncpg warns at each
            # release that a connection goes back to its pool with a listener.
            warnings.filterwarnings("ignore", ".*active log listener", asyncpg.InterfaceWarning)
            yield pool, plans
    finally:
        await pool.close()
