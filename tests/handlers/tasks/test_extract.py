"""extract's two stages: walk_members gives every member's bytes in one pass over the
archive, names a member that cannot be read, and only the members asked for (a resumed
run); the commit stage records what happened, in member order, however the run ends."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gzip
import io
import os
import struct
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bus.blobs.local import LocalBlobStore
from bus.config.settings import Settings
from domain.errors import DomainError
from handlers.tasks.archive_out import ArchiveSink
from handlers.tasks.extract import (
    _CORRUPT,
    SENDING,
    ListingLimits,
    Member,
    MemberFailed,
    _extract_in_order,
    _Extraction,
    _list_tar,
    _list_zip,
    _listed,
    walk_members,
)
from handlers.tasks.run import Stop, TaskFailure
from handlers.tasks.threads import BlobFile
from tests.archives import zip_of

FILES = {f"d/f{i:03d}.bin": os.urandom(1000 + 37 * i) for i in range(200)}


class CountingFile(io.BytesIO):
    """Bytes as a seekable file that counts what is read from it."""

    read_bytes = 0

    def read(self, n: int | None = -1) -> bytes:
        data = super().read(n)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        self.read_bytes += n
        return n


def make_zip() -> bytes:
    return zip_of(FILES, zipfile.ZIP_DEFLATED)


def make_tar(fmt: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if fmt == "tar.gz" else "w") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def archive(fmt: str) -> bytes:
    return make_zip() if fmt == "zip" else make_tar(fmt)


def listing(fmt: str, data: bytes) -> list[Member]:
    f: Any = CountingFile(data)
    return _list_zip(f) if fmt == "zip" else _list_tar(f, fmt)


def walk(fmt: str, data: bytes, members: list[Member]) -> tuple[dict[str, bytes], list[str], int]:
    """(bytes per member path, the order members ended in, bytes read from the archive)."""
    raw = CountingFile(data)
    out: dict[str, bytearray] = {}
    ended = []
    for m, piece in walk_members(raw, fmt, members):
        if piece is None:
            ended.append(m.path)
        else:
            out.setdefault(m.path, bytearray()).extend(piece)
    return {k: bytes(v) for k, v in out.items()}, ended, raw.read_bytes


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz"])
def test_every_member_in_order_in_one_pass(fmt: str) -> None:
    data = archive(fmt)
    members = listing(fmt, data)
    got, ended, read = walk(fmt, data, members)
    assert got == FILES
    assert ended == list(FILES)
    # One pass: what was read is the archive once, plus a little (a zip's end records)
    # (opening the archive again for each member read it 200 times for a tar.gz).
    assert read <= len(data) + 2 * 64 * 1024, (read, len(data))


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz"])
def test_a_resumed_run_gets_only_the_members_left(fmt: str) -> None:
    data = archive(fmt)
    members = listing(fmt, data)
    got, ended, _ = walk(fmt, data, members[150:])
    assert ended == list(FILES)[150:]
    assert got == {k: v for k, v in FILES.items() if k in ended}


def test_no_members_reads_nothing() -> None:
    got, ended, read = walk("tar.gz", archive("tar.gz"), [])
    assert (got, ended, read) == ({}, [], 0)


def damaged_zip(member_index: int) -> tuple[bytes, list[Member]]:
    """The zip with that member's compressed data damaged (its local header readable)."""
    data = bytearray(archive("zip"))
    members = listing("zip", bytes(data))
    bad = members[member_index]
    start = bad.offset + 30 + len(bad.raw.encode())
    for i in range(start + 5, start + 40):
        data[i] ^= 0xFF
    return bytes(data), members


def walk_until_failure(fmt: str, data: bytes, members: list[Member]) -> tuple[Member, list[int]]:
    """(the member MemberFailed names, the members that ended before it)."""
    ended = []
    with pytest.raises(MemberFailed) as failed:
        for m, piece in walk_members(CountingFile(data), fmt, members):
            if piece is None:
                ended.append(m.index)
    return failed.value.member, ended


def test_a_corrupt_zip_member_is_named_after_the_members_before_it() -> None:
    data, members = damaged_zip(120)
    assert walk_until_failure("zip", data, members) == (members[120], list(range(120)))


