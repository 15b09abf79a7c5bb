"""Process-manager rules: pure decisions about what follows from an upload's or a fetch's
state.

The rule: an upload that has all its bytes completes (CompleteUpload, under a file id
derived from the upload id, or for an upload naming a bucket key, the object's), and a
completed upload becomes a file (this CreateFile, or PutObject for a key, under a
deterministic command id). The API applies it at once so the client can read the file
right away; handlers/files_from_uploads.py applies it from the events so it happens even if
the API dies half-way. Both build their commands here, so the actor sees the very same
commands from either and applies them once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from domain.buckets.state import BucketState
from domain.fetches.commands import CompleteFetch
from domain.fetches.state import FetchState, FetchStatus
from domain.files.commands import CreateFile, DeleteFile, PutObject
from domain.files.keys import object_file_id
from domain.files.state import FileState
from domain.kernel import JSON, Command
from domain.uploads.commands import CompleteUpload, InitiateUpload
from domain.uploads.state import ACTIVE, UploadState, UploadStatus

# Namespace of the file ids of completions (see completion_file_id).
_FILE_IDS = uuid.UUID("6f9b7a52-2b1e-4c51-9a36-0d4c1f3e8a71")


# Upload metadata entries that name the upload rather than describe the file: tus clients
# send them (`filename`, `filetype`, and Cairn's `bucket` and `key`), and `cairn upload`
# keeps a directory file's relative path in `key`. An object holds each itself (its key,
# its bucket, its content type), so as user metadata they would only come back as
# `x-amz-meta-filename` and the like, which no S3 PUT of the same object gives; a plain
# file keeps them (its metadata is the only place the path of `cairn upload DIR` lives).
NAMING_ENTRIES = frozenset({"filename", "filetype", "bucket", "key"})


def object_metadata(upload_metadata: dict[str, str]) -> dict[str, str]:
    """The user metadata of the object an upload into a key becomes: its own, without the
    entries that named the upload (NAMING_ENTRIES)."""
    return {k: v for k, v in upload_metadata.items() if k not in NAMING_ENTRIES}


def file_command_id(upload_id: str) -> str:
    return f"file-from-upload-{upload_id}"


def complete_command_id(upload_id: str) -> str:
    return f"complete-upload-{upload_id}"


def completion_file_id(upload_id: str) -> str:
    """The file id of an upload's completion: derived from the upload id, so a redelivered
    event, or the API and the handler both completing, produce the very same command."""
    return str(uuid.uuid5(_FILE_IDS, upload_id))


def completes_by_itself(state: UploadState | None) -> bool:
    """An active stream (tus) or final (concatenated) upload that has all its bytes.

    Partial uploads only exist to be concatenated, and the native chunked API keeps its
    explicit `complete` call: neither is ever completed without being asked."""
    return (
        state is not None
        and state.mode != "chunks"
        and not state.partial
        and state.all_received
        and state.status in ACTIVE
    )


def complete(
    state: UploadState,
    sha256: str,
    *,
    caller: str,
    at: datetime,
    admin: bool = False,
    command_id: str = "",
    file_content_type: str | None = None,
) -> CompleteUpload:
    """Complete `state`'s upload; `sha256` is the digest of its assembled bytes.

    `file_content_type` (detected from the bytes): the file follows in the same step (see
    `follow_ups`)."""
    return CompleteUpload(
        aggregate_id=state.id,
        caller=caller,
        admin=admin,
        at=at,
        command_id=command_id,
        file_id=_completed_file_id(state.id, state.bucket, state.key),
        sha256=sha256,
        file_content_type=file_content_type,
    )


def _completed_file_id(upload_id: str, bucket: str, key: str | None) -> str:
    """The file an upload completes into: the object's for a key, else derived from it."""
    return object_file_id(bucket, key) if key is not None else completion_file_id(upload_id)


