"""Awaiting another process's exit without polling.

The supervisor watches the embedded broker and PostgreSQL (which `pg_ctl` daemonises, so it
is not our child and cannot be `wait`ed for), and each child watches its supervisor. A
pidfd becomes readable when its process exits, so the event loop wakes exactly then.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

# Where pidfds are missing (non-Linux, old kernels): how often to look instead.
POLL_INTERVAL = 1.0


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def wait_for_exit(pid: int, alive: Callable[[], bool] | None = None) -> None:
    """Return once process `pid` has exited (at once if it does not exist).

    `alive`: where pidfds are missing, what says the process is still there, asked every
    POLL_INTERVAL (default: kill(0), which a zombie passes too)."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (OSError, AttributeError):
        # Zombies still "exist" for kill(0); acceptable for this fallback's rare use.
        still = alive if alive is not None else lambda: _exists(pid)
        while still():  # noqa: ASYNC110
            await asyncio.sleep(POLL_INTERVAL)
        return
    gone: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, exited)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)