def test_a_damaged_tar_header_names_the_next_member() -> None:
    data = bytearray(archive("tar"))
    members = listing("tar", bytes(data))
    victim = members[80]
    data[victim.offset : victim.offset + 512] = b"\x17" * 512  # header checksum now wrong
    assert walk_until_failure("tar", bytes(data), members) == (victim, list(range(80)))


def cut_after_header(members: list[tuple[str, int]]) -> bytes:
    """A tar.gz of members of zeros, (name, size), cut right after the last one's header:
    its data is not there at all, so a listing that went on to skip it would fail."""
    raw = io.BytesIO()
    for name, size in members:
        info = tarfile.TarInfo(name)
        info.size = size
        raw.write(info.tobuf(tarfile.USTAR_FORMAT))
        raw.write(bytes(size + (-size % 512)))
    return gzip.compress(raw.getvalue()[: -(members[-1][1] + (-members[-1][1] % 512))])


def limits_of(data: bytes, **settings: Any) -> ListingLimits:
    return ListingLimits(dataclasses.replace(Settings.from_env({}), **settings), len(data))


def test_a_tar_gz_member_past_the_ratio_is_refused_at_its_header_before_its_data() -> None:
    # Before, the listing decompressed every member's data to reach the next header, and the
    # limits were checked once it ended: a small tar.gz declaring (and holding) gigabytes
    # of zeros cost minutes of CPU to refuse. Here the member's data is not even there.
    data = cut_after_header([("ok.txt", 10), ("zeros", 64 << 20)])
    with pytest.raises(TaskFailure) as failed:
        _list_tar(CountingFile(data), "tar.gz", limits_of(data))
    error = failed.value.error
    assert error["code"] == "compression_ratio_exceeded", error
    assert error["details"]["member"] == "zeros"
    assert error["details"]["setting"] == "CAIRN_TASK_EXTRACT_MAX_RATIO"
    with pytest.raises(tarfile.ReadError):  # what listing on would have met
        _list_tar(CountingFile(data), "tar.gz")


def test_a_tar_past_the_size_limit_is_refused_at_the_member_that_passes_it() -> None:
    data = cut_after_header([("a", 3 << 20), ("b", 3 << 20)])
    with pytest.raises(TaskFailure) as failed:
        _list_tar(
            CountingFile(data),
            "tar.gz",
            limits_of(data, task_extract_max_bytes=5 << 20, task_extract_max_ratio=1e9),
        )
    error = failed.value.error
    assert error["code"] == "archive_too_large", error
    assert error["details"]["member"] == "b"
    assert error["details"]["setting"] == "CAIRN_TASK_EXTRACT_MAX_BYTES"


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_entries_past_the_item_limit_are_refused_before_the_rest_is_listed(fmt: str) -> None:
    # Directories count: tarfile keeps every header it reads, so a tar of millions of
    # directory entries was a memory bomb that the file count alone never stopped.
    buf = io.BytesIO()
    names = [f"d{i:04d}/" for i in range(5000)] + ["f.txt"]
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w") as z:
            for name in names:
                z.writestr(name, b"" if name.endswith("/") else b"x")
    else:
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in names:
                info = tarfile.TarInfo(name.rstrip("/"))
                info.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
                info.size = 0 if name.endswith("/") else 1
                tar.addfile(info, io.BytesIO(b"x") if info.isreg() else None)
    data = buf.getvalue()
    f = CountingFile(data)
    with pytest.raises(TaskFailure) as failed:
        if fmt == "zip":
            _list_zip(f, limits_of(data, task_max_items=100))
        else:
            _list_tar(f, "tar", limits_of(data, task_max_items=100))
    error = failed.value.error
    assert error["code"] == "too_many_entries"
    assert error["details"]["member"].rstrip("/") == "d0100"
    if fmt == "tar":
        assert f.read_bytes < len(data) // 2, (f.read_bytes, len(data))


def many_entry_zip(n: int, *, zip64: bool) -> bytes:
    """A zip whose central directory holds n entries, all of the one empty member `f`
    (written by hand: zipfile takes seconds for as many), with zip64 end records or not."""
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"f"
    entry = (
        struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0)
        + b"f"
    )
    cd = entry * n
    end = b""
    if zip64:
        at = len(local) + len(cd)
        end = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(cd), len(local))
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    count = 0xFFFF if zip64 else n % 0x10000  # zipfile ignores it: the directory says
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(cd), len(local), 0)
    return local + cd + end + eocd


