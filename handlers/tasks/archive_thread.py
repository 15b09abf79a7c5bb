"""A synchronous archive writer (stream-zip, tarfile) run in a worker thread, fed from and
drained to the event loop with few hand-offs.

The writers are synchronous; the blob store and the task's progress live on the event loop.
Every hand-off between the two is a thread round trip (a fraction of a millisecond on a
busy machine), so they are batched: the loop reads small members whole, a batch at a time
(at most SMALL_BATCH_BYTES, so memory stays bounded), and the thread asks only for the next
batch; a larger member is streamed chunk by chunk as before. What the writer emits is
gathered into pieces of OUT_BYTES before it is handed to the loop. (stream-zip's own
`async_stream_zip` made one round trip per member and several per member's header and data
descriptor: 65,536 small members took over two minutes.)

Members' states are taken from `members` a batch at a time too (`Members.take`): a compress
of 80,000 files reads them from the event store as the archive reaches them instead of
holding every member's state (its manifest) for the whole run.

`archive(write_all, members, read_member)` runs `write_all(entries, write)` in a thread
(threads.push_in_thread), where `entries` yields `(name, state, chunks)` in order (chunks:
a synchronous iterable of the member's bytes) and `write` takes the archive's bytes; it
yields the archive's bytes on the loop. A failure on either side (a member unreadable, the
task paused or cancelled during a read, the writer raising) is raised on the loop; when
the consumer stops early, the thread's next hand-off fails and it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from domain.files import FileState
from handlers.tasks.threads import push_in_thread

T = TypeVar("T")

OUT_BYTES = 256 * 1024  # the thread hands the archive over in pieces of about this size
SMALL_MEMBER = 64 * 1024  # members up to this size are read whole by the loop, in batches
SMALL_BATCH_BYTES = 1 << 20  # at most this many bytes of small members read ahead
SMALL_BATCH_MEMBERS = 512  # and at most this many members per batch

Entry = tuple[str, FileState, Iterable[bytes]]
WriteAll = Callable[[Iterator[Entry], Callable[[bytes], None]], None]
ReadMember = Callable[[FileState], AsyncIterator[bytes]]


class Members(Protocol):
    """The archive's members in order: each one's size known up front, their names and
    states taken a batch at a time, as the archive reaches them."""

    def __len__(self) -> int: ...

    def size(self, i: int) -> int: ...

    async def take(self, start: int, stop: int) -> list[tuple[str, FileState]]:
        """Members [start, stop) with their states."""
        ...


class Listed:
    """Members already in hand (name, state)."""

    def __init__(self, members: Sequence[tuple[str, FileState]]) -> None:
        self.members = members

    def __len__(self) -> int:
        return len(self.members)

    def size(self, i: int) -> int:
        return self.members[i][1].size

    async def take(self, start: int, stop: int) -> list[tuple[str, FileState]]:
        return list(self.members[start:stop])


def archive(
    write_all: WriteAll,
    members: Members | Sequence[tuple[str, FileState]],
    read_member: ReadMember,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    source: Members = Listed(members) if isinstance(members, Sequence) else members
    next_member = 0

    def call(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the loop from the thread, and wait for its result."""
        return asyncio.run_coroutine_threadsafe(make(), loop).result()

    async def read_whole(st: FileState) -> bytes:
        return b"".join([piece async for piece in read_member(st)])

    async def next_batch() -> list[tuple[str, FileState, bytes | None]]:
        """The next members in order: small ones with their bytes, then at most one larger
        one (None: the thread streams it)."""
        nonlocal next_member
        start, held = next_member, 0
        while next_member < len(source) and next_member - start < SMALL_BATCH_MEMBERS:
            size = source.size(next_member)
            if size > SMALL_MEMBER:
                if next_member == start:
                    next_member += 1
                    return [(name, st, None) for name, st in await source.take(start, start + 1)]
                break
            if held + size > SMALL_BATCH_BYTES:
                break
            held += size
            next_member += 1
        if next_member == start:
            return []
        # A member whose state changed since it was listed (an object replaced by a big
        # one) is streamed, not read whole.
        return [
            (name, st, await read_whole(st) if st.size <= SMALL_MEMBER else None)
            for name, st in await source.take(start, next_member)
        ]

    def streamed(st: FileState) -> Iterator[bytes]:
        it = read_member(st).__aiter__()

        async def step() -> bytes | None:
            try:
                return await anext(it)
            except StopAsyncIteration:
                return None

        while (piece := call(step)) is not None:
            yield piece

    def entries() -> Iterator[Entry]:
        while batch := call(next_batch):
            for name, st, data in batch:
                if data is None:
                    yield name, st, streamed(st)
                else:
                    yield name, st, (data,) if data else ()

    def work(emit: Callable[[bytes], None]) -> None:
        gathered: list[bytes] = []
        size = 0

        def write(data: bytes) -> None:
            nonlocal size
            if data:
                gathered.append(bytes(data))  # the writer may reuse its buffer
                size += len(data)
            if size >= OUT_BYTES:
                flush()

        def flush() -> None:
            nonlocal size
            if gathered:
                emit(b"".join(gathered))
                gathered.clear()
                size = 0

        write_all(entries(), write)
        flush()

    return push_in_thread(work)
