"""Strict validation of a task's `params`, one shape per task type.

Each type's params are decoded with msgspec into a Struct that forbids unknown fields, so
a bad request is a 400 naming the field (`params.files[2]`, `params.output.file_name`)
before anything is sent. File ids are checked against what the caller may read (404 for
anyone else's, exactly like a missing one); `bucket` + `prefix` are resolved here, once,
to the files they name, so the task works on a fixed list.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from api.context import AppContext, now
from api.errors import ApiError, api_error
from domain.buckets import BucketState
from domain.buckets.names import bucket_not_found, is_bucket_name
from domain.files import FileState
from domain.registry import AGGREGATES
from domain.values import file_name_problem, has_control_characters
from projections import task_queries

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Prefix = Annotated[str, msgspec.Meta(max_length=1024)]
NAME_PREFIX_MAX = 255  # a prefix of file names (a key prefix may be a Prefix, 1024)


class Destination(msgspec.Struct, forbid_unknown_fields=True):
    """Plain files are named prefix + name (no `/` in the prefix); objects copied into a
    bucket are keyed prefix + relative key (a key prefix may hold `/`: checked in
    `prepare`, once the sources are known)."""

    bucket: Short
    prefix: Prefix = ""


class CopyParams(msgspec.Struct, forbid_unknown_fields=True):
    """copy / move: `files` (ids) or `bucket` + `prefix`, to `to.bucket` (+ `to.prefix`).
    `overwrite`: replace a live file of the same name in the destination (see fileops)."""

    to: Destination
    files: list[str] | None = None
    bucket: Short | None = None
    prefix: Prefix | None = None
    overwrite: bool = False


class DeleteParams(msgspec.Struct, forbid_unknown_fields=True):
    """`files`, or `bucket` + `prefix`, or `older_than` (alone: every bucket; with
    `bucket` (+ `prefix`): those files), a duration or an RFC 3339 timestamp."""

    files: list[str] | None = None
    bucket: Short | None = None
    prefix: Prefix | None = None
    older_than: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class ArchiveOutput(msgspec.Struct, forbid_unknown_fields=True):
    file_name: Name
    bucket: Short = "default"


class CompressParams(msgspec.Struct, forbid_unknown_fields=True):
    output: ArchiveOutput
    files: list[str] | None = None
    bucket: Short | None = None
    prefix: Prefix | None = None
    format: Literal["zip", "tar.gz"] = "zip"
    level: Annotated[int, msgspec.Meta(ge=0, le=9)] | None = None


class ExtractOutput(msgspec.Struct, forbid_unknown_fields=True):
    """Into `default`: files named prefix + member base name (no `/` in the prefix); into a
    bucket: objects keyed prefix + member path (a key prefix may hold `/`)."""

    bucket: Short = "default"
    prefix: Prefix = ""


class ExtractParams(msgspec.Struct, forbid_unknown_fields=True):
    file: str
    output: ExtractOutput = msgspec.field(default_factory=ExtractOutput)
    format: Literal["zip", "tar", "tar.gz"] | None = None
    overwrite: bool = False


SHAPES: dict[str, type[msgspec.Struct]] = {
    "copy": CopyParams,
    "move": CopyParams,
    "delete": DeleteParams,
    "compress": CompressParams,
    "extract": ExtractParams,
}

_PATH = re.compile(r"at `\$(.*)`")
FILES_PER_READ = 1000  # the files a task names, read from the event store per query


def _bad(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_params", message, {"field": field})


def decode(task_type: str, params: Any) -> msgspec.Struct:
    shape = SHAPES.get(task_type)
    if shape is None:
        raise ApiError(
            400,
            "invalid_task_type",
            f"unknown task type {str(task_type)[:64]!r}",
            {"field": "type", "allowed": sorted(SHAPES)},
        )
    try:
        p = msgspec.convert(params, shape)
    except msgspec.ValidationError as e:
        text = str(e)
        m = _PATH.search(text)
        field = "params" + (m.group(1) if m else "")
        missing = re.search(r"missing required field `([^`]+)`", text)
        if missing:
            field = f"{field}.{missing.group(1)}"
        unknown = re.search(r"unknown field `([^`]+)`", text)
        if unknown:
            field = f"{field}.{unknown.group(1)}"
        raise _bad(field, f"invalid params: {text}") from None
    if isinstance(p, CopyParams) and p.to.bucket == "default" and _is_key_prefix(p):
        raise _bad("params.to.prefix", f"invalid params: {_KEY_PREFIX_ONLY}")
    if isinstance(p, CopyParams) and not _is_key_prefix(p) and len(p.to.prefix) > NAME_PREFIX_MAX:
        raise _bad(
            "params.to.prefix",
            f"invalid params: a prefix of file names is at most {NAME_PREFIX_MAX} characters",
        )
    return p


async def check_bucket(c: AppContext, name: str, owner: str, admin: bool) -> None:
    """A bucket the task reads or writes: `default`, or a live bucket of the caller's
    (another user's answers 404, exactly like a missing one)."""
    if name == "default":
        return
    st: BucketState | None = None
    if is_bucket_name(name):
        st = await c.load("buckets", f"bucket-{name}")
    if st is None or st.deleted or (st.owner != owner and not admin):
        raise api_error(bucket_not_found(name))


async def _owned_file(c: AppContext, raw: str, owner: str, admin: bool) -> FileState:
    try:
        file_id = str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(404, "file_not_found", "no such file", {"id": raw[:64]}) from None
    st: FileState | None = await c.load("files", f"file-{file_id}")
    if st is None or st.deleted or (st.owner != owner and not admin):
        raise ApiError(404, "file_not_found", "no such file", {"id": file_id})
    return st


async def _owned_files(c: AppContext, raws: list[str], owner: str, admin: bool) -> list[FileState]:
    """`_owned_file` of each (the first one that is not, in order, is the 404), read in
    one query and not kept in the state cache: a task may name 80,000 files, which were
    80,000 queries before its 202 (and pushed every other state out of the cache)."""
    ids: list[str | None] = []
    for raw in raws:
        try:
            ids.append(str(uuid.UUID(raw)))
        except ValueError:
            ids.append(None)
    spec = AGGREGATES["files"]
    streams = await c.store.read_streams([spec.stream_id(i) for i in ids if i is not None])
    out = []
    for raw, file_id in zip(raws, ids, strict=True):
        if file_id is None:
            raise ApiError(404, "file_not_found", "no such file", {"id": raw[:64]})
        st: FileState | None = spec.fold(streams.get(spec.stream_id(file_id), []))
        if st is None or st.deleted or (st.owner != owner and not admin):
            raise ApiError(404, "file_not_found", "no such file", {"id": file_id})
        out.append(st)
    return out


async def resolve_files(
    c: AppContext, p: Any, owner: str, admin: bool, cutoff: datetime | None = None
) -> list[tuple[str, int]]:
    """(id, size) of the files a copy/move/delete/compress names, checked and de-duplicated;
    `cutoff` (delete's older_than): only files created before it, in any bucket unless
    `bucket` is given."""
    limit = c.settings.task_max_items
    if p.files is not None:
        if p.bucket is not None or p.prefix is not None:
            raise _bad("params.files", "give either files or bucket + prefix, not both")
        if not p.files:
            raise _bad("params.files", "the file list is empty")
        if len(p.files) > limit:
            raise _too_many(len(p.files), limit)
        out: list[tuple[str, int]] = []
        seen: set[str] = set()
        for first in range(0, len(p.files), FILES_PER_READ):
            for st in await _owned_files(c, p.files[first : first + FILES_PER_READ], owner, admin):
                if st.id not in seen:
                    seen.add(st.id)
                    out.append((st.id, st.size))
        return out
    if p.bucket is None and (cutoff is None or p.prefix is not None):
        raise _bad("params.files", "give files (a list of ids) or bucket + prefix")
    if p.bucket is not None:
        await check_bucket(c, p.bucket, owner, admin)
    found = await task_queries.files_by_prefix(
        c.pool, owner, p.bucket, p.prefix or "", limit + 1, created_before=cutoff
    )
    if not found:
        field = "params.older_than" if cutoff is not None else "params.prefix"
        raise _bad(field, "no files match the filter")
    if len(found) > limit:
        raise _too_many(len(found), limit)
    return found


_DURATION = re.compile(r"^(\d{1,9})\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_older_than(text: str, at: datetime) -> datetime:
    """The cutoff `older_than` names: files created before it are deleted. A duration
    before `at` (`30d`, `12h`, `15m`, `90s`, `2w`, or ISO 8601 such as `P7DT12H`) or an
    RFC 3339 timestamp with a time zone (`2026-01-01T00:00:00Z`), not in the future."""
    raw = text.strip()
    m = _DURATION.match(raw.lower())
    delta: timedelta | None = None
    if m:
        try:
            delta = timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])
        except OverflowError:
            raise _bad("params.older_than", "older_than is too long a duration") from None
    elif raw[:1] in ("P", "p"):
        try:
            delta = msgspec.convert(raw.upper(), timedelta)
        except msgspec.ValidationError:
            raise _bad("params.older_than", f"not an ISO 8601 duration: {raw[:64]!r}") from None
    if delta is not None:
        if delta <= timedelta(0):
            raise _bad("params.older_than", "older_than must be a positive duration")
        try:
            return at - delta
        except OverflowError:
            raise _bad("params.older_than", "older_than is too long a duration") from None
    try:
        stamp = msgspec.convert(raw, datetime)
    except msgspec.ValidationError:
        raise _bad(
            "params.older_than",
            "older_than is a duration (30d, 12h, P7D) or an RFC 3339 timestamp",
        ) from None
    if stamp.tzinfo is None:
        raise _bad("params.older_than", "an older_than timestamp needs a time zone (Z or +hh:mm)")
    if stamp > at:
        raise _bad("params.older_than", "an older_than timestamp is in the future")
    try:
        # In UTC, as the query carries it: early on 0001-01-01 east of UTC is in year 0,
        # which no datetime holds (the query's OverflowError was a 500).
        return stamp.astimezone(UTC)
    except OverflowError:
        raise _bad("params.older_than", "an older_than timestamp is before year 1 in UTC") from None


