"""compress: the task's files into one zip or tar.gz, streamed, becoming one new file.

Streaming end to end: each member is read chunk by chunk from the blob store
(`read_manifest`), the archive is written by a well-kept library as it goes (stream-zip
for zip, with ZIP64 chosen per member by size and for the archive when it has more than
65,535 entries; the standard library's `tarfile` in stream mode for tar.gz, run in a
thread and fed through bounded queues), and the output is cut into chunks stored one by
one (archive_out.py). Nothing holds a whole member or the whole archive.

Restarts. The archive restarts cleanly after a pause or a takeover (chunks already stored
are content-addressed, so storing them again costs only the writes). Progress meanwhile
is bytes read, never below what an earlier attempt reached; the per-member results are
recorded once, at the end. The result file has an id derived from the task, and is
created only after the whole archive is stored: a cancel before that leaves nothing
visible, and a crash after it is recognised (the file exists), so there is never a second
result file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from stream_zip import ZIP_AUTO, async_stream_zip

from bus.aio import map_bounded
from bus.blobs.manifests import read_manifest
from bus.config.settings import Settings
from domain.commands import CreateFile
from domain.files import FileState
from domain.ports import BlobStore
from domain.tasks.commands import RecordProgress
from domain.tasks.ids import item_command_id, result_file_id
from handlers.tasks.archive_out import ArchiveSink
from handlers.tasks.fileops import check_quota, load_file
from handlers.tasks.run import FLUSH_EVERY, TaskFailure, TaskRun, utcnow

CONTENT_TYPES = {"zip": "application/zip", "tar.gz": "application/gzip"}
_QUEUE_DEPTH = 8  # pieces in flight between the tar thread and the event loop
MEMBER_BATCH = 1000  # member results per checkpoint command (~100 KiB)
LOADS_AT_ONCE = 8  # files read from the event store at once before archiving


def unique_names(names: list[str]) -> list[str]:
    """Names inside the archive: the files' names, a repeated one as `name (2).ext`."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            stem, dot, ext = name.rpartition(".")
            candidate = f"{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})"
        seen.add(candidate)
        out.append(candidate)
    return out


class _Progress:
    """Bytes read so far; reported (never lowering the recorded value) every FLUSH_EVERY."""

    def __init__(self, run: TaskRun) -> None:
        self.run = run
        self.read = 0
        self._last = time.monotonic()

    async def add(self, n: int) -> None:
        self.read += n
        await self.run.check()  # a safe point every few hundred milliseconds
        if time.monotonic() - self._last >= FLUSH_EVERY and self.read > self.run.state.bytes_done:
            self._last = time.monotonic()
            await self.run.send(
                self.run.command(
                    RecordProgress,
                    first=self.run.state.items_done,
                    results=[],
                    bytes_done=self.read,
                )
            )


async def _member_bytes(
    blobs: BlobStore, st: FileState, progress: _Progress
) -> AsyncIterator[bytes]:
    async for piece in read_manifest(blobs, list(st.manifest)):
        await progress.add(len(piece))
        yield piece


async def _zip(
    blobs: BlobStore, members: list[tuple[str, FileState]], progress: _Progress, level: int | None
) -> AsyncIterator[bytes]:
    async def files() -> AsyncIterator[Any]:
        for name, st in members:
            method = ZIP_AUTO(st.size, level=level if level is not None else 6)
            yield name, st.created_at, 0o644, method, _member_bytes(blobs, st, progress)

    async for piece in async_stream_zip(files()):
        yield piece


