"""The file aggregate's commands, as they travel on the bus (see domain.commands)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from domain.kernel import JSON, Command


@dataclass(frozen=True, kw_only=True)
class FileCommand(Command):
    aggregate: ClassVar[str] = "files"
    stream_prefix: ClassVar[str] = "file"


@dataclass(frozen=True, kw_only=True)
class CreateFile(FileCommand):
    type: ClassVar[str] = "CreateFile"

    owner: str
    name: str
    size: int
    content_type: str
    sha256: str
    # Pieces as JSON ({"sha256", "size"}): validated by `decide`, which refuses bad ones.
    manifest: list[JSON]
    bucket: str = "default"
    metadata: dict[str, str] = field(default_factory=dict)
    upload_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeleteFile(FileCommand):
    """Delete the file (an object: its live version). `if_match`: only if the live
    file's sha256 is this, or `*`: only if it is live (HTTP `If-Match`); otherwise 412."""

    type: ClassVar[str] = "DeleteFile"

    if_match: str | None = None


@dataclass(frozen=True, kw_only=True)
class UpdateFile(FileCommand):
    """Rename, move to another bucket, or replace the user metadata (None: keep as is).

    Whether the caller may write into `bucket` is the adapter's question (another
    aggregate's state); `decide` checks the shapes and the file's own ownership."""

    type: ClassVar[str] = "UpdateFile"

    name: str | None = None
    bucket: str | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class PutObject(FileCommand):
    """Make this content the object `key` of `bucket`: create it, or replace the current
    version, in one step (one event). `aggregate_id` must be `object_file_id(bucket, key)`
    (build it with `domain.policies.put_object`). `owner` is the bucket's owner; whether
    the caller may write the bucket is the adapter's question (another aggregate).

    `if_none_match`: only if no live object has the key (HTTP `If-None-Match: *`);
    `if_match`: only if the live object's sha256 is this, or `*`: only if there is a live
    object (HTTP `If-Match`); otherwise 412.

    `headers`: the version's stored HTTP headers (domain/files/headers.py), by lower-case
    name; empty for a producer that sets none (an upload, a fetch)."""

    type: ClassVar[str] = "PutObject"

    owner: str
    bucket: str
    key: str
    size: int
    content_type: str
    sha256: str
    manifest: list[JSON]
    metadata: dict[str, str] = field(default_factory=dict)
    upload_id: str | None = None
    if_none_match: bool = False
    if_match: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


COMMANDS = (CreateFile, DeleteFile, UpdateFile, PutObject)