def _too_many(n: int, limit: int) -> ApiError:
    return ApiError(
        400,
        "too_many_items",
        f"a task may name at most {limit} items",
        {"field": "params.files", "max_items": limit, "items": n},
    )


_KEY_PREFIX_ONLY = (
    "a prefix with '/' or '\\' is a key prefix: copies of objects into a bucket only"
    " (plain files are named prefix + name, with no '/' or '\\')"
)


def _is_key_prefix(p: CopyParams) -> bool:
    return "/" in p.to.prefix or "\\" in p.to.prefix


async def _check_key_prefix(c: AppContext, p: CopyParams, owner: str, ids: list[str]) -> None:
    """A `to.prefix` holding `/` or `\\` is a key prefix (`decode` refused it into
    `default`): every source must be an object (a plain file's copy is named prefix +
    name, and a name is not a path; handlers/tasks/object_copies.py)."""
    keys, _ = await task_queries.file_keys(c.pool, owner, ids)
    if any(f not in keys for f in ids):
        raise _bad("params.to.prefix", _KEY_PREFIX_ONLY)


async def prepare(
    c: AppContext, task_type: str, raw: Any, owner: str, admin: bool
) -> tuple[dict[str, Any], int, int]:
    """(normalised params, items_total, bytes_total) for a new task; raises ApiError."""
    # A task runs as its owner: the worker reads only the owner's files and writes as the
    # owner (handlers/tasks/fileops.py). An admin's task naming another user's file was
    # accepted and then failed when run, so an admin's task, like anyone's, names the
    # caller's own files and buckets (anyone else's: 404).
    admin = False
    if not isinstance(raw, dict):
        raise _bad("params", "params must be an object")
    p = decode(task_type, raw)
    if isinstance(p, CopyParams):
        await check_bucket(c, p.to.bucket, owner, admin)
    if isinstance(p, (CompressParams, ExtractParams)):
        await check_bucket(c, p.output.bucket, owner, admin)
    if isinstance(p, CompressParams) and (
        problem := file_name_problem(p.output.file_name, "output.file_name")
    ):
        # The archive is a file: its name follows the upload API's rules (a name, not a
        # path, no control characters).
        raise _bad("params.output.file_name", problem)
    where = "to" if isinstance(p, CopyParams) else "output"
    prefix = getattr(getattr(p, where, None), "prefix", "") or ""
    if has_control_characters(prefix):
        # Prefixed onto names (or keys): no control characters, as in names.
        raise _bad(f"params.{where}.prefix", "a prefix must not contain control characters")
    if isinstance(p, ExtractParams):
        if p.output.bucket == "default" and ("/" in p.output.prefix or "\\" in p.output.prefix):
            raise _bad(
                "params.output.prefix",
                "files are named prefix + name: no '/' or '\\' (into a bucket, members"
                " become objects and the prefix may hold '/')",
            )
        st = await _owned_file(c, p.file, owner, admin)
        params = msgspec.to_builtins(p)
        params["file"] = st.id
        return params, 0, st.size
    cutoff: datetime | None = None
    if isinstance(p, DeleteParams) and p.older_than is not None:
        if p.files is not None:
            raise _bad("params.older_than", "older_than filters bucket + prefix, not a files list")
        cutoff = parse_older_than(p.older_than, now())
    files = await resolve_files(c, p, owner, admin, cutoff)
    if isinstance(p, CopyParams) and _is_key_prefix(p):
        await _check_key_prefix(c, p, owner, [f for f, _ in files])
    params = msgspec.to_builtins(p)
    if cutoff is not None:
        params["cutoff"] = cutoff.isoformat()  # what older_than meant when the task was made
    params["files"] = [f for f, _ in files]
    params.pop("bucket", None)
    params.pop("prefix", None)
    if isinstance(p, (CopyParams,)) and p.bucket is not None:
        params["source"] = {"bucket": p.bucket, "prefix": p.prefix or ""}
    # What a compress reads, or a copy / move copies (each item counts its file's size
    # when done, handlers/tasks/fileops.py); a delete counts no bytes.
    total_bytes = (
        sum(size for _, size in files) if isinstance(p, (CompressParams, CopyParams)) else 0
    )
    return params, len(files), total_bytes
