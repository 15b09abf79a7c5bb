"""compress: the task's files into one zip or tar.gz, streamed, becoming one new file.

Streaming end to end: each member is read chunk by chunk from the blob store
(`read_manifest`), the archive is written by a well-kept library as it goes (stream-zip
for zip, with ZIP64 chosen per member by size and for the archive when it has more than
65,535 entries; the standard library's `tarfile` in stream mode for tar.gz), in a worker
thread fed and drained in batches (archive_thread.py), and the output is cut into chunks
stored one by one (archive_out.py). Nothing holds a whole member (but a small one, up to
64 KiB, in a bounded batch) or the whole archive, nor every member's state: the files are
listed first (each checked, named; 200 per query), and their states (manifests) read
again a batch at a time as the archive reaches them.

Restarts. The archive restarts cleanly after a pause or a takeover (chunks already stored
are content-addressed, so storing them again costs only the writes). Progress meanwhile
is bytes read, never below what an earlier attempt reached; the per-member results are
recorded once, at the end. The result file has an id derived from the task, and is
created only after the whole archive is stored: a cancel before that leaves nothing
visible, and a crash after it is recognised (the file exists), so there is never a second
result file.
"""

from __future__ import annotations

import functools
import gzip
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from stream_zip import ZIP_AUTO, stream_zip

from bus.aio import map_bounded
from bus.blobs.manifests import read_manifest
from bus.config.settings import Settings
from domain.commands import CreateFile
from domain.files import FileState
from domain.ports import BlobStore
from domain.tasks.commands import RecordProgress
from domain.tasks.ids import item_command_id, result_file_id
from handlers.tasks.archive_out import ArchiveSink
from handlers.tasks.archive_thread import Entry, Members, WriteAll, archive
from handlers.tasks.fileops import check_destination, load_file, load_files, quota_for_file
from handlers.tasks.run import FLUSH_EVERY, TaskFailure, TaskRun, utcnow

CONTENT_TYPES = {"zip": "application/zip", "tar.gz": "application/gzip"}
ZIP_CHUNK = 65536  # stream-zip's output chunk size (its default)
MEMBER_BATCH = 1000  # member results per checkpoint command (~100 KiB)
# ... and at most about this many bytes of them: a name may be 1,024 characters of up to
# 4 bytes each, and 1,000 such results made a command and an event of 4.2 MB, at the
# broker's 4 MiB message limit.
MEMBER_BATCH_BYTES = 1 << 20
RESULT_BYTES = 100  # a result's JSON besides its name (index, source id, keys)
LOADS_AT_ONCE = 8  # queries for the files at once while listing them
STATES_PER_LOAD = 200  # files read in one query while listing them


def member_name(name: str) -> str:
    """The name a file or an object is archived under. A key may be any string S3 allows
    (`../../etc/x`, `/abs`, `a\\..\\b`): written as it is, it is a zip-slip for whoever
    extracts the archive (Cairn's own extract refuses it). So, as GNU tar strips leading
    `/` and `../` when it creates one: `\\` is read as `/` (as Windows tools do), empty,
    `.` and `..` parts are dropped, a trailing `/` (a folder marker) is kept, and a name
    with nothing left is `_`."""
    parts = name.replace("\\", "/").split("/")
    safe = "/".join(p for p in parts if p not in ("", ".", ".."))
    if not safe:
        return "_"
    return safe + "/" if parts[-1] == "" else safe


def unique_names(names: list[str]) -> list[str]:
    """Names inside the archive: the files' names, a repeated one as `name (2).ext`. An
    object's key is a path: the number goes into its last part (`v1.0/notes (2)`, not
    `v1 (2).0/notes`, which moved it into another directory)."""
    seen: set[str] = set()
    # The number a name had last: every one below it is taken (`seen` only grows), so the
    # next copy starts there. Trying from 2 each time made the k-th copy of a name try
    # k-1 numbers: 80,000 files named image.jpg were 3.2 billion tries.
    last: dict[str, int] = {}
    out = []
    for name in names:
        n = last.get(name, 1)
        candidate = name if n == 1 else numbered(name, n)
        while candidate in seen:
            n += 1
            candidate = numbered(name, n)
        last[name] = n
        seen.add(candidate)
        out.append(candidate)
    return out


def numbered(name: str, n: int) -> str:
    """`name` as its `n`th copy in an archive: `notes (2).txt`, `v1.0/notes (2)`."""
    directory, slash, base = name.rpartition("/")
    stem, dot, ext = base.rpartition(".")
    return f"{directory}{slash}{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})"


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
    blobs: BlobStore, st: FileState, *, progress: _Progress
) -> AsyncIterator[bytes]:
    async for piece in read_manifest(blobs, list(st.manifest)):
        await progress.add(len(piece))
        yield piece


def _zip(level: int | None) -> WriteAll:
    def write_all(entries: Iterator[Entry], write: Callable[[bytes], None]) -> None:
        compress = level if level is not None else 6
        files = (
            (name, st.created_at, 0o644, ZIP_AUTO(st.size, level=compress), chunks)
            for name, st, chunks in entries
        )
        for piece in stream_zip(files, chunk_size=ZIP_CHUNK):
            write(piece)

    return write_all


class _Writer:
    """A file object for gzip: its writes go to the archive."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write

    def write(self, data: bytes) -> int:
        self._write(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Reader:
    """A file object for tarfile: a member's chunks, read as asked (each byte copied once:
    tarfile reads 16 KiB at a time from chunks of up to megabytes)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.it = iter(chunks)
        self.chunk = b""
        self.at = 0  # how much of `chunk` was read

    def read(self, n: int = -1) -> bytes:
        out = []
        while n != 0:
            if self.at == len(self.chunk):
                more = next(self.it, None)
                if more is None:
                    break
                self.chunk, self.at = more, 0
            take = len(self.chunk) - self.at if n < 0 else min(n, len(self.chunk) - self.at)
            out.append(self.chunk[self.at : self.at + take])
            self.at += take
            if n > 0:
                n -= take
        return b"".join(out)


