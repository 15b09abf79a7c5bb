"""GET /v1/uploads/stats and the analysts' readmodel.upload_stats against what happened."""

from __future__ import annotations

from typing import Any

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
        view = await system.pool.fetchrow(
            "SELECT bytes_received, bytes_completed FROM readmodel.upload_stats WHERE owner = 'cat'"
        )
        assert view is not None and dict(view) == {"bytes_received": 12, "bytes_completed": 12}
