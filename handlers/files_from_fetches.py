"""Process manager: a completed fetch becomes a file, or the object at its bucket and key.

The actor creates a plain fetch's file in the completion's own step (the worker's
CompleteFetch carries the detected type: domain.policies.follow_ups), so it can be read at
once; this handler sends the same CreateFile (same file id, same command id) from the
event, so the file exists even if that actor died between its two appends. A file that
exists already is left alone. A fetch naming a key becomes that object
(domain.policies.put_object), sent with the same command id as the worker's, so it is
applied exactly once.
"""

from __future__ import annotations

from bus.blobs.sniff import content_type_of
from domain.events import RecordedEvent
from domain.fetches import AGGREGATE as FETCHES
from domain.fetches.events import FetchCompleted
from domain.files import AGGREGATE as FILES
from domain.kernel import Command
from domain.policies import file_from_fetch
from domain.ports import BlobStore, EventStore


async def command_for(ev: RecordedEvent, store: EventStore, blobs: BlobStore) -> Command | None:
    if ev.type != FetchCompleted.type:
        return None
    events = await store.read_stream(ev.stream_id)
    state = FETCHES.fold(e for e in events if e.version <= ev.version)
    if state is None or state.file_id is None:
        return None
    # A plain file exists once created (the worker did it). An object may exist from before
    # (an older version of the key): its put is sent again whatever, and its command id
    # makes it applied once.
    if (
        state.key is None
        and FILES.fold(await store.read_stream(FILES.stream_id(state.file_id))) is not None
    ):
        return None  # the worker created it
    name = state.file_name or "download"
    content_type = await content_type_of(blobs, list(state.pieces), name, state.stored_type)
    return file_from_fetch(state, content_type, state.updated_at)
