"""Bridges between the event loop and synchronous archive libraries run in a thread.

`zipfile` and `tarfile` are synchronous; they run in a worker thread and reach the blob
store through `BlobFile` (a seekable, buffered, read-only file over a file's manifest
whose reads are coroutines run on the loop), and hand what they produce back through a
bounded queue (`iterate_in_thread` for a generator, `push_in_thread` for a writer that
calls back): memory stays at a few pieces whatever the sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, TypeVar

from bus.blobs.manifests import read_manifest
from domain.ports import BlobStore

QUEUE_DEPTH = 8

T = TypeVar("T")


class BlobFile(io.RawIOBase):
    """A file's bytes as a seekable raw file, for use from a worker thread only."""

    def __init__(
        self, blobs: BlobStore, manifest: list[tuple[str, int]], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.blobs, self.manifest, self.loop = blobs, manifest, loop
        self.size = sum(n for _, n in manifest)
        self.pos = 0
        # Set from the event loop to end the reading thread at its next read (raised).
        self.stop: BaseException | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        if self.stop is not None:
            raise self.stop
        end = min(self.size, self.pos + len(buffer))
        if end <= self.pos:
            return 0

        async def read() -> bytes:
            out = bytearray()
            async for piece in read_manifest(self.blobs, self.manifest, self.pos, end):
                out += piece
            return bytes(out)

        data = asyncio.run_coroutine_threadsafe(read(), self.loop).result()
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def buffered(raw: BlobFile, size: int = 1 << 20) -> io.BufferedReader:
    return io.BufferedReader(raw, buffer_size=size)


def iterate_in_thread(produce: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
    """Run the synchronous generator `produce()` in a thread; yield what it yields."""

    def work(emit: Callable[[T], None]) -> None:
        for piece in produce():
            emit(piece)

    return push_in_thread(work)


async def push_in_thread(work: Callable[[Callable[[T], None]], None]) -> AsyncGenerator[T, None]:
    """Run `work(emit)` in a thread; yield each value it emits, in order. At most QUEUE_DEPTH
    wait for the consumer (an emit blocks meanwhile); what `work` raises is raised here; once
    the consumer stops, the thread's next emit raises and it ends (waited for, up to 5 s)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(QUEUE_DEPTH)
    abandoned = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        if abandoned.is_set():
            raise RuntimeError("abandoned")
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def run() -> None:
        try:
            work(lambda value: put(("data", value)))
            put(("end", None))
        except BaseException as e:
            failure: BaseException = e
            if not abandoned.is_set():
                with contextlib.suppress(Exception):
                    put(("error", failure))

    thread = asyncio.create_task(asyncio.to_thread(run))
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                break
            if kind == "error":
                raise value
            yield value
        await thread
    finally:
        abandoned.set()
        while not queue.empty():
            queue.get_nowait()
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(5):
                await thread
