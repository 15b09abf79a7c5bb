"""How each long-running Cairn process sets up CPython's garbage collector.

Why: under load (4 KiB tus uploads, 32 at once, `cairn up` on its embedded default;
2026-12-03, CPU time of the collections read in each process) the default collector took
the API process about 1.4 s of CPU in 45 s. Most of it was full (generation 2)
collections: each walks every object the process holds, and the 90,000-160,000 objects
that importing Litestar, FastStream, asyncpg and OpenTelemetry creates (plus the app built
from them) never die, so each full collection cost 70-150 ms of CPU in one go, a stall
for every request and command in flight (the API's, the actor host's, the projector's).

So once a process has imported its code and built what it runs, `settle` moves everything
that exists into the permanent generation (`gc.freeze`): later collections never look at
it again. Full collections then cost the API 27 ms in all over the same 45 s, against
805 ms. The young generation's threshold is raised too: almost everything a request
allocates is freed by reference counting, so at CPython's default (700 net allocations)
the API still ran about 15 young collections a second, each walking what happened to be
alive; at 10,000 it runs a handful a minute. Cyclic garbage still gets collected, in
larger steps (a young collection then takes a few milliseconds, not a few hundred
microseconds; measured: 7 in 45 s in the actor host, 46 ms in all).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000

# Whether this process settled its heap at start, i.e. it is a `cairn run` process.
_settled = False


def settle() -> None:
    """Put what the process holds now out of the collector's way (see above).

    `cairn run` calls it once the kind's code is imported (bus/run/cli.py); objects
    already frozen stay frozen."""
    global _settled
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    _settled = True


def settle_again() -> None:
    """Freeze what was built since, in a process that settled at start (the API, once its
    app is built); elsewhere (a component run inside pytest's process) nothing."""
    if _settled:
        settle()
