"""Starting a blob's writeback while it is still arriving (Linux `sync_file_range(2)`).

A put is durable only once its final `fsync` returns (bus/blobs/local.py `_commit`), and
that fsync used to find the whole blob dirty: 8 MiB took 10-19 ms to flush on this
project's VM, all of it after the last byte arrived, while the client waited. Asking the
kernel to start writing each batch out as soon as it is written
(`SYNC_FILE_RANGE_WRITE`: queue the dirty pages of that range for writeback, do not wait
for them) overlaps the flush with receiving the next batch, so the fsync at the end waits
only for what is still in flight. It is the "bytes per sync" of RocksDB and the write
pacing of most storage servers.

A hint only: it promises nothing about durability (the final fsync still decides), and
where it is missing (not Linux, a libc without it) or fails, nothing changes but speed.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

# <linux/fs.h>: start writeback of the range's dirty pages that are not already under
# writeback; do not wait.
SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _load()
AVAILABLE = _SYNC_FILE_RANGE is not None


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Queue bytes [offset, offset + length) of `fd` for writeback without waiting; True
    if the kernel took the hint. ctypes releases the GIL for the call."""
    if _SYNC_FILE_RANGE is None or length <= 0:
        return False
    return _SYNC_FILE_RANGE(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0
