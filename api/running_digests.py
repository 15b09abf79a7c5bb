"""Running sha256 of uploads whose bytes came through this process in order.

Completing an upload needs the sha256 of all its bytes. Reading a big file back from the
blob store to hash it is the slow part of completion, so while the bytes arrive (tus
PATCHes, native chunk PUTs) the API process also feeds them, in upload order, to one
running sha256 per upload: upload id -> (offset, hash state over the upload's bytes
[0, offset)).

An entry is recorded only after the command that made those bytes part of the upload was
accepted (AppendBytes, StoreChunk), and the stored pieces of an upload never change
afterwards; so an entry always covers exactly bytes the upload holds. Best effort: bytes
that went to another process, out of order (native chunks in parallel) or before a
restart leave the entry missing or behind, and completion hashes the stored bytes as
before. A sha256 the client declared is always checked against the stored bytes
themselves, hashed anew. Small: one hash state per upload, a bounded number of uploads.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bus.aio import BoundedLRU
from domain.uploads import UploadState

RUNNING_DIGESTS: BoundedLRU[str, tuple[int, Any]] = BoundedLRU(4096)


def resume(upload_id: str, offset: int) -> Any | None:
    """A hash state to continue with bytes that start at `offset` (a copy: a racing request
    in this process may resume from the same entry), or None if nothing covers [0, offset)."""
    carried = RUNNING_DIGESTS.get(upload_id)
    if carried is not None and carried[0] == offset:
        return carried[1].copy()
    return hashlib.sha256() if offset == 0 else None


def record(upload_id: str, offset: int, state: Any) -> None:
    """The bytes [0, offset) that `state` hashed are now the upload's (their command was
    accepted). Keeps the furthest entry: a replayed early chunk must not push it back."""
    carried = RUNNING_DIGESTS.get(upload_id)
    if carried is None or carried[0] < offset:
        RUNNING_DIGESTS[upload_id] = (offset, state)


def take(state: UploadState) -> str | None:
    """The digest to complete `state`'s upload with, if one covers exactly all its bytes and
    the client declared no sha256 (which is verified against the stored bytes); forgets the
    upload's entry either way."""
    carried = RUNNING_DIGESTS.pop(state.id)
    if carried is None or carried[0] != state.bytes_received or state.sha256:
        return None
    return str(carried[1].hexdigest())
