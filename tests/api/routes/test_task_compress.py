"""compress end to end: the archive is a new file whose members are the files' names
(deduplicated, unicode kept) and bytes, read back with Python's zipfile and tarfile."""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Any

import pytest

from domain.tasks.ids import result_file_id
from handlers.tasks import compress
from handlers.tasks.compress import unique_names
from tests.api.answers import user
from tests.api.tasks_helpers import count_events, finished, start, upload
from tests.system import System

FILES = [
    ("résumé — 履歴書.txt", b"unicode name " * 1000),
    ("data.bin", bytes(range(256)) * 1500),
    ("data.bin", b"same name, other bytes" * 10),
    ("empty", b""),
]


def test_a_repeated_key_is_numbered_in_its_last_part() -> None:
    """Objects of two buckets may share a key; the repeat stays in the key's directory."""
    assert unique_names(
        ["v1.0/notes", "v1.0/notes", "a.d/b.txt", "a.d/b.txt", "x/.env", "x/.env"]
    ) == [
        "v1.0/notes",
        "v1.0/notes (2)",
        "a.d/b.txt",
        "a.d/b (2).txt",
        "x/.env",
        "x/.env (2)",
    ]


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
async def test_compress_gives_one_archive_with_the_names_and_bytes(
    small_chunks_system: System, fmt: str
) -> None:
    async with small_chunks_system.client(user()) as c:
        ids = [await upload(c, data, name) for name, data in FILES]
        tid = await start(
            c,
            {
                "type": "compress",
                "params": {"files": ids, "format": fmt, "output": {"file_name": f"a.{fmt}"}},
            },
        )
        t = await finished(c, tid)
        assert t["status"] == "COMPLETED", t
        assert t["result_file_ids"] == [result_file_id(tid)]
        names = unique_names([n for n, _ in FILES])
        assert names == ["résumé — 履歴書.txt", "data.bin", "data (2).bin", "empty"]
        assert [r["result"] for r in t["results"]] == names
        assert t["progress"]["bytes_done"] == sum(len(d) for _, d in FILES)
        meta = (await c.get(f"/v1/files/{t['result_file_ids'][0]}")).json()
        assert meta["name"] == f"a.{fmt}" and meta["chunk_count"] >= 1
        body = (await c.get(f"/v1/files/{meta['id']}/content")).content
        assert len(body) == meta["size"]
        expected = dict(zip(names, [d for _, d in FILES], strict=True))
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                assert z.testzip() is None
                got = {i.filename: z.read(i) for i in z.infolist()}
        else:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
                got = {}
                for m in tar.getmembers():
                    f = tar.extractfile(m)
                    assert f is not None
                    got[m.name] = f.read()
        assert got == expected
        assert (
            await count_events(small_chunks_system.pool, "FileCreated", [f"file-{meta['id']}"]) == 1
        )


async def test_a_file_gone_before_the_run_fails_the_task_and_leaves_no_result(
    small_chunks_system: System,
) -> None:
    async with small_chunks_system.client(user()) as c:
        a = await upload(c, b"a" * 100, "a")
        b = await upload(c, b"b" * 100, "b")
        await small_chunks_system.stop("tasks")  # hold the queue while the file goes away
        try:
            tid = await start(
                c,
                {"type": "compress", "params": {"files": [a, b], "output": {"file_name": "x.zip"}}},
            )
            assert (await c.delete(f"/v1/files/{b}")).status_code == 200
        finally:
            small_chunks_system.start("tasks")
        t = await finished(c, tid)
        assert t["status"] == "FAILED" and t["error"]["code"] == "file_not_found", t
        assert t["error"]["details"]["file"] == b
        assert (await c.get(f"/v1/files/{result_file_id(tid)}")).status_code == 404


async def test_a_file_deleted_while_the_archive_is_written_fails_the_task_with_no_result(
    small_chunks_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The members' states are read again as the archive reaches them (not held from the
    # start): one deleted meanwhile is not archived from a state read before its delete.
    async with small_chunks_system.client(user()) as c:
        a = await upload(c, b"a" * 100, "a")
        b = await upload(c, b"b" * 100, "b")
        real_take = compress._Members.take

        async def delete_b_first(self: compress._Members, start: int, stop: int) -> Any:
            if b in self.ids[start:stop]:
                assert (await c.delete(f"/v1/files/{b}")).status_code == 200
            return await real_take(self, start, stop)

        monkeypatch.setattr(compress._Members, "take", delete_b_first)
        tid = await start(
            c, {"type": "compress", "params": {"files": [a, b], "output": {"file_name": "y.zip"}}}
        )
        t = await finished(c, tid)
        assert t["status"] == "FAILED" and t["error"]["code"] == "file_not_found", t
        assert t["error"]["details"] == {"file": b, "index": 1}
        assert (await c.get(f"/v1/files/{result_file_id(tid)}")).status_code == 404
