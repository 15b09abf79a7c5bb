"""Random UUIDs for the hot paths, without a system call and a GIL hand-off each.

`uuid.uuid4()` reads 16 bytes with `os.urandom`, which releases the GIL around its
system call. On the API's event loop, with the blob store's threads busy (open, write,
fsync, rename for every small file), getting the GIL back then waits for one of them:
measured here, beside four such threads a loop step that takes an id cost 20 us instead
of 10, and the slowest id 8.8 ms instead of 0.1 (issue 13; a small file takes four or five
ids: the request's, the upload's, the command's, FastStream's correlation id). These ids are as
random: the same kernel generator, read 4 KiB at a time and handed out 16 bytes each.

A forked child starts with an empty buffer, so parent and child never share bytes.
"""

from __future__ import annotations

import os
import threading
import uuid

_BLOCK = 4096  # 256 ids per system call

# Guards the buffer and the position: ids are taken on the event loop and, rarely, in
# threads. Uncontended, taking it does not release the GIL.
_lock = threading.Lock()
_buffer = b""
_position = 0


def _refill_in_child() -> None:
    global _buffer, _position, _lock
    _lock = threading.Lock()  # a lock held by another thread at fork would stay held
    _buffer, _position = b"", 0


os.register_at_fork(after_in_child=_refill_in_child)


def _random16() -> bytes:
    global _buffer, _position
    with _lock:
        if _position + 16 > len(_buffer):
            _buffer, _position = os.urandom(_BLOCK), 0
        out = _buffer[_position : _position + 16]
        _position += 16
        return out


def uuid4() -> uuid.UUID:
    """A random (version 4) UUID, as `uuid.uuid4()`."""
    return uuid.UUID(bytes=_random16(), version=4)


def uuid4_str() -> str:
    """`str(uuid4())`: also FastStream's correlation id generator."""
    return str(uuid4())


def uuid4_hex() -> str:
    """`uuid4().hex`."""
    return uuid4().hex
