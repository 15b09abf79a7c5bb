"""extract end to end: round trips with compress, archives made by other tools, and unsafe
archives (zip-slip, links, bombs, not an archive) refused with nothing written."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.tasks.ids import item_file_id
from tests.api.answers import user
from tests.api.tasks_helpers import count_events, finished, start, stop_mid_run, upload
from tests.archives import zip_of
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


CONTENT = {
    "a.txt": b"hello " * 5000,
    "dir/ünï.bin": bytes(range(256)) * 700,
    "dir/sub/empty": b"",
}


async def extract(c: httpx.AsyncClient, archive: bytes, name: str, **params: Any) -> dict[str, Any]:
    fid = await upload(c, archive, name)
    tid = await start(c, {"type": "extract", "params": {"file": fid, **params}})
    return await finished(c, tid)


async def extracted(
    c: httpx.AsyncClient, t: dict[str, Any], prefix: str = "x-"
) -> dict[str, bytes]:
    assert t["status"] == "COMPLETED", (t["error"], t["results"])
    out = {}
    for r in t["results"]:
        meta = (await c.get(f"/v1/files/{r['result']}")).json()
        out[meta["metadata"]["archive_path"]] = (
            await c.get(f"/v1/files/{r['result']}/content")
        ).content
        assert meta["name"] == prefix + r["source"].rsplit("/", 1)[-1]
    return out


def py_zip() -> bytes:
    return zip_of(CONTENT, zipfile.ZIP_DEFLATED)


def tool_archives(tmp: Path) -> dict[str, bytes]:
    src = tmp / "src"
    for name, data in CONTENT.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    subprocess.run(["zip", "-qr", str(tmp / "a.zip"), "."], cwd=src, check=True)
    subprocess.run(["tar", "czf", str(tmp / "a.tgz"), "-C", str(src), *CONTENT], check=True)
    subprocess.run(["tar", "cf", str(tmp / "a.tar"), "-C", str(src), *CONTENT], check=True)
    return {n: (tmp / n).read_bytes() for n in ("a.zip", "a.tgz", "a.tar")}


async def test_archives_made_by_zip_tar_and_zipfile_extract_correctly(
    small_chunks_system: System, tmp_path: Path
) -> None:
    archives = {"py.zip": py_zip(), **tool_archives(tmp_path)}
    async with small_chunks_system.client(user()) as c:
        for name, data in archives.items():
            # The same names each time: each extract replaces the last one's files.
            t = await extract(c, data, name, output={"prefix": "x-"}, overwrite=True)
            assert await extracted(c, t) == CONTENT, name


async def test_an_extracts_progress_ends_at_its_totals_in_the_task_and_the_listing(
    small_chunks_system: System, tmp_path: Path
) -> None:
    """Created knowing only the archive's size, the task learns its members' count and
    bytes once the archive is listed: items_done / bytes_done end at the totals (they
    ended at 3 of 0 items, and at the members' bytes of the archive's), and the read
    model's row says the same as the task."""
    archives = tool_archives(tmp_path)
    async with small_chunks_system.client(user()) as c:
        for name in ("a.zip", "a.tgz", "a.tar"):
            t = await extract(c, archives[name], name, output={"prefix": f"{name}-"})
            assert t["status"] == "COMPLETED", t
            p = t["progress"]
            assert p["items_done"] == p["items_total"] == len(CONTENT), (name, p)
            assert p["bytes_done"] == p["bytes_total"] > 0, (name, p)
            if name != "a.zip":  # a tar's members count their data
                assert p["bytes_total"] == sum(len(d) for d in CONTENT.values())

            async def listed(tid: str = t["id"]) -> dict[str, Any] | None:
                items = (await c.get("/v1/tasks", params={"type": "extract"})).json()["items"]
                row = next((i for i in items if i["id"] == tid), None)
                return row if row and row["status"] == "COMPLETED" else None

            row = await wait_until(listed)
            assert row["progress"] == p


async def test_compress_then_extract_round_trips(small_chunks_system: System) -> None:
    files = {"résumé — 履歴書.txt": b"r" * 70_000, "b.bin": bytes(range(256)) * 300}
    async with small_chunks_system.client(user()) as c:
        ids = [await upload(c, d, n) for n, d in files.items()]
        for fmt in ("zip", "tar.gz"):
            tid = await start(
                c,
                {
                    "type": "compress",
                    "params": {"files": ids, "format": fmt, "output": {"file_name": f"r.{fmt}"}},
                },
            )
            done = await finished(c, tid)
            assert done["status"] == "COMPLETED", done
            etid = await start(
                c,
                {
                    "type": "extract",
                    "params": {
                        "file": done["result_file_ids"][0],
                        "output": {"prefix": f"x-{fmt}-"},
                    },
                },
            )
            assert await extracted(c, await finished(c, etid), f"x-{fmt}-") == files


def slip_zip() -> bytes:
    return zip_of({"ok.txt": b"fine", "../evil.txt": b"escape"})


def symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ok.txt", b"fine")
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        z.writestr(info, "/etc/passwd")
    return buf.getvalue()


def symlink_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 4
        tar.addfile(ok, io.BytesIO(b"fine"))
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    return buf.getvalue()


def control_name_zip() -> bytes:
    """A member whose base name no file may have (an escape sequence in it)."""
    return zip_of({"ok.txt": b"fine", "dir/red\x1b[31m.txt": b"red"}, zipfile.ZIP_STORED)


