"""The file aggregate: an ordered manifest of content-addressed chunks plus its metadata.

A file never owns bytes directly; it references chunks by sha256, so the same bytes are
stored once and a file can be copied or concatenated without moving data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from domain.commands import Command, CreateFile, DeleteFile
from domain.errors import Conflict, InvalidInput, NotFound
from domain.events import JSON, NewEvent, register_event
from domain.uploads import SHA256_RE

CREATED = "FileCreated"
DELETED = "FileDeleted"

register_event(CREATED, 1)
register_event(DELETED, 1)


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


def _owned(state: FileState | None, cmd: Command) -> FileState:
    if state is None or state.deleted or (state.owner != cmd.caller and not cmd.admin):
        raise NotFound("file_not_found", "no such file", {"id": cmd.aggregate_id})
    return state


def decide(state: FileState | None, cmd: Command) -> list[NewEvent]:
    if isinstance(cmd, CreateFile):
        if state is not None:
            if state.upload_id is not None and state.upload_id == cmd.upload_id:
                return []
            raise Conflict("file_exists", "a file with this id exists", {"id": cmd.aggregate_id})
        sizes = [int(c["size"]) for c in cmd.manifest]
        if cmd.size < 0 or any(n < 0 for n in sizes) or sum(sizes) != cmd.size:
            raise InvalidInput("invalid_manifest", "the manifest does not add up to the file size")
        if not all(SHA256_RE.fullmatch(str(c["sha256"])) for c in cmd.manifest):
            raise InvalidInput("invalid_manifest", "manifest chunks need sha256 digests")
        return [
            NewEvent(
                CREATED,
                {
                    "file_id": cmd.aggregate_id,
                    "owner": cmd.owner,
                    "name": cmd.name,
                    "size": cmd.size,
                    "content_type": cmd.content_type,
                    "sha256": cmd.sha256,
                    "manifest": [
                        {"sha256": c["sha256"], "size": int(c["size"])} for c in cmd.manifest
                    ],
                    "bucket": cmd.bucket,
                    "metadata": dict(cmd.metadata),
                    "upload_id": cmd.upload_id,
                    "at": cmd.at.isoformat(),
                },
            )
        ]
    if isinstance(cmd, DeleteFile):
        if state is not None and state.deleted and (state.owner == cmd.caller or cmd.admin):
            return []
        _owned(state, cmd)
        return [NewEvent(DELETED, {"at": cmd.at.isoformat()})]
    raise InvalidInput("unknown_command", f"files cannot handle {cmd.type}")


def evolve(state: FileState | None, type_: str, data: JSON) -> FileState | None:
    at = (
        datetime.fromisoformat(str(data["at"])) if isinstance(data.get("at"), str) else datetime.min
    )
    if type_ == CREATED:
        return FileState(
            id=str(data["file_id"]),
            owner=str(data["owner"]),
            name=str(data["name"]),
            size=int(data["size"]),
            content_type=str(data["content_type"]),
            sha256=str(data["sha256"]),
            manifest=tuple((str(c["sha256"]), int(c["size"])) for c in data["manifest"]),
            bucket=str(data.get("bucket") or "default"),
            metadata=dict(data.get("metadata") or {}),
            upload_id=data.get("upload_id"),
            created_at=at,
            updated_at=at,
        )
    if state is None:
        return None
    if type_ == DELETED:
        return replace(state, deleted=True, updated_at=at)
    return state
