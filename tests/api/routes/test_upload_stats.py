"""GET /v1/uploads/stats and the analysts' readmodel.upload_stats against what happened."""

from __future__ import annotations

import asyncio
from typing import Any

from bus.store.eventstore import PostgresEventStore
from domain import uploads
from domain.uploads import UploadStatus
from tests.api.tus.test_controller import TUS, create, patch, upload_id
from tests.system import System, wait_until


async def test_a_concatenation_counts_its_bytes_once(system: System) -> None:
    # A tus final upload starts with its parts' bytes (bytes_received, so its progress is
    # 100 %), but none of them was received again: summed over the uploads they were
    # counted twice, in the stats and in the analysts' view, while usage_daily counted
    # them once.
    async with system.client("cat") as c:
        pa = await create(c, 5, Upload_Concat="partial")
        pb = await create(c, 7, Upload_Concat="partial")
        assert (await patch(c, pa, 0, b"aaaaa")).status_code == 204
        assert (await patch(c, pb, 0, b"bbbbbbb")).status_code == 204
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Concat": f"final;{pa} {pb}"})
        assert r.status_code == 201, r.text
        final = upload_id(r.headers["location"])
        up = (await c.get(f"/v1/uploads/{final}")).json()
        assert up["bytes_received"] == 12 and up["progress"] == 100.0  # unchanged

        async def stats() -> dict[str, Any] | None:
            s = (await c.get("/v1/uploads/stats")).json()
            done = s["by_status"]["COMPLETED"] == 1 and s["recent"][-1]["bytes_uploaded"] == 12
            return s if done else None

        s = await wait_until(stats)
        assert s["bytes_received"] == 12, s
        assert s["bytes_completed"] == 12
        # The parts have all their bytes: finished (PARTIAL_COMPLETE), not active. They
        # were IN_PROGRESS, two "active" uploads until they expired.
        assert s["by_status"]["PARTIAL_COMPLETE"] == 2 and s["by_status"]["IN_PROGRESS"] == 0
        assert s["active"] == 0 and s["bytes_pending"] == 0 and s["average_progress"] is None
        view = await system.pool.fetchrow(
            "SELECT bytes_received, bytes_completed, in_progress, partial_complete"
            " FROM readmodel.upload_stats WHERE owner = 'cat'"
        )
        assert view is not None and dict(view) == {
            "bytes_received": 12,
            "bytes_completed": 12,
            "in_progress": 0,
            "partial_complete": 2,
        }


async def _from_the_log(system: System, owner: str) -> dict[str, Any]:
    """The caller's upload stats computed by folding every upload stream of the log."""
    ids = await system.pool.fetch(
        "SELECT DISTINCT stream_id FROM eventstore.events"
        " WHERE stream_id LIKE 'upload-%' AND owner = $1",
        owner,
    )
    store = PostgresEventStore(system.pool)
    states = [uploads.AGGREGATE.fold(await store.read_stream(r["stream_id"])) for r in ids]
    by_status = {s.value: 0 for s in UploadStatus}
    for st in states:
        by_status[st.status.value] += 1
    received = sum(st.bytes_received for st in states if st.mode != "final")
    return {
        "total": len(states),
        "by_status": by_status,
        "bytes_received": received,
        "bytes_completed": sum(
            st.file_size or 0 for st in states if st.status == UploadStatus.COMPLETED
        ),
        "uploaded": received,  # usage_daily, summed over the recent days
    }


def _comparable(stats: dict[str, Any]) -> dict[str, Any]:
    keys = ("total", "by_status", "bytes_received", "bytes_completed")
    return {k: stats[k] for k in keys} | {
        "uploaded": sum(d["bytes_uploaded"] for d in stats["recent"])
    }


async def test_rebuilds_while_uploads_flow_keep_the_lists_answering_and_the_stats_exact(
    system: System,
) -> None:
    # Two rebuilds of uploads at once and one of files, while chunks are PUT: the lists
    # and stats keep answering (the old rows until each rebuild commits, never fewer), and
    # once the projector has caught up the stats are what the log says, nothing counted
    # twice or lost across the swap.
    owners = ("rb-ann", "rb-ben")
    clients = {o: system.client(o) for o in owners}
    admin = system.client("rb-root", admin=True)
    writing = True

    async def write(owner: str) -> None:
        c = clients[owner]
        for i in range(6):
            r = await c.post(
                "/v1/uploads", json={"file_name": f"f{i}", "file_size": 250, "chunk_size": 100}
            )
            assert r.status_code == 201, r.text
            uid = r.json()["id"]
            for k, size in enumerate((100, 100, 50)[: 3 if i % 3 else 2]):
                r = await c.put(f"/v1/uploads/{uid}/chunks/{k}", content=bytes([i]) * size)
                assert r.status_code == 201, r.text
            if i % 3:
                assert (await c.post(f"/v1/uploads/{uid}/complete")).status_code == 200
            elif i == 3:
                assert (await c.delete(f"/v1/uploads/{uid}")).status_code == 200

    async def read(owner: str) -> int:
        c, seen, reads = clients[owner], 0, 0
        while writing or reads < 3:
            r = await c.get("/v1/uploads", params={"limit": 1000})
            assert r.status_code == 200, r.text
            total = int(r.headers["X-Total-Count"])
            assert total == len(r.json()["items"]) >= seen  # never fewer mid-rebuild
            seen = total
            s = await c.get("/v1/uploads/stats")
            assert s.status_code == 200, s.text
            assert s.json()["total"] >= seen
            reads += 1
        return reads

    async def rebuild(name: str) -> None:
        r = await admin.post(f"/v1/admin/projections/{name}/rebuild")
        assert r.status_code == 200, r.text
        assert r.json()["events_skipped"] == 0

    try:
        readers = [asyncio.create_task(read(o)) for o in owners]
        writers = asyncio.gather(*(write(o) for o in owners))
        await asyncio.gather(rebuild("uploads"), rebuild("uploads"), rebuild("files"))
        await writers
        await asyncio.gather(rebuild("uploads"), rebuild("files"))  # after every write too
        writing = False
        assert all(n >= 3 for n in await asyncio.gather(*readers))
        for owner in owners:
            expected = await _from_the_log(system, owner)
            assert expected["total"] == 6 and expected["by_status"]["COMPLETED"] == 4

            async def caught_up(c: Any = clients[owner], want: Any = expected) -> bool:
                got = (await c.get("/v1/uploads/stats")).json()
                return _comparable(got) == want

            await wait_until(caught_up)
    finally:
        for c in (*clients.values(), admin):
            await c.aclose()
