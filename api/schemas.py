"""The shapes of the API's bodies, as the OpenAPI document describes them.

Request bodies here are what the handlers decode (strictly, see api/http/strict.py): unknown
fields are refused and numbers are range-checked before anything else touches them.
Response shapes document what the handlers answer (they build plain dicts, so replies keep
their field order); `ok(...)` turns one into a route's documented success response.
Fields that a newer server may add are allowed: clients must ignore unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar.openapi.datastructures import ResponseSpec

# Every size, count and offset fits PostgreSQL's bigint (larger is a 400 before anything
# reads it; a size over the configured maximum is the handler's 413).
BIGINT_MAX = (1 << 63) - 1
Size = Annotated[int, msgspec.Meta(ge=0, le=BIGINT_MAX)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Short = Annotated[str, msgspec.Meta(max_length=255)]


class CreateUpload(msgspec.Struct, forbid_unknown_fields=True):
    """Start a chunked upload. `file_name` is a name, not a path (no `/`, `\\`, `..`)."""

    file_name: Name
    file_size: Size
    content_type: Short | None = None
    chunk_size: Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)] | None = None
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-fA-F]{64}$")] | None = None
    bucket: Short | None = None
    metadata: dict[Short, Annotated[str, msgspec.Meta(max_length=4096)]] | None = None
    # With `bucket`: the object key the completed upload becomes (created or replaced).
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None
    # With `key`: the object's stored headers (Cache-Control, Content-Disposition,
    # Content-Encoding, Content-Language, Expires; names case-insensitive), as an object
    # PUT's. Checked by the handler (400 invalid_header), so left unbounded here.
    headers: dict[str, str] | None = None


class ErrorInfo(msgspec.Struct):
    code: str
    message: str
    details: dict[str, Any]


class Error(msgspec.Struct):
    """Cairn's one error shape; `request_id` equals the X-Request-ID header."""

    error: ErrorInfo
    request_id: str


class UploadCreated(msgspec.Struct):
    id: str | None
    chunk_size: int
    total_chunks: int | None
    status: str | None
    file_id: str | None
    file_name: str | None
    file_size: int | None
    deduplicated: bool = False


class ChunkStored(msgspec.Struct):
    upload_id: str
    index: int
    size: int
    sha256: str
    chunks_received: int | None
    bytes_received: int | None
    status: str | None


class Upload(msgspec.Struct):
    id: str
    file_name: str
    file_size: int | None
    chunk_size: int
    total_chunks: int
    chunks_received: int
    bytes_received: int
    progress: float
    status: str
    mode: str
    partial: bool
    content_type: str
    bucket: str
    # The object key in `bucket` the completed upload becomes; null for a plain file.
    key: str | None
    metadata: dict[str, str]
    # The stored HTTP headers (lower-case names) the object it becomes gets; {} when none.
    headers: dict[str, str]
    sha256: str | None
    file_id: str | None
    created_at: str
    updated_at: str
    completed_at: str | None
    speed_bytes_per_second: float | None
    eta_seconds: float | None
    missing_chunks: list[int] | None = None


class UploadPage(msgspec.Struct):
    items: list[Upload]
    total: int
    limit: int
    offset: int


class MissingChunks(msgspec.Struct):
    upload_id: str
    status: str
    total_chunks: int
    chunks_received: int
    missing_chunks: list[int]


class UploadCompleted(msgspec.Struct):
    upload_id: str
    file_id: str | None
    sha256: str | None
    size: int | None
    status: str


class UploadAborted(msgspec.Struct):
    id: str
    status: str | None


class UploadStats(msgspec.Struct):
    total: int
    by_status: dict[str, int]
    active: int
    bytes_received: int
    bytes_completed: int
    bytes_pending: int
    last_activity_at: str | None
    recent: list[dict[str, Any]]
    average_progress: float | None


class File(msgspec.Struct):
    id: str
    name: str
    size: int
    content_type: str
    sha256: str
    bucket: str
    metadata: dict[str, str]
    # The version's stored HTTP headers by lower-case name, as an Object's `headers` ({} when
    # none, and for a file that is no object): single-file answers read them from the
    # file's stream, the listing from the read model (readmodel.files.headers).
    headers: dict[str, str]
    upload_id: str | None
    chunk_count: int
    created_at: str
    updated_at: str
    # An object's key in `bucket` (PUT /v1/buckets/{bucket}/objects/{key}); null otherwise.
    key: str | None = None
    # Only on GET /v1/files/{id}: content GETs answered 200/206 and the bytes they sent, as
    # last flushed by the API processes (CAIRN_DOWNLOAD_FLUSH_INTERVAL).
    downloads: int | msgspec.UnsetType = msgspec.UNSET
    bytes_sent: int | msgspec.UnsetType = msgspec.UNSET


