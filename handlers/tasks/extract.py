"""extract: each regular member of a zip, tar or tar.gz becomes a file.

Safety first, before anything is written: the whole member list is read (zip: the
central directory; tar: every header, streaming through the data) and the archive is
refused if any member is unsafe (an absolute path, a `..` component, a backslash or a
drive letter: zip-slip), is a symlink, a hard link or a device/FIFO, or if the archive
goes over a limit: more entries than CAIRN_TASK_MAX_ITEMS, more uncompressed bytes than
CAIRN_TASK_EXTRACT_MAX_BYTES, or an uncompressed/compressed ratio above
CAIRN_TASK_EXTRACT_MAX_RATIO (zip bombs). The error names the member or the limit.

Then member by member (an item each, checkpointed like copy): the member is streamed out
of the archive (zipfile / tarfile in a thread over a seekable view of the stored file,
threads.py) into chunks in the blob store (archive_out.py) and becomes a file with an id
and command id derived from (task, member index): a takeover does a member again at
most, never twice. A file's name is `output.prefix` + the member's base name (file names
are names, not paths); the member's path is kept in the file's metadata `archive_path`.
Zip declared sizes are enforced while reading (zipfile stops at the declared size and
checks the CRC), so a lying header cannot inflate past the limits. A corrupt member fails
the task naming the member and its offset in the archive.
"""

from __future__ import annotations

import asyncio
import functools
import mimetypes
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bus.config.settings import Settings
from domain.commands import CreateFile
from domain.errors import DomainError
from domain.files.keys import object_file_id, object_key_problem
from domain.policies import put_object
from domain.ports import BlobStore
from domain.tasks.ids import item_command_id, item_file_id
from handlers.tasks.archive_out import ArchiveSink
from handlers.tasks.fileops import check_quota, load_file, replace_files, target_exists
from handlers.tasks.run import TaskFailure, TaskRun, utcnow
from handlers.tasks.threads import BlobFile, buffered, iterate_in_thread
from projections import task_queries

READ_PIECE = 1 << 20
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError, ValueError)


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
    if not path or path.startswith(("/", "\\")) or "\\" in path:
        return "an absolute path or a backslash"
    if len(path) > 1 and path[1] == ":":
        return "a drive letter"
    if any(part == ".." for part in path.split("/")):
        return "a '..' component"
    return None


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


def _list_zip(f: BlobFile) -> list[Member]:
    out: list[Member] = []
    with zipfile.ZipFile(buffered(f)) as z:
        for info in z.infolist():
            mode = info.external_attr >> 16
            if info.is_dir():
                continue
            if stat.S_ISLNK(mode):
                raise _refuse("unsafe_member", "symbolic links are refused", member=info.filename)
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no type recorded
                raise _refuse("unsafe_member", "special files are refused", member=info.filename)
            if problem := unsafe_path(_zip_name(info)):
                raise _refuse("unsafe_member", f"unsafe path: {problem}", member=info.filename)
            out.append(
                Member(
                    len(out),
                    _zip_name(info),
                    info.file_size,
                    info.compress_size,
                    info.header_offset,
                    info.filename,
                )
            )
    return out


def _list_tar(f: BlobFile, fmt: str) -> list[Member]:
    out: list[Member] = []
    with tarfile.open(fileobj=buffered(f), mode="r:gz" if fmt == "tar.gz" else "r:") as tar:
        for m in tar:
            if m.isdir():
                continue
            if m.issym() or m.islnk():
                raise _refuse("unsafe_member", "links are refused", member=m.name)
            if not m.isreg():
                raise _refuse("unsafe_member", "device files and FIFOs are refused", member=m.name)
            if problem := unsafe_path(m.name):
                raise _refuse("unsafe_member", f"unsafe path: {problem}", member=m.name)
            out.append(Member(len(out), m.name, m.size, m.size, m.offset))
    return out


def _check_limits(members: list[Member], archive_size: int, settings: Settings) -> None:
    if len(members) > settings.task_max_items:
        raise _refuse(
            "too_many_entries",
            f"the archive has more than {settings.task_max_items} entries",
            limit=settings.task_max_items,
            setting="CAIRN_TASK_MAX_ITEMS",
            entries=len(members),
        )
    total = sum(m.size for m in members)
    if total > settings.task_extract_max_bytes:
        raise _refuse(
            "archive_too_large",
            "the archive's contents exceed the extraction limit",
            limit=settings.task_extract_max_bytes,
            setting="CAIRN_TASK_EXTRACT_MAX_BYTES",
            total=total,
        )
    ratio = total / max(archive_size, 1)
    if total > 1 << 20 and ratio > settings.task_extract_max_ratio:
        raise _refuse(
            "compression_ratio_exceeded",
            "the archive expands more than the ratio limit allows (a zip bomb?)",
            limit=settings.task_extract_max_ratio,
            setting="CAIRN_TASK_EXTRACT_MAX_RATIO",
            ratio=round(ratio, 1),
        )


