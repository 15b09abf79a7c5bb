"""Immutable sequences shared by several aggregates' states (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

BLOCK = 256
"""Entries per block: an append copies the block index and at most one block."""


class PieceSeq(Sequence[tuple[str, int]]):
    """Pieces `(sha256, size)` in order (a stream or final upload's, a URL fetch's or one
    fetch segment's): an immutable sequence whose `extended` shares every full block of
    256 with the one it came from.

    Each append's event adds pieces to the state the actor host keeps; a tuple copied
    for each made the step linear in the pieces already there (18 us at 1,000, 440 us at
    40,000). Here a step copies the block index and the last, partial block.

    Not JSON: orjson cannot serialise it, so it becomes a list (or `manifest()`) where it
    goes into a command, an event or a reply."""

    __slots__ = ("_blocks", "_len")

    def __init__(self, pieces: Iterable[tuple[str, int]] = ()) -> None:
        items = tuple(pieces)
        self._blocks = tuple(items[i : i + BLOCK] for i in range(0, len(items), BLOCK))
        self._len = len(items)

    def extended(self, pieces: Iterable[tuple[str, int]]) -> PieceSeq:
        """This sequence followed by `pieces`; self unchanged."""
        new = tuple(pieces)
        if not new:
            return self
        head, tail = self._blocks, new
        if head and len(head[-1]) < BLOCK:
            head, tail = head[:-1], head[-1] + new
        out = PieceSeq.__new__(PieceSeq)
        out._blocks = head + tuple(tail[i : i + BLOCK] for i in range(0, len(tail), BLOCK))
        out._len = self._len + len(new)
        return out

    @overload
    def __getitem__(self, i: int) -> tuple[str, int]: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[tuple[str, int], ...]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return tuple(self)[i]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("piece index out of range")
        return self._blocks[i // BLOCK][i % BLOCK]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for block in self._blocks:
            yield from block

    def __len__(self) -> int:
        return self._len

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PieceSeq | tuple | list):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"PieceSeq({tuple(self)!r})"
