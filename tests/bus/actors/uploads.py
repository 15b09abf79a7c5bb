"""The upload commands the actor host's tests send: one creation and its chunks."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.commands import InitiateUpload, StoreChunk

AT = datetime(2026, 1, 1, tzinfo=UTC)
H = "ab" * 32


def initiate(uid: str) -> InitiateUpload:
    """A 30-byte upload of three 10-byte chunks, created by alice."""
    return InitiateUpload(
        aggregate_id=uid,
        caller="alice",
        at=AT,
        command_id=f"init-{uid}",
        file_name="f",
        file_size=30,
        chunk_size=10,
    )


def chunk(uid: str, i: int, command_id: str | None = None) -> StoreChunk:
    """Chunk `i` of it (command id `chunk-<uid>-<i>` unless given)."""
    return StoreChunk(
        aggregate_id=uid,
        caller="alice",
        at=AT,
        command_id=command_id or f"chunk-{uid}-{i}",
        index=i,
        size=10,
        sha256=H,
    )
