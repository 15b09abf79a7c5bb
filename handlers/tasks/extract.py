"""extract: each regular member of a zip, tar or tar.gz becomes a file.

Safety first, before anything is written: the whole member list is read (zip: the
central directory; tar: every header, streaming through the data) and the archive is
refused if any member is unsafe (an absolute path, a `..` component, a backslash or a
drive letter: zip-slip), is a symlink, a hard link or a device/FIFO, is an encrypted zip
member or one compressed by a method zipfile cannot read, or if the archive
goes over a limit: more entries than CAIRN_TASK_MAX_ITEMS, more uncompressed bytes than
CAIRN_TASK_EXTRACT_MAX_BYTES, or an uncompressed/compressed ratio above
CAIRN_TASK_EXTRACT_MAX_RATIO (zip bombs). The error names the member or the limit. A tar
whose headers tarfile would read carelessly is not an archive here: a negative size, a
metadata header (pax, GNU long name) over 1 MiB or more than 8 in a row, a member's
headers over 4 MiB (GNU sparse extension blocks), a damaged header before the end
(tarfile took it for the end).

Then member by member (an item each, checkpointed like copy): the member is streamed out
of the archive (zipfile / tarfile in a thread over a seekable view of the stored file,
threads.py) into chunks in the blob store (archive_out.py) and becomes a file with an id
and command id derived from (task, member index): a takeover does a member again at
most, never twice.

Two stages, so that members do not wait for each other's command round trips (which took
most of each member's time when they ran one after another):
- the store stage reads the archive once, in one pass, in one thread (`walk_members`; it
  was opened again for every member before, which for a tar.gz meant decompressing from
  the start each time), and stores up to AHEAD members' chunks ahead of the commits;
- the commit stage takes the members in order, each after a safe point (TaskRun.check),
  and keeps up to SENDING commands in flight (files are different aggregates: the actor
  host applies them concurrently, in shared group commits). Results are checkpointed in
  member order as the commands end.
What the store stage meets (a corrupt member, a pause, the quota) reaches the commit stage
in member order, after the members before it. However the run ends, the commands already
sent are waited for and recorded, so the checkpoint says what happened: a refused member
is recorded with its error, then any sent after it that were applied, then the task fails
with that error. Chunks stored ahead of a stop are unreferenced and collected.

A file's name is `output.prefix` + the member's base name (file names are names, not
paths); the member's path is kept in the file's metadata `archive_path`. Zip declared
sizes are enforced while reading (zipfile stops at the declared size and checks the CRC),
so a lying header cannot inflate past the limits. A corrupt member fails the task naming
the member and its offset in the archive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import io
import mimetypes
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Self

from bus.config.settings import Settings
from domain.commands import CreateFile
from domain.errors import DomainError
from domain.files.keys import object_file_id, object_key_problem
from domain.policies import put_object
from domain.ports import BlobStore
from domain.tasks.commands import RecordProgress
from domain.tasks.ids import item_command_id, item_file_id
from domain.values import file_name_problem
from handlers.held import upgrade_in_progress
from handlers.tasks.archive_out import ArchiveSink
from handlers.tasks.fileops import (
    check_destination,
    check_quota,
    load_file,
    quota_for_file,
    replace_files,
    target_exists,
)
from handlers.tasks.run import CHECK_EVERY, Stop, TaskFailure, TaskRun, utcnow
from handlers.tasks.threads import BlobFile, buffered, iterate_in_thread
from projections import task_queries

READ_PIECE = 1 << 20
# Members stored ahead of the one being committed: the overlap, at the cost of that many
# members' chunks left unreferenced when the run stops early.
AHEAD = 8
# Members whose commands are in flight at once: commands for different files are applied
# concurrently by the actor host and share its group commits.
SENDING = 8
# IndexError: tarfile reading a GNU sparse header's extension block past a cut-off end.
_CORRUPT = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    IndexError,
)
# The zip compression methods zipfile reads (deflate64, ppmd, AES's 99... it does not).
_ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)


@dataclass(frozen=True)
class Member:
    index: int
    path: str
    size: int
    compressed: int
    offset: int
    raw: str = ""  # the name as the archive library knows it (to open the member)


def unsafe_path(path: str) -> str | None:
    """Why a member path may not be extracted (zip-slip), or None."""
    if not path:  # "", or only `.` components
        return "an empty name"
    if path.startswith(("/", "\\")) or "\\" in path:
        return "an absolute path or a backslash"
    if len(path) > 1 and path[1] == ":":
        return "a drive letter"
    if any(part == ".." for part in path.split("/")):
        return "a '..' component"
    return None


def member_path(name: str) -> str:
    """The member's path without `.` components: `tar -C dir -czf a.tgz .` names every
    member `./...`, which into a bucket became keys such as `in/./a.txt`."""
    return "/".join(p for p in name.split("/") if p != ".")


def detect(head: bytes) -> str | None:
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _refuse(code: str, message: str, **details: object) -> TaskFailure:
    return TaskFailure(code, message, dict(details))


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The member's name: tools such as Info-ZIP store UTF-8 names without the UTF-8 flag,
    which zipfile then reads as cp437; such a name is read back as UTF-8 when it is that."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _zip_entries_within(f: BinaryIO, limits: ListingLimits) -> None:
    """Refuse a zip of more than CAIRN_TASK_MAX_ITEMS entries before zipfile reads them:
    it makes a ZipInfo of every entry of the central directory before the listing sees
    one (47 MB of entries took 9.5 s and 314 MB before the limit refused them). The
    central directory is walked here (each entry's 46 bytes and name), up to the entry
    past the limit; anything unexpected is left to zipfile to judge."""
    endrec = zipfile._EndRecData(f)  # type: ignore[attr-defined]  # as zipfile finds it
    if not endrec:
        return
    size_cd, location = int(endrec[5]), int(endrec[9])
    start = location - size_cd
    if endrec[0] == b"PK\x06\x06":  # a zip64 end record and its locator come before
        start -= 56 + 20
    f.seek(max(start, 0))
    seen = 0
    for entries in range(1, limits.settings.task_max_items + 2):
        head = f.read(46)
        if len(head) < 46 or head[:4] != b"PK\x01\x02" or seen >= size_cd:
            return
        (flags,) = struct.unpack("<H", head[8:10])
        name_len, extra_len, comment_len = struct.unpack("<3H", head[28:34])
        name = f.read(name_len)
        f.seek(extra_len + comment_len, io.SEEK_CUR)
        seen += 46 + name_len + extra_len + comment_len
        if entries > limits.settings.task_max_items:
            raise limits.too_many(name.decode("utf-8" if flags & 0x800 else "cp437", "replace"))


def _list_zip(f: BlobFile, limits: ListingLimits | None = None) -> list[Member]:
    out: list[Member] = []
    source = buffered(f)
    if limits is not None:
        _zip_entries_within(source, limits)
    with zipfile.ZipFile(source) as z:
        for info in z.infolist():
            mode = info.external_attr >> 16
            if limits is not None:
                limits.add(info.filename, 0 if info.is_dir() else info.file_size)
            if info.is_dir():
                continue
            if stat.S_ISLNK(mode):
                raise _refuse("unsafe_member", "symbolic links are refused", member=info.filename)
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no type recorded
                raise _refuse("unsafe_member", "special files are refused", member=info.filename)
            path = member_path(_zip_name(info))
            if problem := unsafe_path(path):
                raise _refuse("unsafe_member", f"unsafe path: {problem}", member=info.filename)
            # zipfile would raise at the member's turn, half-way through the extraction:
            # refused with the listing instead, before anything is written.
            if info.flag_bits & 0x1:
                raise _refuse(
                    "encrypted_member",
                    "encrypted members cannot be extracted (a task takes no password)",
                    member=info.filename,
                )
            if info.compress_type not in _ZIP_METHODS:
                raise _refuse(
                    "unsupported_compression",
                    f"compression method {info.compress_type} is not supported"
                    " (stored, deflate, bzip2 and lzma are)",
                    member=info.filename,
                    method=info.compress_type,
                )
            out.append(
                Member(
                    len(out),
                    path,
                    info.file_size,
                    info.compress_size,
                    info.header_offset,
                    info.filename,
                )
            )
    return out


# Metadata headers (pax, GNU long names): tarfile reads each one's data whole into memory,
# and the headers before a member recursively, before the listing sees the member.
_TAR_META = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
    | {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
)
TAR_META_MAX = 1 << 20  # bytes in one (Go's archive/tar has the same limit)
TAR_META_IN_A_ROW = 8  # before one member (tar and bsdtar write two at most)
# Bytes all of one member's headers may take: an old GNU sparse header is followed by as
# many extension blocks as it says, whose entries tarfile keeps in a list.
TAR_HEADERS_MAX = 4 << 20
# A header tarfile cannot read (not in typeshed): a bad checksum, a cut-off block.
_DAMAGED: tuple[type[Exception], ...] = (
    tarfile.InvalidHeaderError,  # type: ignore[attr-defined]
    tarfile.TruncatedHeaderError,  # type: ignore[attr-defined]
)


class _HeaderBudget:
    """The archive as tarfile reads it while it reads one member's headers: past `left`
    bytes, refused."""

    def __init__(self, f: Any, left: int) -> None:
        self.f, self.left = f, left

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.f.read(n)
        self.left -= len(data)
        if self.left < 0:
            raise _TarRefused(f"a member's headers take more than {TAR_HEADERS_MAX} bytes")
        return data

    def tell(self) -> int:
        return int(self.f.tell())

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.f.seek(offset, whence))


class _TarInfo(tarfile.TarInfo):
    """A header that refuses metadata past TAR_META_MAX or TAR_META_IN_A_ROW before its
    data is read, and a member's headers past TAR_HEADERS_MAX as they are read: a small
    tar.gz of one long-name header declaring a gigabyte held a gigabyte in memory, one of
    a sparse header with 200,000 extension blocks (447 KB) took 15 s and 580 MB, and a
    few hundred pax headers in a row were a RecursionError (an internal_error). A damaged
    header is refused, not taken for the archive's end."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> Self:
        # tarfile ends at a header it cannot read (a bad checksum, a cut-off block) as if
        # the archive ended there: the members after it were left out and the task
        # completed. Only the zero blocks or the file's end end it here.
        try:
            return super().fromtarfile(tar)
        except _DAMAGED as e:
            raise _TarRefused(f"a damaged header at offset {tar.offset}: {e}") from None

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        # tarfile's hook for TarInfo subclasses (not in typeshed).
        if not isinstance(tar.fileobj, _HeaderBudget):
            # The first header of a member (the ones after it, pax and long names, are
            # read within this call): all its headers' reads share one budget.
            outer = tar.fileobj
            tar.fileobj = _HeaderBudget(outer, TAR_HEADERS_MAX)  # type: ignore[assignment]
            try:
                return self._proc_member(tar)
            finally:
                tar.fileobj = outer
        # The count of metadata headers read in a row is kept on the TarFile, which reads
        # one member at a time.
        in_a_row = getattr(tar, "_cairn_meta_in_a_row", 0) + 1 if self.type in _TAR_META else 0
        setattr(tar, "_cairn_meta_in_a_row", in_a_row)  # noqa: B010
        if in_a_row and self.size > TAR_META_MAX:
            raise _TarRefused(f"a metadata header of {self.size} bytes (over {TAR_META_MAX})")
        if in_a_row > TAR_META_IN_A_ROW:
            raise _TarRefused(f"more than {TAR_META_IN_A_ROW} metadata headers in a row")
        member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return member


class _TarRefused(tarfile.HeaderError):
    """A header this code will not read (tarfile passes it on, as a TarError)."""


def _list_tar(f: BlobFile, fmt: str, limits: ListingLimits | None = None) -> list[Member]:
    out: list[Member] = []
    with tarfile.open(
        fileobj=buffered(f), mode="r:gz" if fmt == "tar.gz" else "r:", tarinfo=_TarInfo
    ) as tar:
        for m in tar:
            if m.size < 0:
                # A pax `size` (a global one applies to every member after it) or a
                # base-256 size may be negative: it lowered the total the limits count,
                # so a bomb after it passed them.
                raise _TarRefused(f"member {m.name!r} declares a negative size")
            # Before the next header is read: that skips this member's data (decompressing
            # it, in a tar.gz), which a member past the limits must not cost.
            if limits is not None:
                limits.add(m.name, m.size if m.isreg() else 0)
            if m.isdir():
                continue
            if m.issym() or m.islnk():
                raise _refuse("unsafe_member", "links are refused", member=m.name)
            if not m.isreg():
                raise _refuse("unsafe_member", "device files and FIFOs are refused", member=m.name)
            path = member_path(m.name)
            if problem := unsafe_path(path):
                raise _refuse("unsafe_member", f"unsafe path: {problem}", member=m.name)
            out.append(Member(len(out), path, m.size, m.size, m.offset))
    return out


class ListingLimits:
    """An archive's limits, checked as its listing reaches each entry (files and
    directories), so that an archive past one is refused at the entry that passes it.

    Checking after the whole listing was too late for a tar: listing reads every header,
    skipping each member's data on the way (decompressing it, for a tar.gz), and tarfile
    keeps every header it read. A small tar.gz of headers declaring huge members, or of
    millions of entries, cost minutes of CPU or gigabytes of memory before its refusal.
    Sizes are the declared ones (zip: the central directory; tar: the headers), which the
    reading enforces later."""

    def __init__(self, settings: Settings, archive_size: int) -> None:
        self.settings = settings
        self.archive_size = max(archive_size, 1)
        self.entries = 0
        self.total = 0

    def add(self, name: str, size: int) -> None:
        """One more entry, `name`, of `size` uncompressed bytes (0 for a directory);
        TaskFailure, naming the entry that passed the limit, once the archive is past one."""
        s = self.settings
        self.entries += 1
        self.total += size
        if self.entries > s.task_max_items:
            raise self.too_many(name)
        if self.total > s.task_extract_max_bytes:
            raise _refuse(
                "archive_too_large",
                "the archive's contents exceed the extraction limit",
                limit=s.task_extract_max_bytes,
                setting="CAIRN_TASK_EXTRACT_MAX_BYTES",
                member=name,
                total_at_least=self.total,
            )
        # The total only grows, so a ratio past the limit now stays past it.
        ratio = self.total / self.archive_size
        if self.total > 1 << 20 and ratio > s.task_extract_max_ratio:
            raise _refuse(
                "compression_ratio_exceeded",
                "the archive expands more than the ratio limit allows (a zip bomb?)",
                limit=s.task_extract_max_ratio,
                setting="CAIRN_TASK_EXTRACT_MAX_RATIO",
                member=name,
                ratio_at_least=round(ratio, 1),
            )

    def too_many(self, name: str) -> TaskFailure:
        """The refusal of an archive whose entry `name` is one past CAIRN_TASK_MAX_ITEMS."""
        limit = self.settings.task_max_items
        return _refuse(
            "too_many_entries",
            f"the archive has more than {limit} entries",
            limit=limit,
            setting="CAIRN_TASK_MAX_ITEMS",
            member=name,
        )


class MemberFailed(Exception):
    """A member that cannot be read, raised out of the reading thread with the member."""

    def __init__(self, member: Member, error: BaseException) -> None:
        super().__init__(str(error))
        self.member = member
        self.error = error


def walk_members(
    f: BinaryIO, fmt: str, members: Sequence[Member]
) -> Iterator[tuple[Member, bytes | None]]:
    """The bytes of `members` (in archive order), in one pass over the archive: (member,
    piece) for each piece, then (member, None) at its end. A member that cannot be read
    raises MemberFailed naming it."""
    if not members:
        return
    if fmt == "zip":
        try:
            archive = zipfile.ZipFile(f)
        except _CORRUPT as e:
            raise MemberFailed(members[0], e) from None
        with archive as z:
            # By the member's own entry (its header offset), not by its name: a name that
            # is in the archive twice names the last such entry in zipfile, so every
            # member of that name would be given the last one's bytes.
            entries = {info.header_offset: info for info in z.infolist()}
            for m in members:
                try:
                    with z.open(entries.get(m.offset) or m.raw or m.path) as src:
                        while piece := src.read(READ_PIECE):
                            yield m, piece
                except _CORRUPT as e:
                    raise MemberFailed(m, e) from None
                yield m, None
        return
    wanted = {m.offset: m for m in members}
    current: Member | None = None  # the member being read, for the error
    try:
        with tarfile.open(fileobj=f, mode="r:gz" if fmt == "tar.gz" else "r:") as tar:
            while wanted:
                info = tar.next()
                if info is None:
                    raise EOFError("member not found again")
                current = wanted.pop(info.offset, None)
                if current is None:
                    continue  # a directory, or a member done before this run
                data = tar.extractfile(info)
                assert data is not None
                left = info.size
                while left > 0:
                    piece = data.read(min(READ_PIECE, left))
                    if not piece:
                        raise EOFError("unexpected end of member data")
                    left -= len(piece)
                    yield current, piece
                yield current, None
                current = None
    except _CORRUPT as e:
        # Between members (a damaged header): the next member wanted is the one lost.
        failed = current or min(wanted.values(), key=lambda w: w.index)
        raise MemberFailed(failed, e) from None


def _file_name(prefix: str, m: Member) -> str:
    return prefix + m.path.rsplit("/", 1)[-1]


async def _collisions(
    run: TaskRun, members: list[Member], bucket: str, prefix: str
) -> dict[int, list[str]]:
    """member index -> live files in the destination named like its file (the overwrite
    rule of handlers/tasks/fileops.py: without overwrite, any fails the task here, before
    anything more is written)."""
    left = members[run.state.items_done :]
    if not left:
        return {}
    found = await task_queries.live_names(
        run.pool, run.state.owner, bucket, [_file_name(prefix, m) for m in left]
    )
    own = {item_file_id(run.task_id, m.index) for m in members}
    out: dict[int, list[str]] = {}
    for m in left:
        if hits := [f for f in found.get(_file_name(prefix, m), []) if f not in own]:
            out[m.index] = hits
    if out and not run.state.params.get("overwrite"):
        raise target_exists(bucket, sorted({_file_name(prefix, m) for m in left if m.index in out}))
    return out


async def run_extract(run: TaskRun, settings: Settings, blobs: BlobStore) -> list[str]:
    params = run.state.params
    output = params.get("output") or {}
    source = await load_file(run, str(params.get("file")))
    if source is None:
        raise _refuse("file_not_found", "the archive is gone", file=params.get("file"))
    loop = asyncio.get_running_loop()
    blob_file = BlobFile(blobs, list(source.manifest), loop)
    head = await asyncio.to_thread(lambda: blob_file.read(512))
    fmt = str(params.get("format") or detect(head) or "")
    if fmt not in ("zip", "tar", "tar.gz") or (params.get("format") is None and not head):
        raise _refuse("not_an_archive", "the file is not a zip, tar or tar.gz archive")
    limits = ListingLimits(settings, source.size)
    reader = BlobFile(blobs, list(source.manifest), loop)
    try:
        if fmt == "zip":
            members = await _listed(run, reader, functools.partial(_list_zip, reader, limits))
        else:
            members = await _listed(run, reader, functools.partial(_list_tar, reader, fmt, limits))
    except TaskFailure:
        raise
    except _CORRUPT as e:
        raise _refuse("not_an_archive", f"the file is not a readable {fmt} archive: {e}") from None
    prefix = str(output.get("prefix") or "")
    bucket = str(output.get("bucket") or "default")
    await check_destination(run, bucket)
    if bucket != "default":
        return await _extract_objects(run, settings, blobs, source.manifest, fmt, members)
    for m in members:
        # Files the upload API could not make (control characters, only dots, too long):
        # refused with the listing, before anything is written, like unsafe paths.
        if problem := file_name_problem(_file_name(prefix, m), "name"):
            raise _refuse("invalid_file_name", f"member {m.path!r}: {problem}", member=m.path)
    taken = await _collisions(run, members, bucket, prefix)

    async def done_already(m: Member) -> bool:
        return await load_file(run, item_file_id(run.task_id, m.index)) is not None

    async def commit(m: Member, sink: ArchiveSink | None) -> dict[str, object]:
        file_id = item_file_id(run.task_id, m.index)
        if sink is not None:
            async with quota_for_file(run, settings, sink.size, file_id):
                await run.send(
                    CreateFile(
                        aggregate_id=file_id,
                        caller=run.state.owner,
                        at=utcnow(),
                        owner=run.state.owner,
                        name=_file_name(prefix, m),
                        size=sink.size,
                        content_type="application/octet-stream",
                        sha256=sink.sha256,
                        manifest=sink.manifest,
                        bucket=bucket,
                        metadata={"archive_path": m.path},
                        command_id=item_command_id(run.task_id, m.index, "extract"),
                    )
                )
        result: dict[str, object] = {"index": m.index, "source": m.path, "result": file_id}
        if replaced := await replace_files(run, m.index, taken.get(m.index, [])):
            result["replaced"] = replaced
        return result

    await _record_totals(run, members)
    job = _Extraction(run, settings, blobs, source.manifest, fmt, done_already)
    await _extract_in_order(job, members[run.state.items_done :], commit)
    await run.flush()
    return []


async def _listed(
    run: TaskRun, reader: BlobFile, listing: Callable[[], list[Member]]
) -> list[Member]:
    """`listing()` in a thread, reading `reader`, with the run's safe points meanwhile.

    Listing a tar.gz decompresses all of it (tens of seconds for gigabytes), and a pause,
    a cancel or the worker stopping waited for it to end. Now what ends the run here
    (Stop, or anything else) is handed to the reader, which raises it at its next read
    (each MiB of the archive), and the thread is waited for before it goes on up."""
    job = asyncio.ensure_future(asyncio.to_thread(listing))
    try:
        while True:
            await run.check()
            done, _ = await asyncio.wait({job}, timeout=CHECK_EVERY)
            if done:
                return job.result()
    except BaseException as e:
        reader.stop = Stop(e.reason if isinstance(e, Stop) else "the run ended")
        with contextlib.suppress(BaseException):
            await job
        raise


async def _record_totals(run: TaskRun, members: list[Member]) -> None:
    """The task was created knowing only the archive's size; once it is listed (and
    accepted), its totals become the members' count and their bytes as each member counts
    them when done (compressed in a zip, the data in a tar), so items_done and bytes_done
    end at the totals. Recorded with the checkpoint's state (nothing new: the same totals
    sent again by a resumed run change nothing, domain/tasks/decide.py)."""
    await run.send(
        run.command(
            RecordProgress,
            first=run.state.items_done,
            results=[],
            bytes_done=run.bytes_done,
            items_total=len(members),
            bytes_total=sum(m.compressed for m in members),
        )
    )


@dataclass(frozen=True)
class _Extraction:
    """What both stages of one run work from: the run, where the archive is, how to read
    it, which members were made before a takeover, and (into a bucket) the object each
    member is put to (member index -> file id)."""

    run: TaskRun
    settings: Settings
    blobs: BlobStore
    manifest: Sequence[tuple[str, int]]
    fmt: str
    done_already: Callable[[Member], Awaitable[bool]]
    objects: Mapping[int, str] = field(default_factory=dict)


async def _extract_in_order(
    job: _Extraction,
    members: list[Member],
    commit: Callable[[Member, ArchiveSink | None], Coroutine[Any, Any, dict[str, object]]],
) -> None:
    """Store members ahead (`_store_ahead`); commit each after a safe point, up to SENDING
    at once, and record each one's result in member order as its command ends. `commit`
    gets None for a member `done_already` (made before a takeover)."""
    stored: asyncio.Queue[tuple[Member, ArchiveSink | None] | BaseException] = asyncio.Queue(AHEAD)
    storing = asyncio.create_task(_store_ahead(job, members, stored))
    run = job.run
    sending: collections.deque[tuple[Member, asyncio.Task[dict[str, object]]]] = collections.deque()
    refused: list[BaseException] = []
    unknown = False  # a command's outcome is not known: nothing after it may be recorded

    async def record_first() -> None:
        nonlocal unknown
        m, command = sending.popleft()
        try:
            result = await command
        except BaseException as e:
            # (An upgrade in progress is no refusal of the member: the task waits for
            # the new version, handlers/tasks/worker.py.)
            if not isinstance(e, (DomainError, TaskFailure)) or upgrade_in_progress(e):
                unknown = True
                raise
            # Refused. Commands sent after it may have been applied: they are recorded
            # too (below), after this member's error, and then the task fails with it.
            refused.append(e)
            error = (
                {k: e.error[k] for k in ("code", "message")}
                if isinstance(e, TaskFailure)
                else {"code": e.code, "message": e.message}
            )
            await run.item_done({"index": m.index, "source": m.path, "error": error})
            return
        await run.item_done(result, m.compressed)

    try:
        for _ in members:
            item = await stored.get()
            if isinstance(item, BaseException):
                raise item
            await run.check()
            sending.append((item[0], asyncio.create_task(commit(*item))))
            while sending and (len(sending) >= SENDING or sending[0][1].done()):
                await record_first()
            if refused:
                break
    finally:
        # However the loop ends (done, refused, paused, failed), every command sent is
        # waited for and recorded in order, so the checkpoint says exactly what happened
        # (one whose outcome is unknown, the bus being down, ends the recording there: a
        # retry does that member and the ones after it again, by the same command ids).
        try:
            while sending and not unknown:
                await record_first()
        finally:
            for _, command in sending:
                command.cancel()
            # Stopping early: the members stored ahead stay unreferenced (collected).
            storing.cancel()
            with contextlib.suppress(BaseException):
                await storing
    if refused:
        raise refused[0]


async def _store_ahead(
    job: _Extraction,
    members: list[Member],
    out: asyncio.Queue[tuple[Member, ArchiveSink | None] | BaseException],
) -> None:
    """Read the archive once and store each member's chunks, handing (member, its chunks)
    to the commit stage in order; a failure is handed on in its place, and ends the stage
    (the queue's bound is how far ahead it may get)."""
    run, settings = job.run, job.settings
    reader = BlobFile(job.blobs, list(job.manifest), asyncio.get_running_loop())
    sink: ArchiveSink | None = None
    skip = False
    walk = functools.partial(walk_members, buffered(reader), job.fmt, members)
    try:
        async with contextlib.aclosing(iterate_in_thread(walk)) as pieces:
            async for m, piece in pieces:
                if sink is None and not skip:  # the member's first piece (or its end)
                    skip = await job.done_already(m)
                    if not skip:
                        # Before its chunks are stored; the commit holds it (quota_for_file).
                        # A member put as an object is asked only what it adds to its key,
                        # as an object PUT is: one overwriting as many bytes passes.
                        await check_quota(run, settings, m.size, put=job.objects.get(m.index))
                        sink = ArchiveSink(job.blobs, settings.default_chunk_size)
                if piece is not None:
                    if sink is not None:
                        await sink.write(piece)
                    await run.check()
                    continue
                if sink is not None:
                    await sink.close()
                await out.put((m, sink))
                sink, skip = None, False
    except asyncio.CancelledError:
        raise
    except MemberFailed as e:
        await out.put(
            _refuse(
                "corrupt_archive",
                f"member {e.member.path!r} cannot be read: {e.error}",
                member=e.member.path,
                offset=e.member.offset,
            )
        )
    except BaseException as e:  # a pause seen here, the quota, the blob store: in order too
        await out.put(e)
    finally:
        if sink is not None:  # stopped within a member: a chunk may be being stored
            sink.abandon()


async def _extract_objects(
    run: TaskRun,
    settings: Settings,
    blobs: BlobStore,
    manifest: Sequence[tuple[str, int]],
    fmt: str,
    members: list[Member],
) -> list[str]:
    """Into a bucket: member `path` becomes the object `prefix + path` (a key is a string,
    never a filesystem path; unsafe paths were refused with the listing). Each object is
    written with `put_object` (domain/policies.py): its file id is derived from (bucket,
    key), and it records the task in its metadata (`extracted_by`), so a takeover knows an
    object it wrote already from one someone else did. Collisions follow the overwrite
    rule (handlers/tasks/fileops.py): without overwrite a live object at any key fails
    the task before anything is written (and one appearing meanwhile fails it then, as
    the put is `if_none_match`); with it, the new version replaces the old in one step."""
    output = run.state.params.get("output") or {}
    prefix = str(output.get("prefix") or "")
    bucket = str(output.get("bucket"))
    overwrite = bool(run.state.params.get("overwrite"))
    keys = {m.index: prefix + m.path for m in members}
    seen: set[str] = set()
    for m in members:
        if problem := object_key_problem(keys[m.index]):
            raise _refuse("invalid_key", f"member {m.path!r}: {problem}", member=m.path)
        if keys[m.index] in seen:
            # Two members, one key: the second would meet the first as a collision (or
            # overwrite it) half-way through. Refused with the listing instead.
            raise _refuse(
                "duplicate_member", f"member {m.path!r} is in the archive twice", member=m.path
            )
        seen.add(keys[m.index])
    left = members[run.state.items_done :]
    live = await task_queries.live_keys(run.pool, bucket, [keys[m.index] for m in left])
    taken = sorted(k for k, by in live.items() if by != run.task_id)
    if taken and not overwrite:
        raise target_exists(bucket, taken)

    async def done_already(m: Member) -> bool:
        current = await load_file(run, object_file_id(bucket, keys[m.index]))
        return current is not None and current.metadata.get("extracted_by") == run.task_id

    async def commit(m: Member, sink: ArchiveSink | None) -> dict[str, object]:
        key = keys[m.index]
        if sink is not None:
            try:
                # As an object PUT: asked only what the member adds to its key, and held
                # until the files read model has the version the put left (`hold.version`),
                # so the key is not counted at its old size meanwhile.
                async with quota_for_file(
                    run, settings, sink.size, object_file_id(bucket, key), put=True
                ) as hold:
                    put = await run.send(
                        put_object(
                            bucket=bucket,
                            key=key,
                            owner=run.state.owner,
                            size=sink.size,
                            sha256=sink.sha256,
                            manifest=sink.manifest,
                            content_type=mimetypes.guess_type(key)[0] or "application/octet-stream",
                            caller=run.state.owner,
                            at=utcnow(),
                            metadata={"archive_path": m.path, "extracted_by": run.task_id},
                            if_none_match=not overwrite,
                            command_id=item_command_id(run.task_id, m.index, "object"),
                        )
                    )
                    hold.version = put.version
            except DomainError as e:
                if e.code == "object_exists":  # written by someone else since the check
                    raise target_exists(bucket, [key]) from None
                raise
        result: dict[str, object] = {
            "index": m.index,
            "source": m.path,
            "result": object_file_id(bucket, key),
            "key": key,
        }
        if key in taken:
            result["replaced"] = [object_file_id(bucket, key)]
        return result

    await _record_totals(run, members)
    objects = {m.index: object_file_id(bucket, keys[m.index]) for m in left}
    job = _Extraction(run, settings, blobs, manifest, fmt, done_already, objects)
    await _extract_in_order(job, left, commit)
    await run.flush()
    return []
