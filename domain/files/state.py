"""The file aggregate's state, and `evolve`: how each event changes it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from domain.files.events import FileCreated, FileDeleted, FileReplaced, FileUpdated
from domain.kernel import Event


@dataclass(frozen=True)
class FileState:
    id: str
    owner: str
    name: str
    size: int
    content_type: str
    sha256: str
    manifest: tuple[tuple[str, int], ...]
    bucket: str
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    upload_id: str | None = None
    deleted: bool = False
    key: str | None = None  # an object's key in `bucket` (None: a plain file)
    # The version's stored HTTP headers (domain/files/headers.py); a rename or metadata
    # change (FileUpdated) keeps them, a new version (FileReplaced) brings its own.
    headers: dict[str, str] = field(default_factory=dict)


def evolve(state: FileState | None, event: Event) -> FileState | None:
    """Pure and total: apply one (upcast, decoded) event."""
    if isinstance(event, FileCreated):
        # Also after FileDeleted: an object's key may be written again (same stream).
        return FileState(
            id=event.file_id,
            owner=event.owner,
            name=event.name,
            size=event.size,
            content_type=event.content_type,
            sha256=event.sha256,
            manifest=tuple((p.sha256, p.size) for p in event.manifest),
            bucket=event.bucket or "default",
            metadata=dict(event.metadata),
            upload_id=event.upload_id,
            key=event.key,
            headers=dict(event.headers),
            created_at=event.at,
            updated_at=event.at,
        )
    if state is None:
        return None
    if isinstance(event, FileDeleted):
        return replace(state, deleted=True, updated_at=event.at)
    if isinstance(event, FileReplaced):
        # A new version: S3's Last-Modified is the time of the PUT that made it.
        return replace(
            state,
            owner=event.owner,
            name=event.name,
            size=event.size,
            content_type=event.content_type,
            sha256=event.sha256,
            manifest=tuple((p.sha256, p.size) for p in event.manifest),
            metadata=dict(event.metadata),
            upload_id=event.upload_id,
            headers=dict(event.headers),
            created_at=event.at,
            updated_at=event.at,
            deleted=False,
        )
    if isinstance(event, FileUpdated):
        return replace(
            state,
            name=event.name,
            bucket=event.bucket,
            metadata=dict(event.metadata),
            updated_at=event.at,
        )
    return state
