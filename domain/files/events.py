"""The file aggregate's events: one class per event type, at its current schema version."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from domain.kernel import Event, Stamped
from domain.values import Piece


@dataclass(frozen=True, kw_only=True)
class FileCreated(Event):
    type: ClassVar[str] = "FileCreated"

    file_id: str
    owner: str
    name: str
    size: int
    content_type: str
    sha256: str
    manifest: tuple[Piece, ...]
    bucket: str = "default"
    metadata: dict[str, str] = field(default_factory=dict)
    upload_id: str | None = None  # the upload it was completed from, if any
    key: str | None = None  # set for an object (domain/files/keys.py): its key in `bucket`
    at: datetime
    # An object version's stored HTTP headers (domain/files/headers.py). Last, with a
    # default: events written before it read as "none" (no schema version bump needed).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class FileDeleted(Stamped):
    type: ClassVar[str] = "FileDeleted"


@dataclass(frozen=True, kw_only=True)
class FileUpdated(Event):
    """The file's name, bucket and user metadata after a change (all three, whatever
    changed), so a reader needs no earlier event to know the current values."""

    type: ClassVar[str] = "FileUpdated"

    name: str
    bucket: str
    metadata: dict[str, str] = field(default_factory=dict)
    at: datetime


@dataclass(frozen=True, kw_only=True)
class FileReplaced(Event):
    """An object's new version (PutObject on a live object): the whole new content and its
    description. The previous version's manifest is no longer referenced by this file."""

    type: ClassVar[str] = "FileReplaced"

    owner: str
    name: str
    size: int
    content_type: str
    sha256: str
    manifest: tuple[Piece, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    upload_id: str | None = None
    at: datetime
    headers: dict[str, str] = field(default_factory=dict)  # as on FileCreated


EVENTS = (FileCreated, FileDeleted, FileUpdated, FileReplaced)
