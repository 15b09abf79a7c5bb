"""Immutable sequences shared by several aggregates' states, and the fold that builds
such a state from a stream in time linear in its events (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar, overload

BLOCK = 256
"""Entries per block: an append copies the block index and at most one block."""

T = TypeVar("T")


class BlockSeq(Sequence[T], Generic[T]):
    """An immutable sequence whose `extended` shares every full block of 256 with the one
    it came from: appending to a state's sequence costs about the same at 80,000 entries
    as at 1,000, where a tuple copied for each append made a stream's fold quadratic.

    Not JSON: orjson cannot serialise it, so it becomes a list where it goes into a
    command, an event or a reply."""

    __slots__ = ("_blocks", "_len")

    def __init__(self, items: Iterable[T] = ()) -> None:
        got = tuple(items)
        self._blocks: tuple[tuple[T, ...], ...] = tuple(
            got[i : i + BLOCK] for i in range(0, len(got), BLOCK)
        )
        self._len = len(got)

    def extended(self, items: Iterable[T]) -> Any:
        """This sequence followed by `items` (of this sequence's class); self unchanged."""
        new = tuple(items)
        if not new:
            return self
        head, tail = self._blocks, new
        if head and len(head[-1]) < BLOCK:
            head, tail = head[:-1], head[-1] + new
        out = type(self).__new__(type(self))
        out._blocks = head + tuple(tail[i : i + BLOCK] for i in range(0, len(tail), BLOCK))
        out._len = self._len + len(new)
        return out

    def head(self, n: int) -> Any:
        """The first `n` entries (all of them when there are fewer), sharing full blocks."""
        if n >= self._len:
            return self
        n = max(n, 0)
        full, rest = divmod(n, BLOCK)
        out = type(self).__new__(type(self))
        out._blocks = self._blocks[:full] + ((self._blocks[full][:rest],) if rest else ())
        out._len = n
        return out

    @property
    def blocks(self) -> tuple[tuple[T, ...], ...]:
        """The blocks themselves (what a step shares with the sequence it came from)."""
        return self._blocks

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[T, ...]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return tuple(self)[i]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("index out of range")
        return self._blocks[i // BLOCK][i % BLOCK]

    def __iter__(self) -> Iterator[T]:
        for block in self._blocks:
            yield from block

    def __len__(self) -> int:
        return self._len

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BlockSeq | tuple | list):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({tuple(self)!r})"


class PieceSeq(BlockSeq[tuple[str, int]]):
    """Pieces `(sha256, size)` in order (a stream or final upload's, a URL fetch's or one
    fetch segment's), blocks shared as BlockSeq's.

    Each append's event adds pieces to the state the actor host keeps; a tuple copied
    for each made the step linear in the pieces already there (18 us at 1,000, 440 us at
    40,000). Here a step copies the block index and the last, partial block.

    Not JSON: orjson cannot serialise it, so it becomes a list (or `manifest()`) where it
    goes into a command, an event or a reply."""

    __slots__ = ()

    def __init__(self, pieces: Iterable[tuple[str, int]] = ()) -> None:
        super().__init__(pieces)

    def extended(self, pieces: Iterable[tuple[str, int]]) -> PieceSeq:
        out: PieceSeq = super().extended(pieces)
        return out


S = TypeVar("S")
E_contra = TypeVar("E_contra", contravariant=True)


class Run(Protocol[S, E_contra]):
    """What a run of like events (appends, chunks) adds to a state while `fold_in_runs`
    gathers it: lists or dicts the fold owns, put into the state once, at the run's end."""

    def add(self, state: S, event: E_contra) -> bool:
        """Gather `event`, the next event after `state` (as settled so far), if it is one
        a run holds: True if so; False, the run unchanged, if not."""
        ...

    def settle(self, state: S | None) -> S | None:
        """`state` with what the run gathered put into it (`state` itself if nothing)."""
        ...


def fold_in_runs(
    state: S | None,
    events: Iterable[E_contra],
    evolve: Callable[[S | None, E_contra], S | None],
    new_run: Callable[[], Run[S, E_contra]],
) -> S | None:
    """`evolve` over `events`, but each run of events that `new_run()` gathers is put
    into the state once, at the run's end, instead of one state per event: folding
    40,000 chunks or appends one state each copied what the state held every time.

    Equal to evolving event by event when a run's `settle` is. The state it began from
    is left as it was: states stay immutable for everyone holding them."""
    run = new_run()
    for event in events:
        if state is not None and run.add(state, event):
            continue
        state = run.settle(state)
        run = new_run()
        state = evolve(state, event)
    return run.settle(state)
