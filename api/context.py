"""What the API's handlers share: the pool, the event store, the blob store, the command bus.

Built once in the app's lifespan and reached through `request.app.state.cairn`.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Request

from api.auth import Authenticator, Principal
from api.bucket_cache import BucketCache
from api.http.signing import Signer
from bus.actors.commandbus import CommandBus, CommandResult
from bus.config.settings import Settings
from bus.config.tracing import current_traceparent
from bus.store.eventstore import PostgresEventStore
from bus.store.state_cache import StateCache
from domain.commands import Command
from domain.errors import Conflict, NotFound
from domain.ports import BlobStore
from domain.registry import AGGREGATES
from domain.uploads import expected_chunk_size
from projections.downloads import DownloadCounter


def now() -> datetime:
    return datetime.now(UTC)


def parse_uuid(value: str, code: str, what: str) -> str:
    """Ids are UUIDs; anything else is simply not found (same answer as someone else's id)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(code, f"no such {what}", {"id": value[:64]}) from None


@dataclass(frozen=True)
class UploadShape:
    """The immutable part of an upload, cached so chunk PUTs can be checked before reading."""

    owner: str
    file_size: int
    chunk_size: int
    total_chunks: int
    mode: str = "chunks"
    bucket: str = "default"  # set at initiation, never changed

    def expected_size(self, index: int) -> int:
        return expected_chunk_size(self.file_size, self.chunk_size, self.total_chunks, index)


@dataclass
class AppContext:
    settings: Settings
    pool: asyncpg.Pool
    store: PostgresEventStore
    blobs: BlobStore
    bus: CommandBus
    auth: Authenticator
    signer: Signer
    # Live buckets between requests (api/bucket_cache.py).
    buckets: BucketCache
    # Who holds this process's idempotency claims (bus/store/idempotency.py): host:port.
    holder: str = ""
    shapes: OrderedDict[str, UploadShape] = field(default_factory=OrderedDict)
    downloads: DownloadCounter = field(default_factory=DownloadCounter)
    # Aggregate states between requests, brought up to date on each load
    # (bus/store/state_cache.py).
    states: StateCache = field(default_factory=StateCache)

    async def load(self, aggregate: str, stream_id: str) -> Any:
        return await self.states.load(self.store, AGGREGATES[aggregate], stream_id)

    async def upload_shape(self, upload_id: str, who: Principal) -> UploadShape:
        shape = self.shapes.get(upload_id)
        if shape is None:
            state = await self.load("uploads", f"upload-{upload_id}")
            if state is None:
                raise NotFound("upload_not_found", "no such upload", {"id": upload_id})
            shape = UploadShape(
                state.owner,
                state.file_size,
                state.chunk_size,
                state.total_chunks,
                state.mode,
                state.bucket,
            )
            self.shapes[upload_id] = shape
            while len(self.shapes) > 50_000:
                self.shapes.popitem(last=False)
        if shape.owner != who.user and not who.admin:
            raise NotFound("upload_not_found", "no such upload", {"id": upload_id})
        if shape.mode != "chunks":
            # A tus upload (appended bytes; its size may not even be known yet): the domain's
            # own refusal, before its size is used to check the chunk or the quota.
            raise Conflict(
                "wrong_upload_mode", "this upload takes appended bytes", {"mode": shape.mode}
            )
        return shape

    async def send(self, request: Request[Any, Any, Any], cmd: Command) -> CommandResult:
        rid = str(request.scope.get("state", {}).get("request_id") or "") or None
        bucket = cmd.aggregate_id if cmd.aggregate == "buckets" else None
        if bucket is not None:
            # Before: a read racing with the command is not remembered; after: the next
            # request reads what it wrote (this process's own writes need no NOTIFY).
            self.buckets.forget(bucket)
        try:
            return await self.bus.send(cmd, correlation_id=rid, traceparent=current_traceparent())
        finally:
            if bucket is not None:
                self.buckets.forget(bucket)


def ctx(request: Request[Any, Any, Any]) -> AppContext:
    return request.app.state.cairn  # type: ignore[no-any-return]