@pytest.mark.parametrize("zip64", [False, True])
def test_a_zip_of_too_many_entries_is_refused_before_zipfile_reads_them(zip64: bool) -> None:
    # zipfile makes a ZipInfo of every entry before the listing sees one: a 47 MB zip of a
    # million entries took 9.5 s and 314 MB to refuse at CAIRN_TASK_MAX_ITEMS.
    data = many_entry_zip(70_000, zip64=zip64)
    f = CountingFile(data)
    with pytest.raises(TaskFailure) as failed:
        _list_zip(f, limits_of(data, task_max_items=100))
    error = failed.value.error
    assert error["code"] == "too_many_entries" and error["details"]["member"] == "f", error
    assert f.read_bytes < len(data) // 2, (f.read_bytes, len(data))
    # Within the limit, zipfile reads the same central directory as before.
    assert len(_list_zip(CountingFile(data), limits_of(data, task_max_items=70_000))) == 70_000


def test_archives_within_the_limits_list_whole() -> None:
    data = archive("tar.gz")
    assert listing("tar.gz", data) == _list_tar(CountingFile(data), "tar.gz", limits_of(data))
    data = archive("zip")
    assert listing("zip", data) == _list_zip(CountingFile(data), limits_of(data))


@pytest.mark.parametrize("name", [".", "./.", "././."])
def test_a_member_with_an_empty_name_is_refused_as_such(name: str) -> None:
    # Refused before too, as "an absolute path or a backslash", which it is not.
    data = zip_of({"ok.txt": b"x", name: b"y"})
    with pytest.raises(TaskFailure) as failed:
        _list_zip(CountingFile(data))
    assert failed.value.error["code"] == "unsafe_member"
    assert failed.value.error["message"] == "unsafe path: an empty name"


def test_a_negative_tar_size_does_not_lower_the_total_past_the_limits() -> None:
    # A global pax `size` applies to every member after it; a negative one took 10 TB off
    # the total the limits count, so the 50 MiB of zeros after it passed a 10 MiB limit
    # (and any ratio) and were extracted.
    buf = io.BytesIO()
    big = 50 << 20
    with tarfile.open(
        fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"size": "-1" + "0" * 13}
    ) as tar:
        tar.addfile(tarfile.TarInfo("negative.txt"))
        info = tarfile.TarInfo("zeros.bin")
        info.size, info.pax_headers = big, {"size": str(big)}
        tar.addfile(info, io.BytesIO(bytes(big)))
    data = buf.getvalue()
    with pytest.raises(tarfile.TarError, match=r"'negative\.txt' declares a negative size"):
        _list_tar(CountingFile(data), "tar.gz", limits_of(data, task_extract_max_bytes=10 << 20))


def test_a_huge_tar_metadata_header_is_refused_before_its_data_is_read() -> None:
    # tarfile reads a long-name (or pax) header's data whole: a tar.gz of one declaring a
    # gigabyte (a megabyte compressed) held a gigabyte in memory.
    size = 8 << 20
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, size
    raw = info.tobuf(tarfile.GNU_FORMAT) + b"a" * size + bytes(-size % 512)
    data = raw + tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT) + bytes(1024)
    f = CountingFile(data)
    with pytest.raises(tarfile.TarError, match=f"a metadata header of {size} bytes"):
        _list_tar(f, "tar", limits_of(data))
    assert f.read_bytes < len(data) // 2, (f.read_bytes, len(data))


