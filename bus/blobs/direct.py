"""Writing a big blob past the page cache (Linux `O_DIRECT`).

A buffered write copies every byte into the page cache, and on this project's VM the
fresh pages that copy lands in cost a hypervisor fault each: 1 GiB written with `dd` and
fdatasynced took 3.2 s (337 MB/s), the same with `oflag=direct` 0.65 s (1.6 GB/s). Written
directly, a GiB costs the writing thread about half the CPU of a buffered write into
pages just freed, and a twentieth of one into pages never touched (tests/bench/JOURNAL.md:
native 1 GiB uploads 4-15 % faster, the API's CPU per tus GiB 10 % lower). Storage servers
write big objects this way for the same reason (MinIO uses O_DIRECT).

O_DIRECT wants the memory, the length and the file offset of each write aligned to the
device's block. An HTTP body arrives in reads of any size at any address, so a
`DirectWriter` copies them into an aligned buffer (a userspace copy into memory that is
reused, so already mapped: a fraction of the page cache's cost) and writes the buffer
whenever it is full. The tail that does not fill a block is written last, with O_DIRECT
turned off again (`finish`). The blob is durable only after the final fsync, as before
(O_DIRECT says nothing about the file's size and extents): this changes the speed, not
the rules (bus/blobs/local.py `_commit`).

Where the filesystem refuses O_DIRECT (tmpfs on older kernels, some FUSE mounts),
`enable` says so and the store writes through the page cache as before. One that takes
the flag but refuses the writes (EINVAL: a device block larger than ALIGN, a write cut
short off the alignment) gets the same: the writer turns O_DIRECT off and writes the rest
through the cache, since a refused write wrote nothing.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading

# Alignment for memory, lengths and offsets: a page, which covers 512-byte and 4 KiB
# logical blocks alike.
ALIGN = 4096
O_DIRECT: int = getattr(os, "O_DIRECT", 0)
AVAILABLE = O_DIRECT != 0

# Aligned buffers kept for reuse: a fresh anonymous mapping costs a page fault per page on
# first touch, the cost this module exists to avoid. At most this many are kept (4 MiB
# each by default); more puts at once allocate and drop their own.
POOL_MAX = 8
_pool: list[mmap.mmap] = []  # all of one size
_pool_lock = threading.Lock()  # puts take and give buffers from the thread pool


def _take(size: int) -> mmap.mmap:
    with _pool_lock:
        if _pool and len(_pool[-1]) == size:
            return _pool.pop()
    return mmap.mmap(-1, size)  # anonymous: page-aligned


def _give(buf: mmap.mmap) -> None:
    with _pool_lock:
        if _pool and len(_pool[0]) != len(buf):
            _pool.clear()  # another buffer size: keep one size only
        if len(_pool) < POOL_MAX:
            _pool.append(buf)
            return
    buf.close()


def enable(fd: int) -> bool:
    """Turn O_DIRECT on for `fd`; False if the filesystem (or the platform) refuses it."""
    if not AVAILABLE:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | O_DIRECT)
    except OSError:
        return False
    return True


def _disable(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~O_DIRECT)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` to `fd`, resuming after a short write."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class DirectWriter:
    """Writes a stream's buffers, in order, to an O_DIRECT `fd` at its current offset
    (from 0), through one aligned buffer of `size` bytes (a multiple of ALIGN).

    Called by one thread at a time, in stream order (bus/blobs/batching.py's write lane);
    `finish` writes what is left and must come after the last call; `release` returns the
    buffer, once nothing writes from it any more."""

    def __init__(self, fd: int, size: int) -> None:
        if size <= 0 or size % ALIGN:
            raise ValueError(f"buffer size {size} is not a positive multiple of {ALIGN}")
        self.fd = fd
        self._buf: mmap.mmap | None = _take(size)
        self._view = memoryview(self._buf)
        self._size = size
        self._fill = 0
        self.direct = True  # False once the filesystem refused a direct write

    def __call__(self, buffers: list[bytes]) -> None:
        view, size = self._view, self._size
        for data in buffers:
            src = memoryview(data)
            while src:
                n = min(len(src), size - self._fill)
                view[self._fill : self._fill + n] = src[:n]
                self._fill += n
                src = src[n:]
                if self._fill == size:
                    self._write(view)
                    self._fill = 0

    def _write(self, view: memoryview) -> None:
        if not self.direct:
            write_all(self.fd, view)
            return
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                # Refused, so nothing of it was written: the rest goes through the cache.
                self._go_buffered()
                write_all(self.fd, view)
                return
            view = view[n:]

    def _go_buffered(self) -> None:
        """O_DIRECT off for the rest of the blob (a refused write, or a tail it cannot take)."""
        if self.direct:
            self.direct = False
            _disable(self.fd)

    def finish(self) -> None:
        """Write what the buffer still holds: its whole blocks directly, then the last
        partial block with O_DIRECT off (a length O_DIRECT cannot take)."""
        whole = self._fill - self._fill % ALIGN
        if whole:
            self._write(self._view[:whole])
        if self._fill > whole:
            self._go_buffered()
            write_all(self.fd, self._view[whole : self._fill])
        self._fill = 0

    def release(self) -> None:
        """Give the buffer back for the next put (call once no thread writes from it)."""
        buf, self._buf = self._buf, None
        if buf is not None:
            self._view.release()
            _give(buf)
