"""How a Cairn process that moves file bytes sets up glibc's malloc.

Why: every socket read of an upload becomes a `bytes` of up to 256 KiB, and a stored
piece's reads stay alive in batches of a few MiB until written and hashed, so the API's
heap grows and shrinks by megabytes many times a second. glibc returns the top of its heap
to the kernel as soon as more than its trim threshold is free there (dynamic: twice the
largest block it last gave back with munmap, 512 KiB here), so the next batch faulted in
fresh pages again and the kernel zeroed each of them: `perf record` on the API during 1
GiB uploads put 5-7 % of its CPU in page faults and `clear_page` (issue 13).

So the API (`BYTE_KINDS`) keeps up to `TRIM_THRESHOLD` of free heap instead, and serves
blocks up to `MMAP_THRESHOLD` from the heap rather than from a mapping of their own each.
Fixed values also turn glibc's dynamic adjustment off. Measured (alternating, three pairs,
1 GiB uploads): the API's CPU per tus GiB 3.18-3.46 s before, 2.82-3.23 after; per native
GiB 3.79-4.40 against 3.02-3.29. What it costs: the process may keep up to
`TRIM_THRESHOLD` more resident after a burst (after those uploads the API's RSS was 132
MiB against 115); its peak follows what it holds at once.

glibc only (Linux distributions' and python.org's Linux builds); elsewhere nothing.
"""

from __future__ import annotations

import ctypes

from bus.config.logs import get_logger

log = get_logger(__name__)

# mallopt(3) parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

TRIM_THRESHOLD = 64 * 1024 * 1024
MMAP_THRESHOLD = 32 * 1024 * 1024
# The kinds whose heaps churn with file bytes and where it was measured: the API (uploads).
# The fetcher and the task workers move bytes too, but were not measured: left as they were.
BYTE_KINDS = frozenset({"api"})


def tune(kind: str) -> bool:
    """Set the thresholds in this process if `kind` moves bytes and libc is glibc; whether
    they were set."""
    if kind not in BYTE_KINDS:
        return False
    try:
        # The process's own symbols, libc's among them (find_library would run ldconfig).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt), or no libc at all
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not ok:
        log.warning("mallopt refused the heap thresholds", kind=kind)
    return ok
