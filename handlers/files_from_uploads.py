"""Process manager: every upload that has all its bytes is completed, and becomes a file.

The API does both steps itself right away (so the client can read the file at once), but
it may crash in between, or between storing the last bytes and completing. This handler
makes both steps certain:

- a stream upload (tus) that an `UploadBytesAppended` or `UploadLengthDeclared` brought to
  its length, or a final (concatenated) upload just initiated, that is still not completed
  is completed here: hash the manifest from the blob store, send CompleteUpload;
- `UploadCompleted` becomes the same CreateFile command, with the same deterministic
  command id, that the API sends: the actor applies it at most once.

Neither step is taken when the upload's bucket is gone (deleted since the upload began, or
deleted and made again by another user: names are global), read from the bucket's own
stream (handlers/destination.py): the API then refuses to complete it too (404
bucket_not_found), and the upload stays incomplete until its owner makes the bucket again
and completes it, or it is aborted or expires. Nothing is retried: the event is handled,
with a warning in the log.

Which uploads complete by themselves, and the commands that complete them and create
their files, are the domain's rule (domain/policies.py), shared with the API.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bus.aio import BoundedLRU
from bus.blobs.errors import BlobCorrupt, BlobNotFound
from bus.blobs.manifests import HashAbandoned, hash_manifest
from bus.blobs.sniff import content_type_of
from bus.config.logs import get_logger
from domain import policies
from domain.commands import Command
from domain.events import RecordedEvent
from domain.kernel import Event
from domain.ports import BlobStore, EventStore
from domain.registry import AGGREGATES, newer_schema
from domain.uploads import UploadState
from domain.uploads.events import (
    UploadBytesAppended,
    UploadCompleted,
    UploadInitiated,
    UploadLengthDeclared,
)
from handlers.destination import bucket_gone

log = get_logger(__name__)


@dataclass(frozen=True)
class Ahead:
    """What a whole batch of upload events says, read once for the batch (issue 13).

    A small upload's bytes and completion arrive in one batch, often with many others:
    checking each event alone cost the handlers a stream read for the bytes (is the upload
    full and not completed?) and a lookup for the completion (is its file there?)."""

    # upload id -> version of an UploadCompleted in the batch: events before it need no
    # completing, whatever they are.
    completed: Mapping[str, int] = field(default_factory=dict)
    # Uploads completed in the batch whose file command was applied when the batch came.
    files_applied: frozenset[str] = frozenset()


async def look_ahead(events: Iterable[RecordedEvent], store: EventStore) -> Ahead:
    """The batch's completions, and (in one query) which of their files exist already."""
    completed = {
        ev.aggregate_id: ev.version
        for ev in events
        # The type name first: decoding every event's payload twice would cost more than
        # the lookup saves.
        # (One of a newer schema version than this code reads is left to `command_for`,
        # which refuses it: the runner retries it until a process that reads it runs.)
        if ev.type == UploadCompleted.type
        and newer_schema(ev.type, ev.schema_version) is None
        and isinstance(ev.payload, UploadCompleted)
    }
    if not completed:
        return Ahead()
    by_command = {policies.file_command_id(u): u for u in completed}
    applied = await store.applied_commands(list(by_command))
    return Ahead(completed, frozenset(by_command[c] for c in applied))


async def command_for(
    ev: RecordedEvent, store: EventStore, blobs: BlobStore, ahead: Ahead | None = None
) -> Command | None:
    """The follow-up command `ev` calls for, or None. `ahead`: what its batch says (see
    `look_ahead`); without it every check reads the store."""
    payload = ev.payload
    if isinstance(payload, UploadCompleted):
        if ahead is not None and ev.aggregate_id in ahead.completed:
            if ev.aggregate_id in ahead.files_applied:
                return None
            return await _create_file(ev, store, blobs)
        if await store.applied_commands([policies.file_command_id(ev.aggregate_id)]):
            return None
        return await _create_file(ev, store, blobs)
    if _may_reach_length(ev.aggregate_id, payload):
        if ahead is not None and ahead.completed.get(ev.aggregate_id, 0) > ev.version:
            return None  # completed later in this very batch
        return await _complete(ev, store, blobs)
    return None


# What deciding on an append needs beyond the event itself: the upload's mode, whether it
# is partial, its length. Remembered per upload so that an upload of thousands of appends
# is not re-read from the event store for each one. Mode and partial never change; the
# length only goes from unknown to known, which the UploadLengthDeclared event carries.
_SHAPES: BoundedLRU[str, tuple[str, bool, int | None]] = BoundedLRU(10_000)