def _member_reader(f: BlobFile, fmt: str, member: Member) -> Iterator[bytes]:
    if fmt == "zip":
        with zipfile.ZipFile(buffered(f)) as z, z.open(member.raw or member.path) as zsrc:
            while piece := zsrc.read(READ_PIECE):
                yield piece
        return
    with tarfile.open(fileobj=buffered(f), mode="r:gz" if fmt == "tar.gz" else "r:") as tar:
        for m in tar:
            if m.offset == member.offset:
                src = tar.extractfile(m)
                assert src is not None
                left = m.size
                while left > 0:
                    piece = src.read(min(READ_PIECE, left))
                    if not piece:
                        raise EOFError("unexpected end of member data")
                    left -= len(piece)
                    yield piece
                return
        raise EOFError("member not found again")


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
    try:
        if fmt == "zip":
            members = await asyncio.to_thread(
                _list_zip, BlobFile(blobs, list(source.manifest), loop)
            )
        else:
            members = await asyncio.to_thread(
                _list_tar, BlobFile(blobs, list(source.manifest), loop), fmt
            )
    except TaskFailure:
        raise
    except _CORRUPT as e:
        raise _refuse("not_an_archive", f"the file is not a readable {fmt} archive: {e}") from None
    _check_limits(members, source.size, settings)
    prefix = str(output.get("prefix") or "")
    bucket = str(output.get("bucket") or "default")
    if bucket != "default":
        return await _extract_objects(run, settings, blobs, source.manifest, fmt, members)
    taken = await _collisions(run, members, bucket, prefix)
    for m in members[run.state.items_done :]:
        await run.check(force=True)
        file_id = item_file_id(run.task_id, m.index)
        if await load_file(run, file_id) is None:
            await check_quota(run, settings, m.size)
            sink = await _store_member(
                run, blobs, settings.default_chunk_size, source.manifest, fmt, m
            )
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
        await run.item_done(result, m.compressed)
    await run.flush()
    return []


async def _store_member(
    run: TaskRun,
    blobs: BlobStore,
    chunk_size: int,
    manifest: Sequence[tuple[str, int]],
    fmt: str,
    m: Member,
) -> ArchiveSink:
    """Stream member `m` out of the archive into stored chunks."""
    sink = ArchiveSink(blobs, chunk_size)
    reader = BlobFile(blobs, list(manifest), asyncio.get_running_loop())
    try:
        async for piece in iterate_in_thread(functools.partial(_member_reader, reader, fmt, m)):
            await sink.write(piece)
            await run.check()
        await sink.close()
    except _CORRUPT as e:
        raise _refuse(
            "corrupt_archive",
            f"member {m.path!r} cannot be read: {e}",
            member=m.path,
            offset=m.offset,
        ) from None
    return sink


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
    for m in members:
        if problem := object_key_problem(keys[m.index]):
            raise _refuse("invalid_key", f"member {m.path!r}: {problem}", member=m.path)
    left = members[run.state.items_done :]
    live = await task_queries.live_keys(run.pool, bucket, [keys[m.index] for m in left])
    taken = sorted(k for k, by in live.items() if by != run.task_id)
    if taken and not overwrite:
        raise target_exists(bucket, taken)
    for m in left:
        await run.check(force=True)
        key = keys[m.index]
        object_id = object_file_id(bucket, key)
        current = await load_file(run, object_id)
        if current is None or current.metadata.get("extracted_by") != run.task_id:
            await check_quota(run, settings, m.size)
            sink = await _store_member(run, blobs, settings.default_chunk_size, manifest, fmt, m)
            try:
                await run.send(
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
            except DomainError as e:
                if e.code == "object_exists":  # written by someone else since the check
                    raise target_exists(bucket, [key]) from None
                raise
        result: dict[str, object] = {
            "index": m.index,
            "source": m.path,
            "result": object_id,
            "key": key,
        }
        if key in taken:
            result["replaced"] = [object_id]
        await run.item_done(result, m.compressed)
    await run.flush()
    return []
