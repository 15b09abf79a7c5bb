"""Finishing an upload into a file: shared by the native API's `complete` and tus.

Two commands, in this order: CompleteUpload (on the upload, with the sha256 of the
assembled bytes, hashed here from the blob store: the domain never touches bytes) and then
CreateFile. The file's creation carries a deterministic command id
(`file-from-upload-<upload id>`), the same one the files handler
(handlers/files_from_uploads.py) sends when it sees the UploadCompleted event, so if this
process dies between the two commands the handler still creates the file, and if both
get there the actor applies it once.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request

from api.context import AppContext, now
from bus.blobs.manifests import hash_manifest
from bus.blobs.sniff import content_type_of
from domain.commands import CompleteUpload, CreateFile
from domain.policies import file_command_id
from domain.uploads import UploadState, UploadStatus

# A file's whole manifest travels in single bus messages (UploadCompleted, CreateFile,
# FileCreated), which must stay under the producer's 4 MiB request size: ~45,000 entries.
MAX_MANIFEST_ENTRIES = 40_000


async def finish_upload(
    c: AppContext,
    request: Request[Any, Any, Any],
    state: UploadState,
    *,
    caller: str,
    admin: bool = False,
) -> UploadState:
    """Complete `state`'s upload (unless it already is) and create its file.

    Returns the upload as recorded afterwards (its `file_id` names the file). Raises the
    domain's refusal if the upload cannot be completed (bytes or chunks missing, aborted,
    a declared sha256 that does not match...)."""
    upload_id = state.id
    if state.status != UploadStatus.COMPLETED:
        # Hash only what can complete: for anything else the domain's refusal says why.
        digest = (
            await hash_manifest(c.blobs, [(p["sha256"], p["size"]) for p in state.manifest()])
            if state.all_received
            else ""
        )
        await c.send(
            request,
            CompleteUpload(
                aggregate_id=upload_id,
                caller=caller,
                admin=admin,
                at=now(),
                file_id=str(uuid.uuid4()),
                sha256=digest,
            ),
        )
        # Reload to build the file from what was really recorded: a concurrent completion
        # (another request, or the handler) may have won with its own file id; then ours
        # was a no-op and both answers name the same file.
        reloaded: UploadState | None = await c.load("uploads", f"upload-{upload_id}")
        assert reloaded is not None and reloaded.file_id is not None
        state = reloaded
    manifest = state.manifest()
    content_type = await content_type_of(
        c.blobs, [(p["sha256"], p["size"]) for p in manifest], state.file_name, state.content_type
    )
    await c.send(
        request,
        CreateFile(
            aggregate_id=str(state.file_id),
            caller=state.owner,
            at=state.updated_at,
            command_id=file_command_id(upload_id),
            owner=state.owner,
            name=state.file_name,
            size=state.bytes_received,
            content_type=content_type,
            sha256=str(state.completed_sha256),
            manifest=manifest,
            bucket=state.bucket,
            metadata=state.metadata,
            upload_id=upload_id,
        ),
    )
    return state