def _tar_gz(level: int | None) -> WriteAll:
    def write_all(entries: Iterator[Entry], write: Callable[[bytes], None]) -> None:
        compress = level if level is not None else 6
        # tar in stream mode into gzip (Python 3.11's stream mode takes no level).
        with (
            gzip.GzipFile(fileobj=_Writer(write), mode="wb", compresslevel=compress) as gz,
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, st, chunks in entries:
                info = tarfile.TarInfo(name)
                info.size = st.size
                info.mtime = int(st.created_at.timestamp())
                info.mode = 0o644
                tar.addfile(info, _Reader(chunks))

    return write_all


def archive_stream(
    fmt: str,
    blobs: BlobStore,
    members: Members | list[tuple[str, FileState]],
    progress: _Progress,
    level: int | None,
) -> AsyncIterator[bytes]:
    """The archive's bytes, written in a thread (archive_thread.py) from the members' bytes
    as the blob store gives them."""
    write_all = _zip(level) if fmt == "zip" else _tar_gz(level)
    return archive(write_all, members, functools.partial(_member_bytes, blobs, progress=progress))


async def run_compress(run: TaskRun, settings: Settings, blobs: BlobStore) -> list[str]:
    params = run.state.params
    result_id = result_file_id(run.task_id)
    if await load_file(run, result_id) is not None:
        return [result_id]  # created before a crash; only the completion was missing
    fmt = str(params.get("format") or "zip")
    level = params.get("level")
    output = params.get("output") or {}
    files = [str(f) for f in params.get("files") or []]
    await check_destination(run, str(output.get("bucket") or "default"))
    members = await _list(run, files)
    progress = _Progress(run)
    sink = ArchiveSink(blobs, settings.default_chunk_size)
    await sink.drain(archive_stream(fmt, blobs, members, progress, level))
    await run.check(force=True)  # cancelled while the last bytes were stored: no result
    async with quota_for_file(run, settings, sink.size, result_id):
        await _record(run, members, progress, result_id, output, fmt, sink)
    run.bytes_done = progress.read
    return [result_id]


def member_slices(names: list[str]) -> Iterator[tuple[int, int]]:
    """[first, stop) of each checkpoint of member results: at most MEMBER_BATCH of them
    and MEMBER_BATCH_BYTES of their JSON (at least one each). Derived from the names
    alone, so a run after a crash cuts the same slices (their command ids)."""
    first, size = 0, 0
    for i, name in enumerate(names):
        n = len(name.encode("utf-8", "surrogatepass")) + RESULT_BYTES
        if i > first and (i - first >= MEMBER_BATCH or size + n > MEMBER_BATCH_BYTES):
            yield first, i
            first, size = i, 0
        size += n
    if first < len(names):
        yield first, len(names)


class _Members:
    """The files to archive, in order: their ids, archive names and sizes, listed once;
    their states (manifests) read from the event store a batch at a time as the archive
    reaches them (archive_thread.Members), so a compress of 80,000 files does not hold
    80,000 manifests for its whole run."""

    def __init__(self, run: TaskRun, ids: list[str], names: list[str], sizes: list[int]):
        self.run = run
        self.ids = ids
        self.names = names
        self.sizes = sizes

    def __len__(self) -> int:
        return len(self.ids)

    def size(self, i: int) -> int:
        return self.sizes[i]

    async def take(self, start: int, stop: int) -> list[tuple[str, FileState]]:
        states = await load_files(self.run, self.ids[start:stop])
        out = []
        for index, st in enumerate(states, start):
            if st is None:
                raise _gone(self.ids[index], index)
            out.append((self.names[index], st))
        return out


def _gone(file_id: str, index: int) -> TaskFailure:
    return TaskFailure(
        "file_not_found", "a file to compress is gone", {"file": file_id, "index": index}
    )


async def _list(run: TaskRun, files: list[str]) -> _Members:
    """Every file checked (one gone fails the task before anything is archived) and named,
    STATES_PER_LOAD per query, a few queries at once; only names and sizes are kept."""

    async def listed(first: int) -> list[tuple[str, int]]:
        states = await load_files(run, files[first : first + STATES_PER_LOAD])
        out = []
        for index, st in enumerate(states, first):
            if st is None:
                raise _gone(files[index], index)
            # An object is archived under its key (its path), a plain file under its name.
            out.append((member_name(st.key or st.name), st.size))
        return out

    batches = await map_bounded(listed, range(0, len(files), STATES_PER_LOAD), LOADS_AT_ONCE)
    names = [name for batch in batches for name, _ in batch]
    sizes = [size for batch in batches for _, size in batch]
    return _Members(run, files, unique_names(names), sizes)


async def _record(
    run: TaskRun,
    members: _Members,
    progress: _Progress,
    result_id: str,
    output: dict[str, Any],
    fmt: str,
    sink: ArchiveSink,
) -> None:
    """The members' results, then the archive's file."""
    # In slices: one command (and one event on the bus) per MEMBER_BATCH results, so an
    # archive of 65,536+ members is not one message of megabytes (over the broker's limit).
    # Each slice has its own command id and continues from the last: sent again after a
    # crash, the ones recorded already change nothing (domain/tasks/decide.py).
    for first, stop in member_slices(members.names):
        await run.send(
            run.command(
                RecordProgress,
                first=first,
                results=[
                    {"index": i, "source": members.ids[i], "result": members.names[i]}
                    for i in range(first, stop)
                ],
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
