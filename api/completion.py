"""Finishing an upload into a file: shared by the native API's `complete` and tus.

CompleteUpload (on the upload, with the sha256 of the assembled bytes: their running
digest when they came through this process in order, api/running_digests.py, else hashed
here from the blob store; the domain never touches bytes) carrying the type detected from
the bytes, and then the file: the actor applies its CreateFile right after the completion,
in the same step (domain.policies.follow_ups); this process sends it itself only when that
did not happen (an upload naming a key, whose PutObject stays with the object's own actor,
or an upload completed before). Both commands are built by the domain's rule
(domain/policies.py), the same one the files handler (handlers/files_from_uploads.py)
applies when it sees the events, so if this process dies between the two commands the
handler still creates the file, and if both get there the actor applies it once.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from api import running_digests
from api.context import AppContext, now
from api.limits import quota_reserved
from bus.blobs.manifests import hash_manifest
from bus.blobs.sniff import content_type_of
from domain import policies
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
    digest: str | None = None,
    file_created: bool = False,
) -> UploadState:
    """Complete `state`'s upload (unless it already is) and create its file.

    `digest`: the sha256 of the assembled bytes when the caller already has it; by default
    the running digest of the bytes as they arrived in order (api/running_digests.py: tus
    PATCHes, native chunks PUT in order), else they are hashed here from the blob store.
    `file_created`: the caller knows the file exists already (the actor applied it as the
    follow-up of the command that completed the upload).

    Returns the upload as recorded afterwards (its `file_id` names the file). Raises the
    domain's refusal if the upload cannot be completed (bytes or chunks missing, aborted,
    a declared sha256 that does not match...)."""
    upload_id = state.id
    carried = running_digests.take(state)
    if file_created and state.status == UploadStatus.COMPLETED:
        return state
    # Detected from the bytes (the handler detects it the same way, so the one CreateFile
    # the actor applies carries the same type whoever sent it). Before completing: the
    # pieces are the same, and the completion then carries it so that the actor creates
    # the file in the same step (domain.policies.follow_ups), one command instead of two.
    # Only with all the bytes: a manifest with holes has nothing to read (and the
    # completion is refused anyway, by the domain, which says why).
    content_type = (
        await _detected_type(c, state)
        if state.all_received or state.status == UploadStatus.COMPLETED
        else None
    )
    if state.status != UploadStatus.COMPLETED:
        # Hash only what can complete: for anything else the domain's refusal says why.
        if not state.all_received:
            digest = ""
        elif digest is None and carried is not None:
            digest = carried
        elif digest is None:
            digest = await hash_manifest(
                c.blobs, [(p["sha256"], p["size"]) for p in state.manifest()]
            )
        complete = policies.complete(
            state, digest, caller=caller, admin=admin, at=now(), file_content_type=content_type
        )
        if state.mode == "final":
            # A concatenation was asked for its bytes beside its parts' when it was made,
            # and is left out of WENT (projections/usage.py): nothing to ask here.
            done = await c.send(request, complete)
        else:
            # The quota: an upload counts from its creation on, so completing it asks for
            # nothing, unless its bucket went since it began (then it holds only what the
            # read model has it receive: projections.usage.WENT) and its owner made the
            # bucket again: then what of its bytes does not count yet is asked (413
            # quota_exceeded if they do not fit; the upload stays, with them), and held
            # until the read model has it completed.
            async with quota_reserved(
                c, state.owner, state.bytes_received, completing=upload_id
            ) as hold:
                done = await c.send(request, complete)
                hold.kept = True
        file_created = file_created or done.followed_by(policies.file_command_id(upload_id))
        # Reload to build the file from what was really recorded: a concurrent completion
        # (another request, or the handler) may have won with its own time; then ours was a
        # no-op and both answers name the same file.
        reloaded: UploadState | None = await c.load("uploads", f"upload-{upload_id}")
        assert reloaded is not None and reloaded.file_id is not None
        state = reloaded
    if not file_created:
        if content_type is None:
            content_type = await _detected_type(c, state)
        create = policies.file_from_upload(state, content_type)
        assert create is not None  # completed: just checked, or reloaded after completing
        await c.send(request, create)
    return state


async def _detected_type(c: AppContext, state: UploadState) -> str:
    return await content_type_of(
        c.blobs,
        [(p["sha256"], p["size"]) for p in state.manifest()],
        state.file_name,
        state.content_type,
    )
