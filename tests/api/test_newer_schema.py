"""The API over a stream that holds an event of a newer schema version than this code reads
(written by a newer deployment during a rolling upgrade, or before a rollback): reads that
fold the stream and commands on it answer 503 `upgrade_in_progress` with Retry-After, in
the one error shape, instead of answering from (or deciding on) a misread state. Another
user still gets the 404 of a missing id. Everything else is served as before.

The newer event is a raw row, inserted as a newer deployment would store it."""

from __future__ import annotations

from typing import Any

import httpx

from domain.uploads.events import UploadBytesAppended, UploadChunkStored
from tests.api.tus.test_controller import TUS, upload_id
from tests.api.tus.test_controller import create as tus_create
from tests.bus.store.test_upcasting import insert_raw
from tests.system import System, wait_until

AT = "2026-01-02T03:04:05+00:00"
CHUNK = b"x" * 10


async def newer_chunk(s: System, uid: str, owner: str) -> None:
    """Upload `uid`'s second event: a chunk stored by a newer deployment, at a schema
    version this code does not know."""
    await insert_raw(
        s.pool,
        f"upload-{uid}",
        2,
        "UploadChunkStored",
        UploadChunkStored.schema_version + 1,
        {"index": 0, "offset": 0, "size": 10, "sha256": "ab" * 32, "at": AT},
        owner,
    )


def assert_upgrade_in_progress(r: httpx.Response, event_type: str, known: int) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"].isdigit()
    body: dict[str, Any] = r.json()
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == r.headers["X-Request-ID"]
    assert body["error"]["code"] == "upgrade_in_progress"
    assert body["error"]["details"] == {
        "event_type": event_type,
        "stored_version": known + 1,
        "known_version": known,
    }
    assert "upgrade" in body["error"]["message"]


async def test_native_upload_with_a_newer_event_answers_503(shared_system: System) -> None:
    known = UploadChunkStored.schema_version
    async with (
        shared_system.client("nsv-alice") as alice,
        shared_system.client("nsv-bob") as bob,
        shared_system.client("nsv-root", admin=True) as root,
    ):
        r = await alice.post(
            "/v1/uploads", json={"file_name": "a.bin", "file_size": 30, "chunk_size": 10}
        )
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        await newer_chunk(shared_system, uid, "nsv-alice")
        # Reads that fold the stream.
        for path in (f"/v1/uploads/{uid}", f"/v1/uploads/{uid}/missing-chunks"):
            assert_upgrade_in_progress(await alice.get(path), "UploadChunkStored", known)
            assert_upgrade_in_progress(await root.get(path), "UploadChunkStored", known)
            r = await bob.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "upload_not_found"
        # Commands: refused by the actor host, not decided on the misread state.
        r = await alice.put(f"/v1/uploads/{uid}/chunks/1", content=CHUNK)
        assert_upgrade_in_progress(r, "UploadChunkStored", known)
        r = await alice.post(f"/v1/uploads/{uid}/complete")
        assert_upgrade_in_progress(r, "UploadChunkStored", known)
        r = await bob.put(f"/v1/uploads/{uid}/chunks/1", content=CHUNK)
        assert r.status_code == 404, r.text
        # Nothing was appended.
        async with shared_system.pool.acquire() as conn:
            top = await conn.fetchval(
                "SELECT max(version) FROM eventstore.events WHERE stream_id = $1",
                f"upload-{uid}",
            )
        assert top == 2

        # Every other upload is served as before, by the same actor host.
        r = await alice.post(
            "/v1/uploads", json={"file_name": "b.bin", "file_size": 10, "chunk_size": 10}
        )
        other = r.json()["id"]
        r = await alice.put(f"/v1/uploads/{other}/chunks/0", content=CHUNK)
        assert r.status_code == 201, r.text
        r = await alice.get(f"/v1/uploads/{other}")
        assert r.status_code == 200 and r.json()["missing_chunks"] == []


async def test_tus_head_of_an_upload_with_a_newer_event_answers_503(
    shared_system: System,
) -> None:
    known = UploadBytesAppended.schema_version
    async with (
        shared_system.client("nsv-carol") as carol,
        shared_system.client("nsv-dave") as dave,
    ):
        url = await tus_create(carol, 20)
        uid = upload_id(url)
        await insert_raw(
            shared_system.pool,
            f"upload-{uid}",
            2,
            "UploadBytesAppended",
            known + 1,
            {"offset": 0, "size": 10, "at": AT},
            "nsv-carol",
        )
        r = await carol.head(url, headers=TUS)
        assert r.status_code == 503
        assert r.headers["Retry-After"].isdigit()
        r = await carol.get(f"/v1/uploads/{uid}")
        assert_upgrade_in_progress(r, "UploadBytesAppended", known)
        r = await dave.head(url, headers=TUS)
        assert r.status_code == 404


async def test_ready_names_a_projector_held_at_a_newer_event(shared_system: System) -> None:
    """The relay publishes the newer event as stored; the projector holds its partition
    there, and /ready says so (the system's readiness, not a process's own)."""
    async with shared_system.client("nsv-erin") as erin, shared_system.client(None) as anon:
        r = await erin.post(
            "/v1/uploads", json={"file_name": "e.bin", "file_size": 30, "chunk_size": 10}
        )
        uid = r.json()["id"]
        await newer_chunk(shared_system, uid, "nsv-erin")

        async def held() -> dict[str, Any] | None:
            r = await anon.get("/ready")
            checks: dict[str, Any] = r.json()["checks"]
            return checks if "newer schema version" in checks.get("projector", "") else None

        checks = await wait_until(held, timeout=60)
        assert checks["projector"].startswith("error: held at ")
        r = await anon.get("/ready")
        assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
        # A process's own readiness (what a load balancer probes) is not the projector's.
        assert (await anon.get("/ready", params={"scope": "process"})).status_code == 200

        # And the API's /metrics counts the events held at (from Postgres, so whichever
        # process holds them).
        async def counted() -> float | None:
            text = (await anon.get("/metrics")).text
            for line in text.splitlines():
                if line.startswith("cairn_projection_events_held "):
                    value = float(line.split()[1])
                    return value if value >= 1 else None
            return None

        assert await wait_until(counted, timeout=30) >= 1


async def test_a_rebuild_by_older_code_is_refused_with_503(shared_system: System) -> None:
    """Rebuilding without the newer events would lose them for the read model: refused,
    and the read model stays as it was."""
    async with (
        shared_system.client("nsv-frank") as frank,
        shared_system.client("nsv-root", admin=True) as root,
    ):
        r = await frank.post(
            "/v1/uploads", json={"file_name": "f.bin", "file_size": 30, "chunk_size": 10}
        )
        uid = r.json()["id"]
        await newer_chunk(shared_system, uid, "nsv-frank")
        before = await shared_system.pool.fetchval("SELECT count(*) FROM readmodel.applied")
        r = await root.post("/v1/admin/projections/uploads/rebuild")
        assert_upgrade_in_progress(r, "UploadChunkStored", UploadChunkStored.schema_version)
        after = await shared_system.pool.fetchval("SELECT count(*) FROM readmodel.applied")
        assert after >= before > 0  # not emptied (the live projector may add meanwhile)