def old_gnu_sparse(extension_blocks: int, *, cut: bool = False) -> bytes:
    """A tar of one old GNU sparse member whose header is followed by that many extension
    blocks of 21 entries each (tarfile writes no sparse members)."""

    def octal(n: int, width: int) -> bytes:
        return b"%0*o\0" % (width - 1, n)

    head = bytearray(512)
    head[0:6] = b"sparse"
    for at, value, width in ((100, 0o644, 8), (108, 0, 8), (116, 0, 8), (124, 512, 12)):
        head[at : at + width] = octal(value, width)
    head[136:148] = octal(0, 12)
    head[156:157] = tarfile.GNUTYPE_SPARSE
    head[257:265] = b"ustar  \0"
    head[386:398], head[398:410] = octal(0, 12), octal(512, 12)
    head[482] = 1  # extension blocks follow
    head[483:495] = octal(1 << 30, 12)  # the real size
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    block = bytearray(512)
    for i in range(21):
        block[i * 24 : i * 24 + 24] = octal(1000 + i, 12) + octal(1, 12)
    block[504] = 1
    end = bytearray(block)
    end[504] = 0
    blocks = bytes(block) * extension_blocks
    if cut:
        return bytes(head) + blocks
    return bytes(head) + blocks + bytes(end) + b"x" * 512 + bytes(1024)


def test_a_sparse_header_of_endless_extension_blocks_is_refused_as_it_is_read() -> None:
    # tarfile keeps every extension block's entries: a 447 KB tar.gz of 200,000 blocks
    # took 15 s and 580 MB to list (ten times that: gigabytes).
    data = gzip.compress(old_gnu_sparse(200_000))
    with pytest.raises(tarfile.TarError, match="a member's headers take more than"):
        _list_tar(CountingFile(data), "tar.gz", limits_of(data))
    small = old_gnu_sparse(10)  # a sparse member within the budget lists as before
    assert [(m.path, m.size) for m in _list_tar(CountingFile(small), "tar")] == [
        ("sparse", 1 << 30)
    ]
    # Cut within its extension blocks: an IndexError in tarfile (an internal_error), now
    # one of the errors that make the file not a readable archive.
    with pytest.raises(_CORRUPT):
        _list_tar(CountingFile(old_gnu_sparse(3, cut=True)), "tar")


def test_metadata_headers_in_a_row_are_refused_not_a_recursion_error() -> None:
    # tarfile reads the pax headers before a member recursively: 3,000 of them in a row
    # were a RecursionError, which failed the task as an internal_error.
    info = tarfile.TarInfo("f")
    info.pax_headers = {"comment": "c"}
    one = info.tobuf(tarfile.PAX_FORMAT)
    data = one[:-512] * 3000 + one + bytes(1024)
    with pytest.raises(tarfile.TarError, match="metadata headers in a row"):
        _list_tar(CountingFile(data), "tar", limits_of(data))
    assert [m.path for m in _list_tar(CountingFile(one * 3 + bytes(1024)), "tar")] == ["f"] * 3


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_a_damaged_header_mid_archive_is_refused_not_taken_for_its_end(fmt: str) -> None:
    # tarfile ends at a header it cannot read as if the archive ended: the 120 members
    # after this one were left out, and the task completed with the first 80.
    raw = bytearray(archive("tar"))
    victim = listing("tar", bytes(raw))[80]
    raw[victim.offset + 148] ^= 1  # its checksum
    data = gzip.compress(bytes(raw)) if fmt == "tar.gz" else bytes(raw)
    with pytest.raises(tarfile.TarError, match=f"a damaged header at offset {victim.offset}"):
        _list_tar(CountingFile(data), fmt, limits_of(data))
    cut = bytes(raw[: victim.offset + 100])  # cut within a header: the same
    with pytest.raises(tarfile.TarError, match="a damaged header"):
        _list_tar(CountingFile(cut), "tar", limits_of(cut))


class StubRun:
    """What the two stages use of a TaskRun: safe points and the in-order checkpoint."""

    def __init__(self, stop_at_check: int | None = None) -> None:
        self.state = type("State", (), {"owner": "u"})()
        self.recorded: list[dict[str, Any]] = []
        self.checks = 0
        self.stop_at_check = stop_at_check

    async def check(self, *, force: bool = False) -> None:
        self.checks += 1
        if self.checks == self.stop_at_check:
            raise Stop("paused")

    async def item_done(self, result: dict[str, Any], nbytes: int = 0) -> None:
        self.recorded.append(result)


async def run_stages(
    tmp_path: Path, run: StubRun, commit: Any, data: bytes | None = None
) -> list[Member]:
    data = data or archive("zip")
    blobs = LocalBlobStore(tmp_path / "blobs")
    sha, size = await blobs.put_stream(_once(data))
    members = listing("zip", data)[:40]
    job = _Extraction(
        run,  # type: ignore[arg-type]
        Settings.from_env({}),
        blobs,
        [(sha, size)],
        "zip",
        lambda m: _false(),
    )
    await _extract_in_order(job, members, commit)
    return members


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _false() -> bool:
    return False


