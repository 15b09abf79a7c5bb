"""Process manager: every upload that has all its bytes is completed, and becomes a file.

The API does both steps itself right away (so the client can read the file at once), but
it may crash in between, or between storing the last bytes and completing. This handler
makes both steps certain:

- a stream upload (tus) that an `UploadBytesAppended` or `UploadLengthDeclared` brought to
  its length, or a final (concatenated) upload just initiated, that is still not completed
  is completed here: hash the manifest from the blob store, send CompleteUpload;
- `UploadCompleted` becomes the same CreateFile command, with the same deterministic
  command id, that the API sends: the actor applies it at most once.

Partial uploads are never completed (they only exist to be concatenated), and the native
chunked API keeps its explicit `complete` call: this handler never completes those.
"""

from __future__ import annotations

from bus.aio import BoundedLRU
from bus.blobs.errors import BlobCorrupt, BlobNotFound
from bus.blobs.manifests import hash_manifest
from bus.blobs.sniff import content_type_of
from bus.config.logs import get_logger
from domain.aggregates import AGGREGATES
from domain.commands import Command, CompleteUpload, CreateFile
from domain.events import RecordedEvent
from domain.policies import complete_command_id, completion_file_id, file_command_id
from domain.ports import BlobStore, EventStore
from domain.uploads import (
    ACTIVE,
    BYTES_APPENDED,
    COMPLETED,
    INITIATED,
    LENGTH_DECLARED,
    UploadState,
)

log = get_logger(__name__)

_MAY_REACH_LENGTH = (BYTES_APPENDED, LENGTH_DECLARED, INITIATED)


async def command_for(ev: RecordedEvent, store: EventStore, blobs: BlobStore) -> Command | None:
    if ev.type == COMPLETED:
        return await _create_file(ev, store, blobs)
    if ev.type in _MAY_REACH_LENGTH and _may_reach_length(ev):
        return await _complete(ev, store, blobs)
    return None


# What deciding on an append needs beyond the event itself: the upload's mode, whether it
# is partial, its length. Remembered per upload so that an upload of thousands of appends
# is not re-read from the event store for each one. Mode and partial never change; the
# length only goes from unknown to known, which the UploadLengthDeclared event carries.
_SHAPES: BoundedLRU[str, tuple[str, bool, int | None]] = BoundedLRU(10_000)


def _remember(upload_id: str, shape: tuple[str, bool, int | None]) -> None:
    _SHAPES[upload_id] = shape


def _may_reach_length(ev: RecordedEvent) -> bool:
    """False only when the event certainly leaves a completable upload short of its length
    (or the upload is not one this handler completes); True means: read and check."""
    d = ev.data
    if ev.type == INITIATED:
        mode, partial, size = (
            str(d.get("mode") or "chunks"),
            bool(d.get("partial")),
            d.get("file_size"),
        )
        _remember(ev.aggregate_id, (mode, partial, None if size is None else int(size)))
        return mode == "final" or (mode == "stream" and not partial and size == 0)
    shape = _SHAPES.get(ev.aggregate_id)
    if shape is None:
        return True
    mode, partial, size = shape
    if mode != "stream" or partial:
        return False
    if ev.type == LENGTH_DECLARED:
        _remember(ev.aggregate_id, (mode, partial, int(d["file_size"])))
        return True
    # An unknown length may have been declared while another handlers process had this
    # partition: only a known one rules the read out.
    return size is None or int(d["offset"]) + int(d["size"]) >= size


async def _create_file(ev: RecordedEvent, store: EventStore, blobs: BlobStore) -> Command | None:
    upload_id = ev.aggregate_id
    events = await store.read_stream(ev.stream_id)
    state: UploadState | None = AGGREGATES["uploads"].fold(
        e for e in events if e.version <= ev.version
    )
    if state is None or state.file_id is None:
        return None
    manifest = state.manifest()
    # Detected exactly as the API's completion detects it (same bytes, same name), so the
    # one CreateFile the actor applies carries the same type whoever sent it.
    content_type = await content_type_of(
        blobs, [(p["sha256"], p["size"]) for p in manifest], state.file_name, state.content_type
    )
    return CreateFile(
        aggregate_id=state.file_id,
        caller=state.owner,
        at=state.updated_at,
        command_id=file_command_id(upload_id),
        owner=state.owner,
        name=state.file_name,
        size=state.bytes_received,
        content_type=content_type,
        sha256=str(ev.data["sha256"]),
        manifest=manifest,
        bucket=state.bucket,
        metadata=state.metadata,
        upload_id=upload_id,
    )


async def _complete(ev: RecordedEvent, store: EventStore, blobs: BlobStore) -> Command | None:
    upload_id = ev.aggregate_id
    events = await store.read_stream(ev.stream_id)
    fold = AGGREGATES["uploads"].fold
    then: UploadState | None = fold(e for e in events if e.version <= ev.version)
    if (
        then is None
        or then.mode == "chunks"
        or then.partial
        or not then.all_received
        or then.status not in ACTIVE
    ):
        return None
    # Judge by the stream as it is now: usually the API has completed it meanwhile, and
    # then there is nothing to hash (hashing a big file twice is the expensive part).
    now: UploadState | None = fold(events)
    if now is None or now.status not in ACTIVE:
        return None
    try:
        digest = await hash_manifest(blobs, [(p["sha256"], p["size"]) for p in now.manifest()])
    except (BlobNotFound, BlobCorrupt, ValueError, OSError) as e:
        # A blob the events name is gone, has the wrong size or cannot be read: waiting
        # would not help this partition; the API (or an operator) can still complete it.
        log.error(
            "cannot complete upload: its bytes are not intact", upload=upload_id, error=str(e)
        )
        return None
    return CompleteUpload(
        aggregate_id=upload_id,
        caller=now.owner,
        at=now.updated_at,
        command_id=complete_command_id(upload_id),
        file_id=completion_file_id(upload_id),
        sha256=digest,
    )