def _remember(upload_id: str, shape: tuple[str, bool, int | None]) -> None:
    _SHAPES[upload_id] = shape


def _may_reach_length(upload_id: str, ev: Event | None) -> bool:
    """False when the event certainly leaves the upload short of its length, or cannot make
    it complete by itself (see policies.completes_by_itself); True means: read and check."""
    if isinstance(ev, UploadInitiated):
        _remember(upload_id, (ev.mode, ev.partial, ev.file_size))
        return ev.mode == "final" or (ev.mode == "stream" and not ev.partial and ev.file_size == 0)
    if not isinstance(ev, (UploadBytesAppended, UploadLengthDeclared)):
        return False
    shape = _SHAPES.get(upload_id)
    if shape is None:
        return True
    mode, partial, size = shape
    if mode != "stream" or partial:
        return False
    if isinstance(ev, UploadLengthDeclared):
        _remember(upload_id, (mode, partial, ev.file_size))
        return True
    # An unknown length may have been declared while another handlers process had this
    # partition: only a known one rules the read out.
    return size is None or ev.offset + ev.size >= size


async def _create_file(ev: RecordedEvent, store: EventStore, blobs: BlobStore) -> Command | None:
    # Called once `command_for` found the file command not applied. Usually the file
    # exists already: the actor applied it right after the completion
    # (domain.policies.follow_ups), or the API sent it. That one indexed lookup spares the
    # stream read, the type detection and a command round trip; when the file is not
    # there yet (or the lookup races with it) the command goes out and the actor applies
    # it once.
    events = await store.read_stream(ev.stream_id)
    state: UploadState | None = AGGREGATES["uploads"].fold(
        e for e in events if e.version <= ev.version
    )
    if state is None or state.file_id is None:
        return None
    if await bucket_gone(store, state.bucket, state.owner):
        # Completed (the API died before the file, or the file's command was refused), and
        # the bucket went since: the file would land in a bucket that is no more, or in
        # someone else's of that name.
        log.warning(
            "completed upload not made a file: its bucket is gone",
            upload=state.id,
            bucket=state.bucket,
        )
        return None
    # Detected exactly as the API's completion detects it (same bytes, same name), so the
    # one CreateFile the actor applies carries the same type whoever sent it.
    content_type = await content_type_of(
        blobs,
        [(p["sha256"], p["size"]) for p in state.manifest()],
        state.file_name,
        state.content_type,
    )
    return policies.file_from_upload(state, content_type)


async def _at_version(store: EventStore, stream_id: str, version: int) -> bool:
    return await store.stream_version(stream_id) == version


async def _complete(ev: RecordedEvent, store: EventStore, blobs: BlobStore) -> Command | None:
    upload_id = ev.aggregate_id
    events = await store.read_stream(ev.stream_id)
    fold = AGGREGATES["uploads"].fold
    if not policies.completes_by_itself(fold(e for e in events if e.version <= ev.version)):
        return None
    while True:
        # Judge by the stream as it is now: usually the API has completed it meanwhile, and
        # then there is nothing to hash (hashing a big file twice is the expensive part).
        now: UploadState | None = fold(events)
        if now is None or not policies.completes_by_itself(now):
            return None
        if await bucket_gone(store, now.bucket, now.owner):
            # Asked before hashing: a big upload is not hashed for a bucket that is gone.
            log.warning(
                "upload not completed: its bucket is gone", upload=upload_id, bucket=now.bucket
            )
            return None
        unchanged = functools.partial(_at_version, store, ev.stream_id, events[-1].version)
        try:
            # The API usually completes the upload while this hashes (it sends its
            # CompleteUpload right after its last append's reply): the hash stops once the
            # stream moves on, and the stream is judged again (issue 13: a 1 GiB tus upload
            # cost the handlers up to 1.4 s of CPU beside the next upload).
            digest = await hash_manifest(
                blobs, [(p["sha256"], p["size"]) for p in now.manifest()], keep_going=unchanged
            )
        except HashAbandoned:
            events = await store.read_stream(ev.stream_id)
            continue
        except (BlobNotFound, BlobCorrupt, ValueError, OSError) as e:
            # A blob the events name is gone, has the wrong size or cannot be read: waiting
            # would not help this partition; the API (or an operator) can still complete it.
            log.error(
                "cannot complete upload: its bytes are not intact", upload=upload_id, error=str(e)
            )
            return None
        return policies.complete(
            now,
            digest,
            caller=now.owner,
            at=now.updated_at,
            command_id=policies.complete_command_id(upload_id),
        )