class FilePage(msgspec.Struct):
    items: list[File]
    total: int
    limit: int
    offset: int


class UpdateFile(msgspec.Struct, forbid_unknown_fields=True):
    """Rename (a name, not a path), move to another of the owner's buckets (`default`: out
    of every bucket), or replace the user metadata (string values, at most 8 KiB in all).
    A field left out keeps its value. For an object (a file with a `key`), a new `key`
    and/or `bucket` renames or moves it S3-style: copy-then-delete (a new object, and so a
    new id, from the same stored chunks; then the old key is deleted), never over a taken
    key (409 `object_exists`), alone in its request (no `name` or `metadata` with it)."""

    name: Name | None = None
    bucket: Short | None = None
    key: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    metadata: dict[Short, Annotated[str, msgspec.Meta(max_length=8192)]] | None = None


class FileDeleted(msgspec.Struct):
    id: str
    deleted: bool


class Rebuilt(msgspec.Struct):
    projection: str
    events_applied: int
    # Events the projection cannot apply (a newer producer's schema, bad data): skipped,
    # logged and counted, as the live projector skips them.
    events_skipped: int


class CreateBucket(msgspec.Struct, forbid_unknown_fields=True):
    """Create a bucket. `name` follows S3's bucket name rules; `default` is reserved."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    public: bool = False
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class UpdateBucket(msgspec.Struct, forbid_unknown_fields=True):
    """Change a bucket's settings; a field left out keeps its value."""

    public: bool | None = None
    description: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class Usage(msgspec.Struct):
    objects: int
    bytes: int


class OwnerUsage(msgspec.Struct):
    buckets: int
    objects: int
    bytes: int


class Bucket(msgspec.Struct):
    name: str
    owner: str
    public: bool
    description: str
    created_at: str
    updated_at: str
    # Only on GET /v1/buckets/{name}: from the read models (bounded lag).
    usage: Usage | msgspec.UnsetType = msgspec.UNSET
    owner_usage: OwnerUsage | msgspec.UnsetType = msgspec.UNSET


class BucketPage(msgspec.Struct):
    items: list[Bucket]
    limit: int
    # Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None


class BucketDeleted(msgspec.Struct):
    name: str
    deleted: bool
    objects_deleted: int


class SignFileUrl(msgspec.Struct, forbid_unknown_fields=True):
    """Sign a URL for a file's content: `expires_in` seconds (at most
    CAIRN_SIGNED_URL_MAX_EXPIRY), for GET (which also answers HEAD) or HEAD only."""

    expires_in: Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]
    method: Literal["GET", "HEAD"] = "GET"


class SignObjectUrl(msgspec.Struct, forbid_unknown_fields=True):
    """Sign a URL for an object: GET (also answers HEAD), HEAD, or PUT (an anonymous upload
    of exactly this key, once, of at most `max_size` bytes)."""

    method: Literal["GET", "HEAD", "PUT"]
    expires_in: Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]
    max_size: Annotated[int, msgspec.Meta(ge=0, le=BIGINT_MAX)] | None = None


class SignedUrl(msgspec.Struct):
    url: str
    method: str
    expires_at: str
    max_size: int | None = None  # a signed PUT's largest body


# Bodies that refuse unknown fields (documented with additionalProperties: false).
STRICT_BODIES: tuple[type[msgspec.Struct], ...] = (
    CreateUpload,
    CreateBucket,
    UpdateBucket,
    UpdateFile,
    SignFileUrl,
    SignObjectUrl,
)


class Object(msgspec.Struct):
    """An object: a file with a key in its bucket (its `id` is a file id: /v1/files/{id})."""

    bucket: str
    key: str
    id: str
    size: int
    sha256: str
    etag: str  # the quoted sha256, as in the ETag header
    content_type: str
    metadata: dict[str, str]
    # Stored HTTP headers by lower-case name (cache-control, content-disposition,
    # content-encoding, content-language, expires): what GET and HEAD answer.
    headers: dict[str, str]
    last_modified: str  # when this version was written


class ObjectSummary(msgspec.Struct):
    key: str
    id: str
    size: int
    sha256: str
    etag: str
    content_type: str
    # Stored HTTP headers by lower-case name, as the Object's own `headers` ({} when none).
    headers: dict[str, str]
    last_modified: str