async def test_a_pause_while_a_tar_gz_is_listed_ends_the_listing_at_its_next_read(
    tmp_path: Path,
) -> None:
    # Listing a tar.gz decompresses all of it (tens of seconds for gigabytes) in a thread,
    # and a pause, a cancel or the worker stopping waited for it to end.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
        for i in range(8):
            info = tarfile.TarInfo(f"r{i}.bin")
            info.size = 3 << 20
            tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    blobs = LocalBlobStore(tmp_path / "blobs")
    sha, size = await blobs.put_stream(_once(raw.getvalue()))
    reader = BlobFile(blobs, [(sha, size)], asyncio.get_running_loop())
    listing = functools.partial(_list_tar, reader, "tar.gz", None)
    with pytest.raises(Stop, match="paused"):
        await _listed(StubRun(stop_at_check=1), reader, listing)  # type: ignore[arg-type]
    assert reader.pos < size // 2, (reader.pos, size)
    whole = BlobFile(blobs, [(sha, size)], asyncio.get_running_loop())
    members = await _listed(StubRun(), whole, functools.partial(_list_tar, whole, "tar.gz", None))  # type: ignore[arg-type]
    assert [m.path for m in members] == [f"r{i}.bin" for i in range(8)]


async def test_commands_end_out_of_order_and_are_recorded_in_order(tmp_path: Path) -> None:
    run = StubRun()
    sent: list[int] = []

    async def commit(m: Member, sink: ArchiveSink | None) -> dict[str, object]:
        assert sink is not None and sink.size == m.size
        sent.append(m.index)
        await asyncio.sleep(0.001 * (m.index % 5))  # later members often end first
        return {"index": m.index}

    members = await run_stages(tmp_path, run, commit)
    assert [r["index"] for r in run.recorded] == [m.index for m in members]
    assert sorted(sent) == [m.index for m in members]


async def test_a_refused_member_is_recorded_with_those_sent_after_it_then_fails(
    tmp_path: Path,
) -> None:
    run = StubRun()
    sent: list[int] = []

    async def commit(m: Member, sink: ArchiveSink | None) -> dict[str, object]:
        sent.append(m.index)
        if m.index == 10:
            await asyncio.sleep(0.05)  # the ones after it are sent meanwhile
            raise DomainError("object_exists", "taken")
        return {"index": m.index}

    with pytest.raises(DomainError) as refused:
        await run_stages(tmp_path, run, commit)
    assert refused.value.code == "object_exists"
    # Every command sent is recorded, in order, the refused one with its error.
    assert [r["index"] for r in run.recorded] == sorted(sent)
    assert run.recorded[10]["error"] == {"code": "object_exists", "message": "taken"}
    assert 10 < max(sent) < 10 + SENDING  # nothing sent after the refusal was seen


async def test_a_pause_waits_for_the_commands_in_flight_and_sends_no_more(
    tmp_path: Path,
) -> None:
    run = StubRun(stop_at_check=15)
    sent: list[int] = []

    async def commit(m: Member, sink: ArchiveSink | None) -> dict[str, object]:
        sent.append(m.index)
        await asyncio.sleep(0.002)
        return {"index": m.index}

    with pytest.raises(Stop):
        await run_stages(tmp_path, run, commit)
    assert [r["index"] for r in run.recorded] == sent == list(range(len(sent)))
    assert len(sent) < 15


async def test_a_corrupt_member_fails_after_the_members_before_it(tmp_path: Path) -> None:
    data, members = damaged_zip(12)
    bad = members[12]
    run = StubRun()

    async def commit(m: Member, sink: ArchiveSink | None) -> dict[str, object]:
        return {"index": m.index}

    with pytest.raises(TaskFailure) as failed:
        await run_stages(tmp_path, run, commit, data)
    assert failed.value.error["code"] == "corrupt_archive"
    assert failed.value.error["details"] == {"member": bad.path, "offset": bad.offset}
    assert [r["index"] for r in run.recorded] == list(range(12))
