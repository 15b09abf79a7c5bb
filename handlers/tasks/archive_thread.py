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

`archive(write_all, members, read_member)` runs `write_all(entries, write)` in a thread,
where `entries` yields `(name, state, chunks)` in order (chunks: a synchronous iterable of
the member's bytes) and `write` takes the archive's bytes; it yields the archive's bytes on
the loop. A failure on either side (a member unreadable, the task paused or cancelled
during a read, the writer raising) is raised on the loop; when the consumer stops early,
the thread's next hand-off fails and it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from domain.files import FileState

T = TypeVar("T")

OUT_DEPTH = 8  # archive pieces in flight between the thread and the event loop
OUT_BYTES = 256 * 1024  # the thread hands the archive over in pieces of about this size
SMALL_MEMBER = 64 * 1024  # members up to this size are read whole by the loop, in batches
SMALL_BATCH_BYTES = 1 << 20  # at most this many bytes of small members read ahead
SMALL_BATCH_MEMBERS = 512  # and at most this many members per batch

Entry = tuple[str, FileState, Iterable[bytes]]
WriteAll = Callable[[Iterator[Entry], Callable[[bytes], None]], None]
ReadMember = Callable[[FileState], AsyncIterator[bytes]]


class _Abandoned(Exception):
    """The loop side has stopped: the thread's hand-offs end."""


async def archive(
    write_all: WriteAll, members: list[tuple[str, FileState]], read_member: ReadMember
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    out: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(OUT_DEPTH)
    abandoned = threading.Event()
    next_member = 0

    def call(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the loop from the thread, and wait for its result."""
        if abandoned.is_set():
            raise _Abandoned
        return asyncio.run_coroutine_threadsafe(make(), loop).result()

    async def read_whole(st: FileState) -> bytes:
        return b"".join([piece async for piece in read_member(st)])

    async def next_batch() -> list[tuple[str, FileState, bytes | None]]:
        """The next members in order: small ones with their bytes, then at most one larger
        one (None: the thread streams it)."""
        nonlocal next_member
        batch: list[tuple[str, FileState, bytes | None]] = []
        held = 0
        while next_member < len(members) and len(batch) < SMALL_BATCH_MEMBERS:
            name, st = members[next_member]
            if st.size > SMALL_MEMBER:
                if not batch:
                    batch.append((name, st, None))
                    next_member += 1
                break
            if held + st.size > SMALL_BATCH_BYTES:
                break
            data = await read_whole(st)
            batch.append((name, st, data))
            held += len(data)
            next_member += 1
        return batch

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

    gathered: list[bytes] = []
    gathered_bytes = 0

    def hand_over(item: bytes | BaseException | None) -> None:
        async def put() -> None:
            await out.put(item)

        call(put)

    def write(data: bytes) -> None:
        nonlocal gathered_bytes
        if not data:
            return
        gathered.append(bytes(data))  # the writer may reuse its buffer
        gathered_bytes += len(data)
        if gathered_bytes >= OUT_BYTES:
            flush()

    def flush() -> None:
        nonlocal gathered_bytes
        if gathered:
            piece = b"".join(gathered)
            gathered.clear()
            gathered_bytes = 0
            hand_over(piece)

    def produce() -> None:
        try:
            write_all(entries(), write)
            flush()
            hand_over(None)
        except _Abandoned:
            pass
        except BaseException as e:  # handed to the loop, which raises it
            with contextlib.suppress(Exception):
                hand_over(e)

    thread = asyncio.create_task(asyncio.to_thread(produce))
    try:
        while True:
            item = await out.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        await thread
    finally:
        abandoned.set()
        while not out.empty():  # unblock a hand-off waiting on a full queue
            out.get_nowait()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(thread, 5)
