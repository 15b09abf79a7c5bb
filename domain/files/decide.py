"""`decide` for files: one small function per command, picked from a table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.errors import Conflict, InvalidInput, NotFound
from domain.files.commands import CreateFile, DeleteFile
from domain.files.events import FileCreated, FileDeleted
from domain.files.state import FileState
from domain.kernel import Command, Event
from domain.values import Piece, is_sha256


def _owned(state: FileState | None, cmd: Command) -> FileState:
    if state is None or state.deleted or (state.owner != cmd.caller and not cmd.admin):
        raise NotFound("file_not_found", "no such file", {"id": cmd.aggregate_id})
    return state


def _create(state: FileState | None, cmd: CreateFile) -> list[Event]:
    if state is not None:
        if state.upload_id is not None and state.upload_id == cmd.upload_id:
            return []  # the same upload's file again (API and handler both send it)
        raise Conflict("file_exists", "a file with this id exists", {"id": cmd.aggregate_id})
    sizes = [int(c["size"]) for c in cmd.manifest]
    if cmd.size < 0 or any(n < 0 for n in sizes) or sum(sizes) != cmd.size:
        raise InvalidInput("invalid_manifest", "the manifest does not add up to the file size")
    if not all(is_sha256(str(c["sha256"])) for c in cmd.manifest):
        raise InvalidInput("invalid_manifest", "manifest chunks need sha256 digests")
    return [
        FileCreated(
            file_id=cmd.aggregate_id,
            owner=cmd.owner,
            name=cmd.name,
            size=cmd.size,
            content_type=cmd.content_type,
            sha256=cmd.sha256,
            manifest=tuple(Piece.from_json(c) for c in cmd.manifest),
            bucket=cmd.bucket,
            metadata=dict(cmd.metadata),
            upload_id=cmd.upload_id,
            at=cmd.at,
        )
    ]


def _delete(state: FileState | None, cmd: DeleteFile) -> list[Event]:
    if state is not None and state.deleted and (state.owner == cmd.caller or cmd.admin):
        return []
    _owned(state, cmd)
    return [FileDeleted(at=cmd.at)]


_DECIDERS: dict[type[Command], Callable[[FileState | None, Any], list[Event]]] = {
    CreateFile: _create,
    DeleteFile: _delete,
}


def decide(state: FileState | None, cmd: Command) -> list[Event]:
    """Pure: what happens if `cmd` is applied to `state`. Raises a DomainError to refuse."""
    step = _DECIDERS.get(type(cmd))
    if step is None:
        raise InvalidInput("unknown_command", f"files cannot handle {cmd.type}")
    return step(state, cmd)