async def _tar_gz(
    blobs: BlobStore, members: list[tuple[str, FileState]], progress: _Progress, level: int | None
) -> AsyncIterator[bytes]:
    """tarfile (synchronous) in a thread: it reads members through `_Reader` and writes
    through `_Writer`, each a bounded hand-off to this event loop."""
    loop = asyncio.get_running_loop()
    out: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(_QUEUE_DEPTH)
    cancelled = threading.Event()

    def call(fn: Callable[[], Any]) -> Any:
        if cancelled.is_set():
            raise RuntimeError("archive abandoned")
        return asyncio.run_coroutine_threadsafe(fn(), loop).result()

    class _Writer:
        def write(self, data: bytes) -> int:
            piece = bytes(data)
            call(lambda: out.put(piece))
            return len(piece)

    class _Reader:
        def __init__(self, it: AsyncIterator[bytes]) -> None:
            self.it, self.buf = it, b""

        def read(self, n: int = -1) -> bytes:
            while (n < 0 or len(self.buf) < n) and self.it is not None:
                try:
                    self.buf += call(lambda: anext(self.it))
                except StopAsyncIteration:
                    self.it = None  # type: ignore[assignment]
            if n < 0:
                n = len(self.buf)
            data, self.buf = self.buf[:n], self.buf[n:]
            return data

    def produce() -> None:
        try:
            compress = level if level is not None else 6
            # tar in stream mode into gzip (Python 3.11's stream mode takes no level).
            with (
                gzip.GzipFile(fileobj=_Writer(), mode="wb", compresslevel=compress) as gz,  # type: ignore[call-overload]
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                for name, st in members:
                    info = tarfile.TarInfo(name)
                    info.size = st.size
                    info.mtime = int(st.created_at.timestamp())
                    info.mode = 0o644
                    tar.addfile(info, _Reader(_member_bytes(blobs, st, progress)))
            call(lambda: out.put(None))
        except BaseException as e:  # handed to the loop, which raises it
            failure: BaseException = e
            if not cancelled.is_set():
                with contextlib.suppress(Exception):
                    call(lambda: out.put(failure))

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
        cancelled.set()
        while not out.empty():  # unblock a writer waiting on a full queue
            out.get_nowait()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(thread, 5)


async def run_compress(run: TaskRun, settings: Settings, blobs: BlobStore) -> list[str]:
    params = run.state.params
    result_id = result_file_id(run.task_id)
    if await load_file(run, result_id) is not None:
        return [result_id]  # created before a crash; only the completion was missing
    fmt = str(params.get("format") or "zip")
    level = params.get("level")
    output = params.get("output") or {}
    files = [str(f) for f in params.get("files") or []]
    # Read concurrently (a thousand files, one after another, were a second or two of
    # round trips to the event store before the first byte was archived).
    states = await map_bounded(functools.partial(load_file, run), files, LOADS_AT_ONCE)
    sources: list[tuple[int, str, FileState]] = []
    for index, (file_id, st) in enumerate(zip(files, states, strict=True)):
        if st is None:
            raise TaskFailure(
                "file_not_found", "a file to compress is gone", {"file": file_id, "index": index}
            )
        sources.append((index, file_id, st))
    # An object is archived under its key (its path), a plain file under its name.
    names = unique_names([st.key or st.name for _, _, st in sources])
    members = [(name, st) for name, (_, _, st) in zip(names, sources, strict=True)]
    progress = _Progress(run)
    sink = ArchiveSink(blobs, settings.default_chunk_size)
    stream = _zip if fmt == "zip" else _tar_gz
    await sink.drain(stream(blobs, members, progress, level))
    await run.check(force=True)  # cancelled while the last bytes were stored: no result
    await check_quota(run, settings, sink.size)
    results = [
        {"index": i, "source": fid, "result": name}
        for name, (i, fid, _) in zip(names, sources, strict=True)
    ]
    # In slices: one command (and one event on the bus) per MEMBER_BATCH results, so an
    # archive of 65,536+ members is not one message of megabytes (over the broker's limit).
    # Each slice has its own command id and continues from the last: sent again after a
    # crash, the ones recorded already change nothing (domain/tasks/decide.py).
    for first in range(0, len(results), MEMBER_BATCH):
        await run.send(
            run.command(
                RecordProgress,
                first=first,
                results=results[first : first + MEMBER_BATCH],
                bytes_done=progress.read,
                command_id=f"task-{run.task_id}-members-{first}",
            )
        )
    await run.send(
        CreateFile(
            aggregate_id=result_id,
            caller=run.state.owner,
            at=utcnow(),
            owner=run.state.owner,
            name=str(output.get("file_name") or f"archive.{fmt}"),
            size=sink.size,
            content_type=CONTENT_TYPES.get(fmt, "application/octet-stream"),
            sha256=sink.sha256,
            manifest=sink.manifest,
            bucket=str(output.get("bucket") or "default"),
            command_id=item_command_id(run.task_id, -1, "result"),
        )
    )
    run.bytes_done = progress.read
    return [result_id]
