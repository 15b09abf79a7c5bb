"""Ports for the servers the tests start, that no other test or process can be given.

`bus.run.embedded.free_port` asks the kernel for a free ephemeral port and lets it go, and
the test starts its server on it moments later. Under pytest-xdist another worker, or a
`cairn up` of another test choosing its children's metrics ports the same way, can be
handed the same port in between: seen once in CI, where a test's API port answered with
another process's Prometheus endpoint. So tests take their ports from below the kernel's
ephemeral range (which no automatic choice reaches), from a block of their own per xdist
worker, one after another: two tests, or two workers, never get the same port, and a
port still taken (a server of an earlier run) is skipped.
"""

from __future__ import annotations

import itertools
import os
import socket

# Below Linux's default ephemeral range (32768-60999), above the usual services.
FIRST = 20_000
PER_WORKER = 1_500  # ports a worker may hand out before it starts over


def _block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    # Two test runs at once on one machine (two checkouts) would share the blocks: one of
    # them shifts its own with CAIRN_TEST_PORT_BLOCKS=N (see README, Development).
    shift = os.environ.get("CAIRN_TEST_PORT_BLOCKS", "0")
    index += int(shift) if shift.isdigit() else 0
    start = FIRST + (index % 8) * PER_WORKER
    return range(start, start + PER_WORKER)


_next = itertools.cycle(_block())


def free_port(host: str = "127.0.0.1") -> int:
    """A port no other test gets, free on `host` right now."""
    for _ in range(PER_WORKER):
        port = next(_next)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port left in {_block()}")