def initiate_complete(
    cmd: InitiateUpload,
    pieces: list[JSON],
    sha256: str,
    file_content_type: str | None = None,
) -> InitiateUpload:
    """`cmd`, carrying the upload's whole content (`pieces`, durable, in order, whose bytes'
    digest is `sha256`): it completes in the same decision, into the very file id that
    `complete` would give it (so the file follows by `file_from_upload`, from the API or
    the files handler alike; with `file_content_type`, in the same step: `follow_ups`)."""
    return replace(
        cmd,
        pieces=pieces,
        complete_file_id=_completed_file_id(cmd.aggregate_id, cmd.bucket, cmd.key),
        complete_sha256=sha256,
        file_content_type=file_content_type,
    )


def follow_ups(cmd: Command, state: object) -> list[Command]:
    """What the actor host applies right after `cmd` succeeded, leaving `state`: the file a
    completion carrying its detected type becomes (one command where the adapter would
    send two, issue 13). The same CreateFile, under the same command id, as the adapter's
    (the API's, the fetch worker's) and the files handler's, so whichever comes first is
    applied and the others are no-ops.

    Only a plain file: its id is derived from the upload or the fetch, so the follow-up
    creates a stream nobody else writes. An object's file is the key's, which other
    commands change, and stays with the actor that owns it (the adapter's or the handler's
    PutObject)."""
    if isinstance(cmd, CompleteFetch):
        if cmd.file_content_type is None or not isinstance(state, FetchState):
            return []
        if state.key is not None:  # an object's put stays with the key's own actor
            return []
        fetched = file_from_fetch(state, cmd.file_content_type, state.updated_at)
        return [fetched] if fetched is not None else []
    if not isinstance(cmd, (CompleteUpload, InitiateUpload)) or cmd.file_content_type is None:
        return []
    if not isinstance(state, UploadState) or state.key is not None:
        return []
    create = file_from_upload(state, cmd.file_content_type)
    return [create] if create is not None else []


def file_from_upload(
    state: UploadState | None, content_type: str | None = None
) -> CreateFile | PutObject | None:
    """The file a completed upload becomes (None while it is not completed): a new file, or
    for an upload naming a key, that object (created, or its new version).

    `content_type`: what the adapter detected from the bytes; by default the declared one."""
    if state is None or state.status != UploadStatus.COMPLETED or state.file_id is None:
        return None
    if state.key is not None:
        # The command id makes it applied once even after a later PUT replaced it: a
        # redelivered completion never brings the upload's older bytes back.
        return put_object(
            bucket=state.bucket,
            key=state.key,
            owner=state.owner,
            size=state.bytes_received,
            sha256=str(state.completed_sha256),
            manifest=state.manifest(),
            content_type=content_type or state.content_type,
            caller=state.owner,
            at=state.updated_at,
            metadata=object_metadata(state.metadata),
            upload_id=state.id,
            command_id=file_command_id(state.id),
            headers=state.headers,
        )
    return CreateFile(
        aggregate_id=state.file_id,
        caller=state.owner,
        at=state.updated_at,
        command_id=file_command_id(state.id),
        owner=state.owner,
        name=state.file_name,
        size=state.bytes_received,
        content_type=content_type or state.content_type,
        sha256=str(state.completed_sha256),
        manifest=state.manifest(),
        bucket=state.bucket,
        metadata=state.metadata,
        upload_id=state.id,
    )


# Namespaces of fetch ids and of the files fetches become (see fetch_id, fetch_file_id).
_FETCH_IDS = uuid.UUID("2c7d0f0e-5a43-4f8e-9d0b-3a9f1c7e6b15")
_FETCH_FILE_IDS = uuid.UUID("b1e4a0c2-8d7f-4e61-a3c9-5f2e7d9b0a48")


def fetch_id(
    owner: str, url: str, generation: int, bucket: str | None = None, key: str | None = None
) -> str:
    """The fetch of `url` (normalised) for `owner`: derived, so concurrent identical
    requests address one aggregate and make one writer. A new generation (refresh, or the
    previous one failed, was cancelled or expired) is a new fetch. A fetch into an object
    key is its own fetch per (bucket, key): asking for the URL into another key must make
    that object too, not return a fetch that ends in another one."""
    if key is None:
        return str(uuid.uuid5(_FETCH_IDS, f"{owner}\n{generation}\n{url}"))
    return str(uuid.uuid5(_FETCH_IDS, f"{owner}\n{generation}\n{url}\n{bucket}\n{key}"))


