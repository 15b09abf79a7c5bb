"""The local store's fan-out directories: each new entry is made durable once, by the put
that needs it or at startup, and no more often (bus/blobs/local.py, `_commit`)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.blobs import local
from bus.blobs.local import LocalBlobStore


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@functools.cache
def _contents() -> tuple[bytes, bytes, bytes]:
    """Three contents: the second's digest shares the first's two leading hex digits (its
    parent directory) but not the next two (its leaf), the third's shares all four."""
    first = b"fan-out 0"
    top = hashlib.sha256(first).hexdigest()
    other_leaf: bytes | None = None
    same_leaf: bytes | None = None
    i = 1
    while other_leaf is None or same_leaf is None:  # about 65,536 tries for the leaf
        data = b"fan-out %d" % i
        i += 1
        digest = hashlib.sha256(data).hexdigest()
        if digest[:4] == top[:4]:
            same_leaf = same_leaf or data
        elif digest[:2] == top[:2]:
            other_leaf = other_leaf or data
    return first, other_leaf, same_leaf


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    dirs: list[Path] = []
    real = local._fsync_dir

    def recording(path: Path) -> None:
        dirs.append(Path(path))
        real(path)

    monkeypatch.setattr(local, "_fsync_dir", recording)
    return dirs


async def test_a_parent_is_fsynced_into_chunks_once_a_leaf_into_its_parent_once(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    store = LocalBlobStore(tmp_path)
    assert fsynced == []  # an empty store has nothing to adopt
    chunks = tmp_path / "chunks"
    first, other_leaf, same_leaf = _contents()

    d1, _ = await store.put_stream(_one(first))
    leaf1 = store.path_of(d1).parent
    assert fsynced == [leaf1, leaf1.parent, chunks]

    fsynced.clear()
    d2, _ = await store.put_stream(_one(other_leaf))
    leaf2 = store.path_of(d2).parent
    assert leaf2 != leaf1 and leaf2.parent == leaf1.parent
    # A new leaf in a parent already durable: the parent holds its entry, chunks/ not.
    assert fsynced == [leaf2, leaf2.parent]

    fsynced.clear()
    d3, _ = await store.put_stream(_one(same_leaf))
    assert store.path_of(d3).parent == leaf1
    assert fsynced == [leaf1]  # only the new name in its leaf
    for d, data in ((d1, first), (d2, other_leaf), (d3, same_leaf)):
        assert store.path_of(d).read_bytes() == data


async def test_a_restarted_store_makes_what_it_finds_durable_then_trusts_it(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    first, other_leaf, same_leaf = _contents()
    before = LocalBlobStore(tmp_path)
    d1, _ = await before.put_stream(_one(first))
    leaf1 = before.path_of(d1).parent

    fsynced.clear()
    after = LocalBlobStore(tmp_path)
    # The one parent found, then chunks/ holding it.
    assert fsynced == [leaf1.parent, tmp_path / "chunks"]

    fsynced.clear()
    d3, _ = await after.put_stream(_one(same_leaf))
    assert after.path_of(d3).parent == leaf1 and fsynced == [leaf1]
    fsynced.clear()
    d2, _ = await after.put_stream(_one(other_leaf))
    assert fsynced == [after.path_of(d2).parent, leaf1.parent]
