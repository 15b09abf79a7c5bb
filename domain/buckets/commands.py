"""The bucket aggregate's commands, as they travel on the bus (see domain.commands).

A bucket's aggregate id is its name: names are unique (like S3's), so the stream id
`bucket-<name>` is deterministic and two racing creates of one name meet on one stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from domain.kernel import Command

MAX_DESCRIPTION = 1024
"""Characters in a bucket's description."""


@dataclass(frozen=True, kw_only=True)
class BucketCommand(Command):
    aggregate: ClassVar[str] = "buckets"
    stream_prefix: ClassVar[str] = "bucket"


@dataclass(frozen=True, kw_only=True)
class CreateBucket(BucketCommand):
    type: ClassVar[str] = "CreateBucket"

    public: bool = False
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class UpdateBucket(BucketCommand):
    """Change what is given (None: leave as is)."""

    type: ClassVar[str] = "UpdateBucket"

    public: bool | None = None
    description: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeleteBucket(BucketCommand):
    """Delete the bucket. Its objects are deleted first, each by its own event (the API
    does that for `?force=true`); `force` is recorded for the audit trail."""

    type: ClassVar[str] = "DeleteBucket"

    force: bool = False


COMMANDS = (CreateBucket, UpdateBucket, DeleteBucket)