def fetch_result_file_id(state: FetchState) -> str:
    """The file a completed fetch becomes: its object's (derived from bucket and key) when
    it names a key, else one derived from the fetch."""
    if state.key is not None:
        return object_file_id(state.bucket, state.key)
    return fetch_file_id(state.id)


def fetch_file_id(fetch_id: str) -> str:
    """The file a completed fetch becomes: derived from the fetch, so it is created once."""
    return str(uuid.uuid5(_FETCH_FILE_IDS, fetch_id))


def fetch_file_command_id(fetch_id: str) -> str:
    return f"file-from-fetch-{fetch_id}"


def file_from_fetch(
    state: FetchState, content_type: str, at: datetime
) -> CreateFile | PutObject | None:
    """A completed fetch becomes this file (owner, bucket, name, sha256, size, type), under a
    file id and command id derived from the fetch: the actor host applies it right after
    the worker's CompleteFetch (`follow_ups`), the handlers again from FetchCompleted
    (should that host die in between). A fetch naming a key becomes that object instead
    (created, or its new version: `put_object`), sent by the worker and again by the
    handlers; the command id makes it applied once, so a redelivered completion never
    brings the fetched bytes back over a later PUT of the key."""
    if state.status != FetchStatus.COMPLETED or state.file_id is None:
        return None
    # At most 4 KiB of UTF-8 (a whole character at the cut): 4096 characters of a
    # non-ASCII URL were up to 16 KiB, past the 8 KiB an object's PutObject accepts.
    source = state.url.encode()[:4096].decode(errors="ignore")
    metadata = {"source_url": source, "fetch_id": state.id}
    if state.key is not None:
        return put_object(
            bucket=state.bucket,
            key=state.key,
            owner=state.owner,
            size=state.bytes,
            sha256=state.completed_sha256 or "",
            manifest=state.manifest(),
            content_type=content_type or "application/octet-stream",
            caller=state.owner,
            at=at,
            metadata=metadata,
            command_id=fetch_file_command_id(state.id),
        )
    return CreateFile(
        aggregate_id=state.file_id,
        caller=state.owner,
        at=at,
        command_id=fetch_file_command_id(state.id),
        owner=state.owner,
        name=state.file_name or "download",
        size=state.bytes,
        content_type=content_type or "application/octet-stream",
        sha256=state.completed_sha256 or "",
        manifest=state.manifest(),
        bucket=state.bucket,
        metadata=metadata,
    )


# ---- objects: content made the object at (bucket, key) -----------------------------------


def put_object(
    *,
    bucket: str,
    key: str,
    owner: str,
    size: int,
    sha256: str,
    manifest: Sequence[JSON] | Sequence[tuple[str, int]],
    content_type: str,
    caller: str,
    at: datetime,
    admin: bool = False,
    metadata: dict[str, str] | None = None,
    upload_id: str | None = None,
    if_none_match: bool = False,
    if_match: str | None = None,
    command_id: str = "",
    headers: dict[str, str] | None = None,
) -> PutObject:
    """THE way to make content the object `key` of `bucket` (create, or replace atomically).

    Every producer of objects uses it: the object PUT, an upload naming a key, a fetch into
    a key, a task extracting to keys. The content must already be durable in the blob store
    (`manifest`: its chunks in order, as {"sha256", "size"} or (sha256, size)); this builds
    the one command, addressed to the object's derived file id (`object_file_id`), that
    the actor applies: FileCreated for a new key, FileReplaced for a live one (the old
    version stays readable until then, and a command that never arrives changes nothing).

    `owner` is the bucket's owner (objects are their bucket owner's files), `caller` who
    asks; checking that the caller may write the bucket is the adapter's job (it reads the
    bucket aggregate; api/bucket_access.py `check_writable`). Give a deterministic
    `command_id` when the same put may be sent twice (a handler re-deriving it from an
    event): the event store applies a command id once. `headers`: the version's stored
    HTTP headers (domain/files/headers.py; none by default). Refusals: `invalid_key` and
    `invalid_header` (400), `object_exists` / `etag_mismatch` (412, from `if_none_match` / `if_match`).
    """
    pieces: list[JSON] = [
        dict(p) if isinstance(p, dict) else {"sha256": p[0], "size": p[1]} for p in manifest
    ]
    return PutObject(
        aggregate_id=object_file_id(bucket, key),
        caller=caller,
        admin=admin,
        at=at,
        command_id=command_id,
        owner=owner,
        bucket=bucket,
        key=key,
        size=size,
        content_type=content_type,
        sha256=sha256,
        manifest=pieces,
        metadata=dict(metadata or {}),
        upload_id=upload_id,
        if_none_match=if_none_match,
        if_match=if_match,
        headers=dict(headers or {}),
    )