def encrypted_zip() -> bytes:
    """A member encrypted by Info-ZIP's `zip -P` (ZipCrypto), after a plain one."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ok.txt").write_bytes(b"fine")
        (Path(tmp) / "secret.txt").write_bytes(b"secret " * 100)
        subprocess.run(["zip", "-q", "a.zip", "ok.txt"], cwd=tmp, check=True)
        subprocess.run(["zip", "-q", "-P", "pw", "a.zip", "secret.txt"], cwd=tmp, check=True)
        return (Path(tmp) / "a.zip").read_bytes()


def deflate64_zip() -> bytes:
    """A member marked as compressed by deflate64 (method 9, Windows Explorer's for big
    files), which zipfile cannot read: its method field rewritten in both headers."""
    data = bytearray(zip_of({"ok.txt": b"fine", "big.bin": b"b" * 100}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("big.bin")
    data[info.header_offset + 8 : info.header_offset + 10] = (9).to_bytes(2, "little")
    central = data.rindex(b"PK\x01\x02")  # the last entry's central directory header
    data[central + 10 : central + 12] = (9).to_bytes(2, "little")
    return bytes(data)


def bomb_zip() -> bytes:
    return zip_of(
        {"ok.txt": b"fine", "zeros": b"\0" * (20 << 20)}, zipfile.ZIP_DEFLATED, compresslevel=9
    )


@pytest.mark.parametrize(
    ("archive", "code", "detail"),
    [
        (slip_zip, "unsafe_member", ("member", "../evil.txt")),
        (symlink_zip, "unsafe_member", ("member", "link")),
        (symlink_tar, "unsafe_member", ("member", "link")),
        (control_name_zip, "invalid_file_name", ("member", "dir/red\x1b[31m.txt")),
        (encrypted_zip, "encrypted_member", ("member", "secret.txt")),
        (deflate64_zip, "unsupported_compression", ("member", "big.bin")),
        (bomb_zip, "compression_ratio_exceeded", ("setting", "CAIRN_TASK_EXTRACT_MAX_RATIO")),
        (lambda: b"just some text, not an archive" * 30, "not_an_archive", None),
    ],
    ids=[
        "zip-slip",
        "zip-symlink",
        "tar-symlink",
        "control-name",
        "encrypted",
        "deflate64",
        "zip-bomb",
        "not-an-archive",
    ],
)
async def test_unsafe_archives_are_refused_with_nothing_written(
    small_chunks_system: System, archive: Any, code: str, detail: tuple[str, str] | None
) -> None:
    async with small_chunks_system.client(user()) as c:
        t = await extract(c, archive(), "x.zip")
        assert t["status"] == "FAILED" and t["error"]["code"] == code, t
        if detail is not None:
            assert t["error"]["details"][detail[0]] == detail[1], t
        made = [f"file-{item_file_id(t['id'], i)}" for i in range(3)]
        assert await count_events(small_chunks_system.pool, "FileCreated", made) == 0
        assert t["progress"]["items_done"] == 0 and t["results"] == []


async def test_a_name_twice_in_a_zip_gives_each_member_its_own_bytes(
    small_chunks_system: System,
) -> None:
    """Into `default` a name in the archive twice is two files (into a bucket it is
    refused: test_task_objects.py); each must hold its own member's bytes, not the last
    one's (zipfile's name lookup finds the last entry of a name)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("dup.txt", b"first")
            z.writestr("other.txt", b"other")
            z.writestr("dup.txt", b"second, longer")
    async with small_chunks_system.client(user()) as c:
        t = await extract(c, buf.getvalue(), "dup.zip", output={"prefix": "d-"})
        assert t["status"] == "COMPLETED", t
        got = [
            (r["source"], (await c.get(f"/v1/files/{r['result']}/content")).content)
            for r in t["results"]
        ]
        assert got == [
            ("dup.txt", b"first"),
            ("other.txt", b"other"),
            ("dup.txt", b"second, longer"),
        ]


async def test_a_corrupt_member_names_the_member_and_offset(small_chunks_system: System) -> None:
    data = bytearray(py_zip())
    # Damage the second member's compressed data (its local header stays readable).
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("dir/ünï.bin")
    start_of_data = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start_of_data + 10, start_of_data + 60):
        data[i] ^= 0xFF
    async with small_chunks_system.client(user()) as c:
        t = await extract(c, bytes(data), "bad.zip")
        assert t["status"] == "FAILED" and t["error"]["code"] == "corrupt_archive", t
        assert t["error"]["details"] == {"member": "dir/ünï.bin", "offset": info.header_offset}


async def test_pause_mid_extract_keeps_exactly_the_members_recorded(
    small_chunks_system: System,
) -> None:
    """The next members are stored ahead while one is made a file (handlers/tasks/
    extract.py): a pause must still leave exactly the files the checkpoint records, and
    the resumed run makes each of the rest once."""
    n = 300
    members = {f"m/{i:03d}.txt": f"member {i} ".encode() * (i + 1) for i in range(n)}
    async with small_chunks_system.client(user()) as c:
        fid = await upload(c, zip_of(members), "many.zip")
        tid = await start(c, {"type": "extract", "params": {"file": fid}})

        paused = await stop_mid_run(small_chunks_system.pool, c, tid, "pause")
        done = paused["progress"]["items_done"]
        assert paused["status"] == "PAUSED" and 0 < done < n, paused
        made = [f"file-{item_file_id(tid, i)}" for i in range(n)]
        # Members stored ahead of the pause were not made files: what is recorded happened.
        assert await count_events(small_chunks_system.pool, "FileCreated", made) == done

        assert (await c.post(f"/v1/tasks/{tid}/resume")).status_code == 200
        t = await finished(c, tid)
        assert [r["index"] for r in t["results"]] == list(range(n))
        assert await count_events(small_chunks_system.pool, "FileCreated", made) == n
        for i in (0, done, n - 1):
            got = await c.get(f"/v1/files/{item_file_id(tid, i)}/content")
            assert got.content == members[f"m/{i:03d}.txt"]
