"""`decide` for files: one small function per command, picked from a table."""

from __future__ import annotations

from typing import Any

from domain.buckets.names import is_bucket_name
from domain.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from domain.files.commands import CreateFile, DeleteFile, PutObject, UpdateFile
from domain.files.events import FileCreated, FileDeleted, FileReplaced, FileUpdated
from domain.files.headers import check_headers
from domain.files.keys import object_file_id, object_key_problem, object_name
from domain.files.state import FileState
from domain.kernel import Command, Event, Step, by_command
from domain.values import MAX_METADATA_BYTES, Piece, file_name_problem, is_sha256, metadata_problem


def _owned(state: FileState | None, cmd: Command) -> FileState:
    if state is None or state.deleted or (state.owner != cmd.caller and not cmd.admin):
        raise NotFound("file_not_found", "no such file", {"id": cmd.aggregate_id})
    return state


def _check_manifest(manifest: list[Any], size: int) -> None:
    sizes = [int(c["size"]) for c in manifest]
    if size < 0 or any(n < 0 for n in sizes) or sum(sizes) != size:
        raise InvalidInput("invalid_manifest", "the manifest does not add up to the file size")
    if not all(is_sha256(str(c["sha256"])) for c in manifest):
        raise InvalidInput("invalid_manifest", "manifest chunks need sha256 digests")


def _put_object(state: FileState | None, cmd: PutObject) -> list[Event]:
    """Create the object, or replace its live version: one event either way, so a reader
    sees the old version or the new one, never neither (the blobs are durable before). A
    previous owner's leftover (below) is two: its deletion, then the creation."""
    if (problem := object_key_problem(cmd.key)) is not None:
        raise InvalidInput("invalid_key", problem)
    if not is_bucket_name(cmd.bucket):
        raise InvalidInput("invalid_bucket_name", "not a bucket name", {"bucket": cmd.bucket[:64]})
    if cmd.aggregate_id != object_file_id(cmd.bucket, cmd.key):
        raise InvalidInput("invalid_object_id", "the file id is not the one of this key")
    _check_manifest(cmd.manifest, cmd.size)
    if (problem := metadata_problem(cmd.metadata)) is not None:
        raise InvalidInput("invalid_metadata", problem, {"max_bytes": MAX_METADATA_BYTES})
    check_headers(cmd.headers)
    live = state is not None and not state.deleted
    # A live object of another owner is one the bucket's previous owner left behind (the
    # name deleted within the read model's lag, then taken again; the id is the key's, so
    # it is this aggregate): no object of this owner, who must not learn of it (a 412 to
    # If-None-Match would say it is there). It is deleted, then the key created afresh.
    leftover = live and state is not None and state.owner != cmd.owner
    if leftover:
        live = False
    if live and state is not None:
        if state.upload_id is not None and state.upload_id == cmd.upload_id:
            return []  # the same upload's object again (the API and the handler both send it)
        if cmd.if_none_match:
            raise PreconditionFailed(
                "object_exists", "an object with this key exists (If-None-Match: *)"
            )
    current = state.sha256 if live and state is not None else None
    if cmd.if_match is not None and (current is None or cmd.if_match not in ("*", current)):
        raise PreconditionFailed("etag_mismatch", "the object's ETag does not match If-Match")
    manifest = tuple(Piece.from_json(c) for c in cmd.manifest)
    if live:
        return [
            FileReplaced(
                owner=cmd.owner,
                name=object_name(cmd.key),
                size=cmd.size,
                content_type=cmd.content_type,
                sha256=cmd.sha256,
                manifest=manifest,
                metadata=dict(cmd.metadata),
                upload_id=cmd.upload_id,
                at=cmd.at,
                headers=dict(cmd.headers),
            )
        ]
    return [
        *([FileDeleted(at=cmd.at)] if leftover else []),
        FileCreated(
            file_id=cmd.aggregate_id,
            owner=cmd.owner,
            name=object_name(cmd.key),
            size=cmd.size,
            content_type=cmd.content_type,
            sha256=cmd.sha256,
            manifest=manifest,
            bucket=cmd.bucket,
            metadata=dict(cmd.metadata),
            upload_id=cmd.upload_id,
            key=cmd.key,
            at=cmd.at,
            headers=dict(cmd.headers),
        ),
    ]


def _create(state: FileState | None, cmd: CreateFile) -> list[Event]:
    if state is not None:
        if state.upload_id is not None and state.upload_id == cmd.upload_id:
            return []  # the same upload's file again (API and handler both send it)
        raise Conflict("file_exists", "a file with this id exists", {"id": cmd.aggregate_id})
    _check_manifest(cmd.manifest, cmd.size)
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
        if cmd.if_match is not None:  # no current version matches anything, `*` included
            raise PreconditionFailed("etag_mismatch", "the object's ETag does not match If-Match")
        return []
    st = _owned(state, cmd)
    if cmd.if_match is not None and cmd.if_match not in ("*", st.sha256):
        raise PreconditionFailed("etag_mismatch", "the object's ETag does not match If-Match")
    return [FileDeleted(at=cmd.at)]


def _update(state: FileState | None, cmd: UpdateFile) -> list[Event]:
    st = _owned(state, cmd)
    if cmd.name is not None and (problem := file_name_problem(cmd.name, "name")) is not None:
        raise InvalidInput("invalid_name", problem)
    if cmd.bucket is not None and cmd.bucket != "default" and not is_bucket_name(cmd.bucket):
        raise InvalidInput("invalid_bucket_name", "not a bucket name", {"bucket": cmd.bucket[:64]})
    if st.key is not None and cmd.bucket is not None and cmd.bucket != st.bucket:
        # An object's id is derived from (bucket, key): it cannot leave its bucket.
        raise Conflict(
            "object_not_movable",
            "an object stays in its bucket: PUT it under the other bucket and delete this one",
            {"bucket": st.bucket},
        )
    if cmd.metadata is not None and (problem := metadata_problem(cmd.metadata)) is not None:
        raise InvalidInput("invalid_metadata", problem, {"max_bytes": MAX_METADATA_BYTES})
    name = st.name if cmd.name is None else cmd.name
    bucket = st.bucket if cmd.bucket is None else cmd.bucket
    metadata = st.metadata if cmd.metadata is None else dict(cmd.metadata)
    if (name, bucket, metadata) == (st.name, st.bucket, st.metadata):
        return []
    return [FileUpdated(name=name, bucket=bucket, metadata=metadata, at=cmd.at)]


_DECIDERS: dict[type[Command], Step[FileState]] = {
    CreateFile: _create,
    DeleteFile: _delete,
    UpdateFile: _update,
    PutObject: _put_object,
}

decide = by_command("files", _DECIDERS)