def object_from_file(
    file: FileState,
    bucket: str,
    key: str,
    *,
    owner: str,
    caller: str,
    at: datetime,
    admin: bool = False,
    if_none_match: bool = False,
    if_match: str | None = None,
    content_type: str | None = None,
    metadata: dict[str, str] | None = None,
    command_id: str = "",
    headers: dict[str, str] | None = None,
) -> PutObject:
    """Make the existing file `file` (its content: no bytes move, chunks are shared) the
    object `key` of `bucket` as well, with the file's content type, metadata and stored
    headers unless others are given (S3's CopyObject COPY keeps all three). See `put_object` (`if_none_match`: create only; `if_match`: replace
    only that version)."""
    return put_object(
        bucket=bucket,
        key=key,
        owner=owner,
        size=file.size,
        sha256=file.sha256,
        manifest=list(file.manifest),
        content_type=file.content_type if content_type is None else content_type,
        caller=caller,
        at=at,
        admin=admin,
        metadata=file.metadata if metadata is None else metadata,
        if_none_match=if_none_match,
        if_match=if_match,
        command_id=command_id,
        headers=file.headers if headers is None else headers,
    )


def orphaned(file: FileState | None, bucket: BucketState | None) -> bool:
    """Is `file` live in a bucket that is gone (`bucket`: that bucket's state, None if it
    never existed)? Such a file was made by a write that checked its bucket just before
    the bucket's deletion (nothing orders the two aggregates): it counts against its
    owner's quota, and no bucket lists it.

    Gone: missing, deleted, or another user's bucket made since the file was written (a
    name deleted and taken again; its objects are its owner's files, so it does not list
    this one). Not gone: the owner's bucket, also one deleted and made again by the owner
    (the file stays in it, as if put there), and another user's bucket that was there
    before the file was written (an admin may fetch a file of theirs into a user's
    bucket; `handlers/destination.py` lets it, by the same rule). A file in no bucket
    (`default`) is never orphaned."""
    if file is None or file.deleted or file.bucket == "default":
        return False
    if bucket is None or bucket.deleted or bucket.name != file.bucket:
        return True
    return bucket.owner != file.owner and bucket.created_at > file.created_at


def orphan_command_id(file_id: str, version: int) -> str:
    """The deletion of an orphan as seen at its stream's `version`: the same file seen
    again at that version (a sweep run twice, or at once in two processes, or retried
    after a crash) sends the same command, which the event store applies once; the key
    written again since is another version, and another deletion."""
    return f"delete-orphan-{file_id}-v{version}"


def delete_orphan(file: FileState, version: int, at: datetime) -> DeleteFile:
    """The deletion of the orphaned `file` (`orphaned`), read at its stream's `version`.

    As its owner (not as an admin: a key taken since by another owner's object is theirs,
    404, not deleted), and only if its content is still the one judged (`if_match`: a new
    version written since is not deleted for the old one's sake)."""
    return DeleteFile(
        aggregate_id=file.id,
        caller=file.owner,
        at=at,
        command_id=orphan_command_id(file.id, version),
        if_match=file.sha256,
    )
