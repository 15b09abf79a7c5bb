"""Process manager: every completed upload becomes a file.

The API creates the file itself right after completing an upload (so the client can read
it at once), but it may crash in between. This handler makes that step certain: it reacts
to `UploadCompleted` and sends the same CreateFile command with the same deterministic
command id, which the actor applies at most once.
"""

from __future__ import annotations

from typing import Any

from domain.aggregates import AGGREGATES
from domain.commands import Command, CreateFile
from domain.events import RecordedEvent
from domain.ports import EventStore
from domain.uploads import COMPLETED, UploadState


def file_command_id(upload_id: str) -> str:
    return f"file-from-upload-{upload_id}"


async def command_for(ev: RecordedEvent, store: EventStore) -> Command | None:
    if ev.type != COMPLETED:
        return None
    upload_id = ev.aggregate_id
    events = await store.read_stream(ev.stream_id)
    state: UploadState | None = AGGREGATES["uploads"].fold(
        e for e in events if e.version <= ev.version
    )
    if state is None or state.file_id is None:
        return None
    data: dict[str, Any] = ev.data
    return CreateFile(
        aggregate_id=state.file_id,
        caller=state.owner,
        at=state.updated_at,
        command_id=file_command_id(upload_id),
        owner=state.owner,
        name=state.file_name,
        size=state.file_size,
        content_type=state.content_type,
        sha256=str(data["sha256"]),
        manifest=state.manifest(),
        bucket=state.bucket,
        metadata=state.metadata,
        upload_id=upload_id,
    )
