"""Ports: the small protocols every adapter implements. Each has one contract test suite.

Only typing lives here; implementations are in `bus/` (event store, blob store, clock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from domain.events import EventMeta, NewEvent, RecordedEvent


class ConcurrencyError(Exception):
    """The stream's version was not the expected one: reload, decide again, retry."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"{stream_id}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class DuplicateCommand(Exception):
    """The command id was already applied; `events` are what it appended then."""

    def __init__(self, command_id: str, events: list[RecordedEvent]) -> None:
        super().__init__(f"command {command_id} was already applied")
        self.command_id = command_id
        self.events = events


class UnstorableEvent(Exception):
    """The store cannot hold an event as given (text with a NUL character, which
    PostgreSQL's text and jsonb cannot represent). Appending it again would fail again: the
    command is refused, never retried."""


class EventStore(Protocol):
    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        meta: EventMeta,
        command_id: str | None = None,
    ) -> list[RecordedEvent]:
        """Append atomically iff the stream is at `expected_version` (0 = new stream).

        With `command_id`, the same id twice raises DuplicateCommand instead of appending.
        An event the store cannot hold raises UnstorableEvent, and nothing is appended."""
        ...

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]: ...

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with position > after_position, in position order."""
        ...

    async def stream_version(self, stream_id: str) -> int: ...

    async def applied_commands(self, command_ids: Sequence[str]) -> set[str]:
        """Those of `command_ids` whose append was made (it appended events)."""
        ...

    async def applied_event_types(self, command_ids: Sequence[str]) -> dict[str, list[str]]:
        """Those of `command_ids` whose append was made -> the types of the events it
        appended, in order: what a command did, known again after its reply was lost (a
        task taken over: did its put replace an object, handlers/tasks/fileops.py)."""
        ...


class BlobWriter(Protocol):
    async def write(self, data: bytes) -> None: ...


class BlobStore(Protocol):
    """Content-addressed chunk storage. `put_stream` is durable when it returns."""

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int | None = None,
        also_hash: Any = None,
    ) -> tuple[str, int]:
        """Store the bytes; return (sha256 hex, size). Nothing is kept if it raises.

        `also_hash`: a hashlib object fed every byte too, in order, on the way (e.g. an
        upload's running digest, so its completion need not read the file back)."""
        ...

    async def exists(self, sha256: str) -> bool: ...

    async def size(self, sha256: str) -> int | None: ...

    def open_range(
        self, sha256: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream bytes [offset, offset+length) of one chunk."""
        ...

    async def delete(self, sha256: str) -> None: ...

    def iter_blobs(self) -> AsyncIterator[tuple[str, int, float]]:
        """Every stored blob as (sha256, size, last written in epoch seconds), any order."""
        ...

    async def delete_many(self, shas: Sequence[str], *, stored_before: float) -> dict[str, int]:
        """Delete, in batches, those of `shas` last written before `stored_before`;
        return {sha256: size} of what was deleted. For the garbage collector."""
        ...

    async def sweep(self, older_than: float = 24 * 3600) -> int:
        """Remove leftovers of failed puts older than `older_than` seconds; return how many."""
        ...

    async def ping(self) -> None:
        """Raise unless the store is reachable and usable now (readiness, start-up check)."""
        ...

    async def close(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