class ObjectPage(msgspec.Struct):
    """A ListObjectsV2 page: objects and common prefixes in key order, `key_count` of them
    together; `next_cursor` (when `is_truncated`) continues after the last one."""

    bucket: str
    prefix: str
    delimiter: str | None
    limit: int
    items: list[ObjectSummary]
    common_prefixes: list[str]
    key_count: int
    is_truncated: bool
    next_cursor: str | None
    start_after: str | None = None


def ok(status: int, shape: type[msgspec.Struct], description: str) -> dict[int, ResponseSpec]:
    """A route's documented success response (the handler answers a dict of this shape)."""
    return {
        status: ResponseSpec(data_container=shape, description=description, generate_examples=False)
    }


class CreateTask(msgspec.Struct, forbid_unknown_fields=True):
    """Start a background task: `type` is copy, move, delete, compress or extract; `params`
    depend on the type (see README, Tasks)."""

    type: Annotated[str, msgspec.Meta(max_length=64)]
    params: dict[str, Any]
    priority: Annotated[int, msgspec.Meta(ge=0, le=100)] = 50


class TaskAccepted(msgspec.Struct):
    id: str
    status: str


class TaskProgress(msgspec.Struct):
    items_done: int
    items_total: int
    items_failed: int
    bytes_done: int
    bytes_total: int
    percent: float


class Task(msgspec.Struct):
    id: str
    type: str
    status: str
    priority: int
    params: dict[str, Any]
    progress: TaskProgress
    result_file_ids: list[str]
    error: dict[str, Any] | None
    attempts: int
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    results: list[dict[str, Any]] | None = None


class TaskPage(msgspec.Struct):
    items: list[Task]
    total: int
    limit: int
    offset: int


class TaskStatsRecent(msgspec.Struct):
    created_last_24h: int
    finished_last_24h: int
    last_activity_at: str | None


class TaskStats(msgspec.Struct):
    """The caller's tasks counted (every status and type present), and what they did."""

    total: int
    by_status: dict[str, int]
    by_type: dict[str, dict[str, int]]
    bytes_processed: int
    items_processed: int
    recent: TaskStatsRecent


class FetchAccepted(msgspec.Struct):
    """A fetch started, or the one that already serves this request (`reused`)."""

    id: str
    status: str | None
    url: str
    file_id: str | None
    reused: bool


class FetchSegment(msgspec.Struct):
    """One byte range [start, end) of a segmented fetch, and the bytes it holds."""

    start: int
    end: int
    bytes: int


class Fetch(msgspec.Struct):
    """A fetch as the event store has it: progress, speed and ETA while it runs (null when
    unknown), what the origin said (etag, last_modified, content_type, content_encoding),
    and `file_id` once it completed."""

    id: str
    url: str
    status: Literal["PENDING", "IN_PROGRESS", "PAUSED", "COMPLETED", "FAILED", "CANCELLED"]
    bytes: int
    total: int | None
    progress: float | None
    speed_bytes_per_second: float | None
    eta_seconds: float | None
    attempts: int
    last_error: str | None
    etag: str | None
    last_modified: str | None
    content_type: str | None
    content_encoding: str | None
    file_name: str | None
    bucket: str
    key: str | None
    sha256: str | None
    file_id: str | None
    segments: list[FetchSegment]
    created_at: str
    updated_at: str


class FetchSummary(msgspec.Struct):
    """A fetch as the read model lists it (it may trail the event store by moments)."""

    id: str
    url: str
    status: str
    bytes: int
    total: int | None
    progress: float | None
    attempts: int
    last_error: str | None
    etag: str | None
    last_modified: str | None
    content_type: str | None
    file_name: str | None
    bucket: str | None
    key: str | None
    sha256: str | None
    file_id: str | None
    created_at: str
    updated_at: str
    completed_at: str | None


class FetchPage(msgspec.Struct):
    items: list[FetchSummary]
    total: int
    limit: int
    offset: int


class ReadinessReport(msgspec.Struct):
    """`ready` (200) or `unavailable` (503, with Retry-After, in this same shape), and each
    check's outcome: `ok` or what failed."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


class CleanupDone(msgspec.Struct):
    """What one cleanup run did: uploads expired, blobs and bytes freed, keys forgotten,
    files deleted that were left live in a bucket that is gone."""

    expired: int
    blobs_deleted: int
    bytes_freed: int
    idempotency_keys_deleted: int
    orphans_deleted: int
