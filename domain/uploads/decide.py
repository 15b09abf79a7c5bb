"""`decide` for uploads: one small function per command, picked from a table.

Chunk bytes never come here: only their index, size and sha256, after the adapter has made
them durable. The last chunk alone may be short; sizes are Python ints (64-bit in storage).
Every decider is pure: it raises a DomainError to refuse, and returns no events when the
command was already applied (an idempotent replay).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain.buckets.names import is_bucket_name
from domain.errors import Conflict, Gone, InvalidInput, Unprocessable
from domain.files.headers import MAX_HEADER_BYTES, check_headers
from domain.files.keys import object_key_problem
from domain.kernel import JSON, Command, Event, owned
from domain.uploads.commands import (
    AbortUpload,
    AppendBytes,
    CompleteUpload,
    DeclareLength,
    ExpireUpload,
    FailUpload,
    InitiateUpload,
    StoreChunk,
)
from domain.uploads.events import (
    UploadAborted,
    UploadBytesAppended,
    UploadChunkStored,
    UploadCompleted,
    UploadExpired,
    UploadFailed,
    UploadInitiated,
    UploadLengthDeclared,
)
from domain.uploads.state import (
    ACTIVE,
    LIVE,
    MODES,
    UploadState,
    UploadStatus,
    evolve,
    total_chunks_for,
)
from domain.values import MAX_FILE_NAME as MAX_FILE_NAME  # re-exported: the uploads' limit
from domain.values import (
    MAX_METADATA_BYTES,
    Piece,
    aware,
    file_name_problem,
    is_count,
    is_sha256,
    metadata_problem,
)


def _active(state: UploadState) -> None:
    """Refuse unless the upload is live: receiving bytes, or a partial one that has them
    all (PARTIAL_COMPLETE: a PATCH of no bytes at its length is still a no-op, more bytes
    go past its length, and it is terminated or expires like any unfinished upload)."""
    if state.status == UploadStatus.EXPIRED:
        raise Gone("upload_expired", "the upload has expired", {"id": state.id})
    if state.status not in LIVE:
        raise Conflict(
            "upload_not_active",
            f"the upload is {state.status.value}",
            {"id": state.id, "status": state.status.value},
        )


def _mode(state: UploadState, wanted: str) -> None:
    if state.mode != wanted:
        raise Conflict(
            "wrong_upload_mode",
            f"this upload takes {'numbered chunks' if state.mode == 'chunks' else 'appended bytes'}",
            {"mode": state.mode},
        )


def _check_pieces(pieces: list[JSON]) -> tuple[Piece, ...]:
    for p in pieces:
        if not isinstance(p, dict) or not is_count(p.get("size")):
            raise InvalidInput("invalid_piece", "every piece needs a non-negative size")
        if not is_sha256(p.get("sha256")):
            raise InvalidInput("invalid_piece", "every piece needs a sha256")
    return tuple(Piece.from_json(p) for p in pieces)


def _validate_initiate(cmd: InitiateUpload) -> tuple[Piece, ...]:
    problem = file_name_problem(cmd.file_name)
    if problem is not None:
        raise InvalidInput("invalid_file_name", problem)
    if cmd.key is not None:
        if (problem := object_key_problem(cmd.key)) is not None:
            raise InvalidInput("invalid_key", problem)
        if not is_bucket_name(cmd.bucket):
            raise InvalidInput("key_needs_bucket", "an object key needs a bucket")
    if (problem := metadata_problem(cmd.metadata)) is not None:
        # The same bound as a file's (its metadata becomes the file's), and what keeps the
        # upload's events far below the bus's message size limit.
        raise InvalidInput("invalid_metadata", problem, {"max_bytes": MAX_METADATA_BYTES})
    # The object PUT's rule and error (the headers become the object's, by PutObject).
    check_headers(cmd.headers)
    if cmd.headers and cmd.key is None:
        # As S3: stored headers belong to an object version. A plain file keeps none (its
        # CreateFile has no field for them), so dropping them would lose what was asked.
        raise InvalidInput(
            "invalid_header",
            "stored headers need an object key: only an upload into a bucket key keeps them",
            {"header": sorted(cmd.headers)[0], "max_bytes": MAX_HEADER_BYTES},
        )
    if cmd.mode not in MODES:
        raise InvalidInput("invalid_mode", f"mode must be one of {', '.join(MODES)}")
    deferred = cmd.file_size is None and cmd.mode == "stream"
    if not deferred and not is_count(cmd.file_size):
        raise InvalidInput("invalid_file_size", "file_size must be a non-negative integer")
    manifest: tuple[Piece, ...] = ()
    if cmd.mode == "final":
        manifest = _check_pieces(cmd.manifest)
        if sum(p.size for p in manifest) != cmd.file_size or not cmd.parts:
            raise InvalidInput("invalid_manifest", "a final upload's parts must add up to its size")
    elif cmd.manifest or cmd.parts:
        raise InvalidInput("invalid_manifest", "only a final upload names parts")
    if not is_count(cmd.chunk_size) or cmd.chunk_size < 1:
        raise InvalidInput("invalid_chunk_size", "chunk_size must be a positive integer")
    if cmd.sha256 is not None and not is_sha256(cmd.sha256):
        raise InvalidInput("invalid_sha256", "sha256 must be 64 lowercase hex digits")
    return manifest


def _same_request(state: UploadState, cmd: InitiateUpload) -> bool:
    return (
        state.owner == cmd.caller
        and state.file_name == cmd.file_name
        and state.file_size == cmd.file_size
        and state.chunk_size == cmd.chunk_size
        and state.sha256 == cmd.sha256
        and state.content_type == cmd.content_type
        and state.bucket == cmd.bucket
        and state.metadata == dict(cmd.metadata)
        and state.mode == cmd.mode
        and state.partial == cmd.partial
        and state.parts == tuple(cmd.parts)
        and state.key == cmd.key
        and state.headers == dict(cmd.headers)
    )


def _initiate(state: UploadState | None, cmd: InitiateUpload) -> list[Event]:
    manifest = _validate_initiate(cmd)
    if state is not None:
        if _same_request(state, cmd):  # the very same request again: already applied
            return []
        raise Conflict("upload_exists", "an upload with this id exists", {"id": cmd.aggregate_id})
    initiated = UploadInitiated(
        upload_id=cmd.aggregate_id,
        owner=cmd.caller,
        file_name=cmd.file_name,
        file_size=cmd.file_size,
        chunk_size=cmd.chunk_size,
        total_chunks=(
            total_chunks_for(cmd.file_size, cmd.chunk_size)
            if cmd.mode == "chunks" and cmd.file_size is not None
            else 0
        ),
        mode=cmd.mode,
        partial=cmd.partial,
        parts=tuple(cmd.parts),
        manifest=manifest,
        content_type=cmd.content_type,
        sha256=cmd.sha256,
        bucket=cmd.bucket,
        metadata=dict(cmd.metadata),
        key=cmd.key,
        at=cmd.at,
        headers=dict(cmd.headers),
    )
    if not cmd.pieces and cmd.complete_file_id is None:
        return [initiated]
    return _initiate_with_bytes(initiated, cmd)


def _initiate_with_bytes(initiated: UploadInitiated, cmd: InitiateUpload) -> list[Event]:
    """Creation that carries the upload's bytes, and maybe its completion: decided by the
    very rules of the AppendBytes and CompleteUpload that would otherwise follow, each on
    the state the previous event leaves. Any refusal refuses the whole command."""
    if cmd.mode != "stream" and (cmd.pieces or cmd.complete_file_id is not None):
        raise InvalidInput("invalid_mode", "only a stream upload is created with its bytes")
    if cmd.complete_file_id is not None and not is_sha256(cmd.complete_sha256):
        raise InvalidInput("invalid_sha256", "complete_sha256 must be 64 lowercase hex digits")
    events: list[Event] = [initiated]
    st = evolve(None, initiated)
    assert st is not None
    step = AppendBytes(
        aggregate_id=cmd.aggregate_id, caller=cmd.caller, at=cmd.at, offset=0, pieces=cmd.pieces
    )
    for ev in _append(st, step):
        events.append(ev)
        st = _evolved(st, ev)
    if cmd.complete_file_id is not None:
        done = CompleteUpload(
            aggregate_id=cmd.aggregate_id,
            caller=cmd.caller,
            at=cmd.at,
            file_id=cmd.complete_file_id,
            sha256=str(cmd.complete_sha256),
        )
        events.extend(_complete(st, done))
    return events


def _evolved(st: UploadState, ev: Event) -> UploadState:
    nxt = evolve(st, ev)
    assert nxt is not None
    return nxt


def _append(st: UploadState, cmd: AppendBytes) -> list[Event]:
    _mode(st, "stream")
    _active(st)
    pieces = _check_pieces(cmd.pieces)
    if cmd.offset != st.offset:
        raise Conflict(
            "offset_mismatch",
            f"the upload is at offset {st.offset}",
            {"expected_offset": st.offset, "offset": cmd.offset},
        )
    size = sum(p.size for p in pieces)
    if st.file_size is not None and st.offset + size > st.file_size:
        raise InvalidInput(
            "length_exceeded",
            "the bytes go past the upload's length",
            {"length": st.file_size, "offset": st.offset, "size": size},
        )
    if size == 0:
        return []
    return [UploadBytesAppended(offset=cmd.offset, size=size, pieces=pieces, at=cmd.at)]


def _declare_length(st: UploadState, cmd: DeclareLength) -> list[Event]:
    _mode(st, "stream")
    if st.file_size is not None:
        if st.file_size == cmd.file_size:
            return []
        raise Conflict(
            "length_already_set", "the upload's length is already set", {"length": st.file_size}
        )
    _active(st)
    if not is_count(cmd.file_size) or cmd.file_size < st.offset:
        raise InvalidInput(
            "invalid_file_size",
            "the length must be an integer no smaller than the offset",
            {"offset": st.offset},
        )
    return [UploadLengthDeclared(file_size=cmd.file_size, at=cmd.at)]


def _store_chunk(st: UploadState, cmd: StoreChunk) -> list[Event]:
    _mode(st, "chunks")
    if st.status in ACTIVE or st.status == UploadStatus.COMPLETED:
        # A replay of a chunk already stored (even after completion) is a success.
        prev = st.chunks.get(cmd.index)
        if prev is not None:
            if prev.sha256 == cmd.sha256 and prev.size == cmd.size:
                return []
            raise Conflict(
                "chunk_conflict",
                f"chunk {cmd.index} was already stored with other bytes",
                {"index": cmd.index, "sha256": prev.sha256},
            )
    _active(st)
    if not 0 <= cmd.index < st.total_chunks:
        raise InvalidInput(
            "chunk_index_out_of_range",
            f"chunk index must be in [0, {st.total_chunks})",
            {"index": cmd.index, "total_chunks": st.total_chunks},
        )
    expected = st.expected_chunk_size(cmd.index)
    if cmd.size != expected:
        raise InvalidInput(
            "wrong_chunk_size",
            f"chunk {cmd.index} must be {expected} bytes, got {cmd.size}",
            {"index": cmd.index, "expected": expected, "received": cmd.size},
        )
    if not is_sha256(cmd.sha256):
        raise InvalidInput("invalid_sha256", "chunk sha256 must be 64 lowercase hex digits")
    return [
        UploadChunkStored(
            index=cmd.index,
            offset=cmd.index * st.chunk_size,
            size=cmd.size,
            sha256=cmd.sha256,
            at=cmd.at,
        )
    ]


def _complete(st: UploadState, cmd: CompleteUpload) -> list[Event]:
    if st.status == UploadStatus.COMPLETED:
        return []
    _active(st)
    if st.partial:
        raise Conflict(
            "partial_upload", "a partial upload is completed by concatenation, not by itself"
        )
    if st.mode == "chunks":
        missing = st.missing_chunks
        if missing:
            raise Conflict(
                "chunks_missing",
                f"{len(missing)} chunk(s) missing",
                {"missing_chunks": missing[:1000], "missing_count": len(missing)},
            )
    elif not st.all_received:
        raise Conflict(
            "upload_incomplete",
            "not all bytes have arrived",
            {"offset": st.offset, "length": st.file_size},
        )
    if st.sha256 is not None and st.sha256 != cmd.sha256:
        raise Unprocessable(
            "checksum_mismatch",
            "the assembled file does not match the declared sha256",
            {"declared": st.sha256, "actual": cmd.sha256},
        )
    return [
        UploadCompleted(
            file_id=cmd.file_id,
            sha256=cmd.sha256,
            size=st.bytes_received,
            manifest=tuple(Piece.from_json(p) for p in st.manifest()),
            at=cmd.at,
        )
    ]


def _abort(st: UploadState, cmd: AbortUpload) -> list[Event]:
    if st.status == UploadStatus.ABORTED:
        return []
    _active(st)
    return [UploadAborted(at=cmd.at)]


def _fail(st: UploadState, cmd: FailUpload) -> list[Event]:
    if st.status == UploadStatus.FAILED:
        return []
    _active(st)
    return [UploadFailed(reason=cmd.reason, at=cmd.at)]


def _expire(st: UploadState, cmd: ExpireUpload) -> list[Event]:
    if st.status == UploadStatus.EXPIRED:
        return []
    _active(st)
    if cmd.idle_before is not None and _later(st.updated_at, cmd.idle_before):
        raise Conflict(
            "upload_active",
            "the upload saw activity after the idle cutoff",
            {"updated_at": st.updated_at.isoformat()},
        )
    return [UploadExpired(at=cmd.at)]


def _later(a: datetime, b: datetime) -> bool:
    return aware(a) > aware(b)


# Commands on an existing upload: the caller must own it (else it does not exist for them).
_ON_OWNED: dict[type[Command], Callable[[UploadState, Any], list[Event]]] = {
    AppendBytes: _append,
    DeclareLength: _declare_length,
    StoreChunk: _store_chunk,
    CompleteUpload: _complete,
    AbortUpload: _abort,
    FailUpload: _fail,
    ExpireUpload: _expire,
}


def decide(state: UploadState | None, cmd: Command) -> list[Event]:
    """Pure: what happens if `cmd` is applied to `state`. Raises a DomainError to refuse.

    An empty list means the command was already applied (idempotent replay)."""
    if isinstance(cmd, InitiateUpload):
        return _initiate(state, cmd)
    st = owned(state, cmd)
    step = _ON_OWNED.get(type(cmd))
    if step is None:
        raise InvalidInput("unknown_command", f"uploads cannot handle {cmd.type}")
    return step(st, cmd)
