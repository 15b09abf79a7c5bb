"""The bucket aggregate's events: one class per event type, at its current schema version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from domain.kernel import Event


@dataclass(frozen=True, kw_only=True)
class BucketCreated(Event):
    type: ClassVar[str] = "BucketCreated"

    name: str
    owner: str
    public: bool
    description: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class BucketUpdated(Event):
    """The bucket's settings after the change (both, whichever changed)."""

    type: ClassVar[str] = "BucketUpdated"

    public: bool
    description: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class BucketDeleted(Event):
    type: ClassVar[str] = "BucketDeleted"

    force: bool = False
    at: datetime


EVENTS = (BucketCreated, BucketUpdated, BucketDeleted)
