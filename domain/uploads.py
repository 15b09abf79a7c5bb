"""The upload aggregate: a file arriving in numbered chunks, possibly out of order.

State moves INITIATED -> IN_PROGRESS -> COMPLETED, or to ABORTED / FAILED / EXPIRED.
Chunk bytes never come here: only their index, size and sha256, after the adapter has made
them durable. The last chunk alone may be short; sizes are Python ints (64-bit in storage).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from domain.commands import (
    AbortUpload,
    AppendBytes,
    Command,
    CompleteUpload,
    DeclareLength,
    ExpireUpload,
    FailUpload,
    InitiateUpload,
    StoreChunk,
)
from domain.errors import Conflict, Gone, InvalidInput, NotFound, Unprocessable
from domain.events import JSON, NewEvent, register_event, upcaster

SHA256_RE = re.compile(r"[0-9a-f]{64}")  # use with fullmatch: `$` would admit a trailing newline
MAX_FILE_NAME = 1024


class UploadStatus(StrEnum):
    INITIATED = "INITIATED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    EXPIRED = "EXPIRED"


ACTIVE = (UploadStatus.INITIATED, UploadStatus.IN_PROGRESS)


@dataclass(frozen=True)
class Chunk:
    index: int
    offset: int
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadState:
    id: str
    owner: str
    file_name: str
    file_size: int | None  # None: stream mode with the length deferred
    chunk_size: int
    total_chunks: int
    content_type: str
    sha256: str | None
    bucket: str
    metadata: dict[str, str]
    status: UploadStatus
    created_at: datetime
    updated_at: datetime
    chunks: dict[int, Chunk] = field(default_factory=dict)
    file_id: str | None = None
    completed_sha256: str | None = None
    failure: str | None = None
    mode: str = "chunks"
    partial: bool = False
    parts: tuple[str, ...] = ()
    offset: int = 0  # stream and final modes: bytes received so far
    pieces: tuple[tuple[str, int], ...] = ()  # stream and final modes, in order

    @property
    def bytes_received(self) -> int:
        if self.mode == "chunks":
            return sum(c.size for c in self.chunks.values())
        return self.offset

    @property
    def missing_chunks(self) -> list[int]:
        return [i for i in range(self.total_chunks) if i not in self.chunks]

    @property
    def all_received(self) -> bool:
        if self.mode == "chunks":
            return not self.missing_chunks
        return self.file_size is not None and self.offset == self.file_size

    def expected_chunk_size(self, index: int) -> int:
        size = self.file_size or 0
        if index == self.total_chunks - 1:
            return size - self.chunk_size * (self.total_chunks - 1)
        return self.chunk_size

    def manifest(self) -> list[JSON]:
        if self.mode != "chunks":
            return [{"sha256": sha, "size": n} for sha, n in self.pieces]
        return [
            {"sha256": self.chunks[i].sha256, "size": self.chunks[i].size}
            for i in range(self.total_chunks)
        ]


# ---- events --------------------------------------------------------------------------

INITIATED = "UploadInitiated"
CHUNK_STORED = "UploadChunkStored"
COMPLETED = "UploadCompleted"
ABORTED = "UploadAborted"
FAILED = "UploadFailed"
EXPIRED = "UploadExpired"
BYTES_APPENDED = "UploadBytesAppended"
LENGTH_DECLARED = "UploadLengthDeclared"
MODES = ("chunks", "stream", "final")

register_event(INITIATED, 2)
for _t in (CHUNK_STORED, COMPLETED, ABORTED, FAILED, EXPIRED, BYTES_APPENDED, LENGTH_DECLARED):
    register_event(_t, 1)


@upcaster(INITIATED, 1)
def _initiated_v1_to_v2(data: JSON) -> JSON:
    """v1 called the name `filename` and had no user metadata."""
    out = {k: v for k, v in data.items() if k != "filename"}
    out["file_name"] = data.get("filename", data.get("file_name", ""))
    out.setdefault("metadata", {})
    return out


# ---- decide --------------------------------------------------------------------------


def total_chunks_for(file_size: int, chunk_size: int) -> int:
    return -(-file_size // chunk_size) if file_size > 0 else 0


def _owned(state: UploadState | None, cmd: Command) -> UploadState:
    if state is None or (state.owner != cmd.caller and not cmd.admin):
        raise NotFound("upload_not_found", "no such upload", {"id": cmd.aggregate_id})
    return state


def _active(state: UploadState) -> None:
    if state.status == UploadStatus.EXPIRED:
        raise Gone("upload_expired", "the upload has expired", {"id": state.id})
    if state.status not in ACTIVE:
        raise Conflict(
            "upload_not_active",
            f"the upload is {state.status.value}",
            {"id": state.id, "status": state.status.value},
        )


def _validate_initiate(cmd: InitiateUpload) -> None:
    if not isinstance(cmd.file_name, str) or not cmd.file_name.strip():
        raise InvalidInput("invalid_file_name", "file_name must be a non-empty string")
    if len(cmd.file_name) > MAX_FILE_NAME:
        raise InvalidInput("invalid_file_name", f"file_name is over {MAX_FILE_NAME} characters")
    if any(unicodedata.category(c) == "Cc" for c in cmd.file_name):
        raise InvalidInput("invalid_file_name", "file_name must not contain control characters")
    if "/" in cmd.file_name or "\\" in cmd.file_name or not cmd.file_name.strip("."):
        # A name, not a path: paths (folders) belong in object keys.
        raise InvalidInput(
            "invalid_file_name",
            "file_name must be a name, not a path: no '/' or '\\', and not only dots",
        )
    if cmd.mode not in MODES:
        raise InvalidInput("invalid_mode", f"mode must be one of {', '.join(MODES)}")
    deferred = cmd.file_size is None and cmd.mode == "stream"
    if not deferred and (
        isinstance(cmd.file_size, bool) or not isinstance(cmd.file_size, int) or cmd.file_size < 0
    ):
        raise InvalidInput("invalid_file_size", "file_size must be a non-negative integer")
    if cmd.mode == "final":
        _validate_pieces(cmd.manifest)
        if sum(int(p["size"]) for p in cmd.manifest) != cmd.file_size or not cmd.parts:
            raise InvalidInput("invalid_manifest", "a final upload's parts must add up to its size")
    elif cmd.manifest or cmd.parts:
        raise InvalidInput("invalid_manifest", "only a final upload names parts")
    if (
        isinstance(cmd.chunk_size, bool)
        or not isinstance(cmd.chunk_size, int)
        or cmd.chunk_size < 1
    ):
        raise InvalidInput("invalid_chunk_size", "chunk_size must be a positive integer")
    if cmd.sha256 is not None and not SHA256_RE.fullmatch(cmd.sha256):
        raise InvalidInput("invalid_sha256", "sha256 must be 64 lowercase hex digits")


def _validate_pieces(pieces: list[JSON]) -> None:
    for p in pieces:
        size = p.get("size") if isinstance(p, dict) else None
        sha = p.get("sha256") if isinstance(p, dict) else None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput("invalid_piece", "every piece needs a non-negative size")
        if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha):
            raise InvalidInput("invalid_piece", "every piece needs a sha256")


def decide(state: UploadState | None, cmd: Command) -> list[NewEvent]:
    """Pure: what happens if `cmd` is applied to `state`. Raises a DomainError to refuse.

    An empty list means the command was already applied (idempotent replay)."""
    if isinstance(cmd, InitiateUpload):
        _validate_initiate(cmd)
        if state is not None:
            same = (
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
            )
            if same:  # the very same request again: already applied
                return []
            raise Conflict(
                "upload_exists", "an upload with this id exists", {"id": cmd.aggregate_id}
            )
        return [
            NewEvent(
                INITIATED,
                {
                    "upload_id": cmd.aggregate_id,
                    "owner": cmd.caller,
                    "file_name": cmd.file_name,
                    "file_size": cmd.file_size,
                    "chunk_size": cmd.chunk_size,
                    "total_chunks": (
                        total_chunks_for(cmd.file_size, cmd.chunk_size)
                        if cmd.mode == "chunks" and cmd.file_size is not None
                        else 0
                    ),
                    "mode": cmd.mode,
                    "partial": cmd.partial,
                    "parts": list(cmd.parts),
                    "manifest": [
                        {"sha256": p["sha256"], "size": int(p["size"])} for p in cmd.manifest
                    ],
                    "content_type": cmd.content_type,
                    "sha256": cmd.sha256,
                    "bucket": cmd.bucket,
                    "metadata": dict(cmd.metadata),
                    "at": cmd.at.isoformat(),
                },
                2,
            )
        ]

    st = _owned(state, cmd)

    if isinstance(cmd, (StoreChunk, AppendBytes, DeclareLength)):
        wanted = "chunks" if isinstance(cmd, StoreChunk) else "stream"
        if st.mode != wanted:
            raise Conflict(
                "wrong_upload_mode",
                f"this upload takes {'numbered chunks' if st.mode == 'chunks' else 'appended bytes'}",
                {"mode": st.mode},
            )

    if isinstance(cmd, AppendBytes):
        _active(st)
        _validate_pieces(cmd.pieces)
        if cmd.offset != st.offset:
            raise Conflict(
                "offset_mismatch",
                f"the upload is at offset {st.offset}",
                {"expected_offset": st.offset, "offset": cmd.offset},
            )
        size = sum(int(p["size"]) for p in cmd.pieces)
        if st.file_size is not None and st.offset + size > st.file_size:
            raise InvalidInput(
                "length_exceeded",
                "the bytes go past the upload's length",
                {"length": st.file_size, "offset": st.offset, "size": size},
            )
        if size == 0:
            return []
        return [
            NewEvent(
                BYTES_APPENDED,
                {
                    "offset": cmd.offset,
                    "size": size,
                    "pieces": [{"sha256": p["sha256"], "size": int(p["size"])} for p in cmd.pieces],
                    "at": cmd.at.isoformat(),
                },
            )
        ]

    if isinstance(cmd, DeclareLength):
        if st.file_size is not None:
            if st.file_size == cmd.file_size:
                return []
            raise Conflict(
                "length_already_set", "the upload's length is already set", {"length": st.file_size}
            )
        _active(st)
        if (
            isinstance(cmd.file_size, bool)
            or not isinstance(cmd.file_size, int)
            or cmd.file_size < st.offset
        ):
            raise InvalidInput(
                "invalid_file_size",
                "the length must be an integer no smaller than the offset",
                {"offset": st.offset},
            )
        return [NewEvent(LENGTH_DECLARED, {"file_size": cmd.file_size, "at": cmd.at.isoformat()})]

    if isinstance(cmd, StoreChunk):
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
        if not SHA256_RE.fullmatch(cmd.sha256):
            raise InvalidInput("invalid_sha256", "chunk sha256 must be 64 lowercase hex digits")
        return [
            NewEvent(
                CHUNK_STORED,
                {
                    "index": cmd.index,
                    "offset": cmd.index * st.chunk_size,
                    "size": cmd.size,
                    "sha256": cmd.sha256,
                    "at": cmd.at.isoformat(),
                },
            )
        ]

    if isinstance(cmd, CompleteUpload):
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
            NewEvent(
                COMPLETED,
                {
                    "file_id": cmd.file_id,
                    "sha256": cmd.sha256,
                    "size": st.bytes_received,
                    "manifest": st.manifest(),
                    "at": cmd.at.isoformat(),
                },
            )
        ]

    if isinstance(cmd, AbortUpload):
        if st.status == UploadStatus.ABORTED:
            return []
        _active(st)
        return [NewEvent(ABORTED, {"at": cmd.at.isoformat()})]

    if isinstance(cmd, FailUpload):
        if st.status == UploadStatus.FAILED:
            return []
        _active(st)
        return [NewEvent(FAILED, {"reason": cmd.reason, "at": cmd.at.isoformat()})]

    if isinstance(cmd, ExpireUpload):
        if st.status == UploadStatus.EXPIRED:
            return []
        _active(st)
        if cmd.idle_before is not None and _later(st.updated_at, cmd.idle_before):
            raise Conflict(
                "upload_active",
                "the upload saw activity after the idle cutoff",
                {"updated_at": st.updated_at.isoformat()},
            )
        return [NewEvent(EXPIRED, {"at": cmd.at.isoformat()})]

    raise InvalidInput("unknown_command", f"uploads cannot handle {cmd.type}")


# ---- evolve --------------------------------------------------------------------------


def evolve(state: UploadState | None, type_: str, data: JSON) -> UploadState | None:
    """Pure and total: apply one (upcast) event. Unknown events leave the state unchanged."""
    at = _ts(data.get("at"))
    if type_ == INITIATED:
        return UploadState(
            id=str(data["upload_id"]),
            owner=str(data["owner"]),
            file_name=str(data["file_name"]),
            file_size=None if data.get("file_size") is None else int(data["file_size"]),
            chunk_size=int(data["chunk_size"]),
            total_chunks=int(data["total_chunks"]),
            content_type=str(data.get("content_type") or "application/octet-stream"),
            sha256=data.get("sha256"),
            bucket=str(data.get("bucket") or "default"),
            metadata=dict(data.get("metadata") or {}),
            status=UploadStatus.INITIATED,
            created_at=at or datetime.min,
            updated_at=at or datetime.min,
            mode=str(data.get("mode") or "chunks"),
            partial=bool(data.get("partial", False)),
            parts=tuple(str(p) for p in data.get("parts") or ()),
            pieces=tuple((str(p["sha256"]), int(p["size"])) for p in data.get("manifest") or ()),
            offset=sum(int(p["size"]) for p in data.get("manifest") or ()),
        )
    if state is None:
        return None
    stamp: dict[str, Any] = {"updated_at": at or state.updated_at}
    if type_ == CHUNK_STORED:
        chunk = Chunk(
            int(data["index"]), int(data["offset"]), int(data["size"]), str(data["sha256"])
        )
        chunks = {**state.chunks, chunk.index: chunk}
        status = (
            UploadStatus.IN_PROGRESS if state.status == UploadStatus.INITIATED else state.status
        )
        return replace(state, chunks=chunks, status=status, **stamp)
    if type_ == BYTES_APPENDED:
        added = tuple((str(p["sha256"]), int(p["size"])) for p in data["pieces"])
        status = (
            UploadStatus.IN_PROGRESS if state.status == UploadStatus.INITIATED else state.status
        )
        return replace(
            state,
            pieces=state.pieces + added,
            offset=state.offset + int(data["size"]),
            status=status,
            **stamp,
        )
    if type_ == LENGTH_DECLARED:
        return replace(state, file_size=int(data["file_size"]), **stamp)
    if type_ == COMPLETED:
        return replace(
            state,
            status=UploadStatus.COMPLETED,
            file_id=str(data["file_id"]),
            completed_sha256=str(data["sha256"]),
            **stamp,
        )
    if type_ == ABORTED:
        return replace(state, status=UploadStatus.ABORTED, **stamp)
    if type_ == FAILED:
        return replace(state, status=UploadStatus.FAILED, failure=str(data.get("reason")), **stamp)
    if type_ == EXPIRED:
        return replace(state, status=UploadStatus.EXPIRED, **stamp)
    return state


def _later(a: datetime, b: datetime) -> bool:
    """a > b, treating a naive timestamp (only from malformed old data) as UTC."""
    if a.tzinfo is None:
        a = a.replace(tzinfo=UTC)
    if b.tzinfo is None:
        b = b.replace(tzinfo=UTC)
    return a > b


def _ts(v: object) -> datetime | None:
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v)
        except ValueError:
            return None
    return None
