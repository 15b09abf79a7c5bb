"""GET /v1/uploads/{id} answers from the read model, or from the event store while the
read model lags (api/routes/uploads.py): both answers have the same fields, so a client
never sees a field come and go with the projection's lag."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.routes.uploads import _state_view, _upload_view
from domain.uploads import UploadState, UploadStatus
from projections.queries import _UPLOAD_COLUMNS, _upload_dict

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _state(**changes: Any) -> UploadState:
    base: dict[str, Any] = {
        "id": "5f0c6a4e-7d3b-4b7e-9a51-3c1f2f4b8a10",
        "owner": "alice",
        "file_name": "a.bin",
        "file_size": 10,
        "chunk_size": 8,
        "total_chunks": 2,
        "content_type": "application/octet-stream",
        "sha256": None,
        "bucket": "default",
        "metadata": {},
        "status": UploadStatus.INITIATED,
        "created_at": AT,
        "updated_at": AT,
    }
    return UploadState(**{**base, **changes})


def _row_view() -> dict[str, Any]:
    columns = [c.strip() for c in _UPLOAD_COLUMNS.split(",")]
    row = dict.fromkeys(columns)
    row.update(id="5f0c6a4e-7d3b-4b7e-9a51-3c1f2f4b8a10", status="INITIATED", bytes_received=0)
    return _upload_view(_upload_dict(row))  # type: ignore[arg-type]


def test_the_event_store_answer_has_the_read_models_fields() -> None:
    assert set(_state_view(_state())) == set(_row_view())


def test_the_event_store_answer_says_who_owns_it_and_why_it_failed() -> None:
    view = _state_view(_state(status=UploadStatus.FAILED, failure="sha256_mismatch"))
    assert view["owner"] == "alice" and view["failure_reason"] == "sha256_mismatch"
    assert _state_view(_state())["failure_reason"] is None


def _view(**row: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "status": "IN_PROGRESS",
        "mode": "stream",
        "file_size": 1_000_000,
        "bytes_received": 1_000_000,
        "created_at": AT.isoformat(),
        "updated_at": AT.isoformat(),
    }
    return _upload_view({**base, **row})


def test_speed_and_eta_are_measured_or_absent_never_made_up() -> None:
    # Bytes that came with the creation itself (tus creation-with-upload: one event, no
    # time between) have no rate: the view divided by a 1 ms floor and answered 1 GB/s
    # for a 1 MB upload.
    for status in ("IN_PROGRESS", "COMPLETED"):
        v = _view(status=status)
        assert v["speed_bytes_per_second"] is None and v["eta_seconds"] is None, v
    # A concatenation (mode final) starts with its parts' bytes: nothing was transferred.
    later = datetime(2026, 12, 6, 12, 0, 2, tzinfo=UTC).isoformat()
    v = _view(mode="final", status="COMPLETED", file_size=12, bytes_received=12, updated_at=later)
    assert v["speed_bytes_per_second"] is None and v["eta_seconds"] is None
    # A clock that stepped back between events (another API process) gives no rate either.
    earlier = datetime(2026, 12, 6, 11, 59, 58, tzinfo=UTC).isoformat()
    v = _view(updated_at=earlier, bytes_received=10)
    assert v["speed_bytes_per_second"] is None and v["eta_seconds"] is None
    # Measured: bytes over the upload's active time, and what is left at that rate.
    v = _view(updated_at=later, bytes_received=500_000)
    assert v["speed_bytes_per_second"] == 250_000.0 and v["eta_seconds"] == 2.0
    assert (
        _view(updated_at=later, bytes_received=500_000, status="COMPLETED")["eta_seconds"] is None
    )
