"""`cairn download`: a file's bytes to disk, resumable, sha256-verified.

Bytes go to `<dest>.part`, next to a small `<dest>.part.json` naming the file, the server
and its ETag (the content's sha256). A later run asks for the rest with `Range: bytes=N-`
and `If-Range: <etag>` only when the part.json names this very file and version and the
part is no longer than the file: a 206 that is exactly that rest continues the part; a 200
means the content changed (or the server ignores ranges), so the part is truncated and the
download restarts cleanly; any other 206, or a 416, leaves no bytes appended. Both files
are opened without following symbolic links (a folder others may write to), the part must
be this user's. The finished part is hashed (the prefix already on disk, then each piece
as it arrives) and renamed over the destination only when it matches the file's sha256.

`-o -` (stdout) and a destination that is not a regular file (/dev/null, a FIFO) have no
part to resume: the bytes go straight there, hashed as they pass (download_to).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
from rich.progress import TaskID

from bus.blobs.writeback import start_writeback
from bus.client.config import Target
from bus.client.errors import NOT_FOUND, VERIFY, ClientError, Interrupted
from bus.client.http import BAD_JSON, Kind, bad_shape, check, json_of, shaped
from bus.client.objects import UUID_RE, file_or_object, find_object
from bus.client.transfer import PIECE, Transfer, progress_bars
from bus.terminal import printable


def resolve_file(client: httpx.Client, ref: str) -> dict[str, Any]:
    """A file id, or BUCKET/KEY: the object with that key (an object is a file: its id is
    a file id, downloaded like any file), else a file uploaded with that --key as
    metadata, else one of that name."""
    named = file_or_object(ref)
    if isinstance(named, str):
        return _file(client, named)
    bucket, key = named
    try:
        found = find_object(client, bucket, key)
    except ClientError as e:
        if e.status != 404:
            raise
        found = None  # no such bucket (or a server without objects): the files' way below
    if found is not None:
        return _file(client, found["id"])
    name = key.rsplit("/", 1)[-1]
    r = client.get("/v1/files", params={"bucket": bucket, "prefix": name, "limit": 1000})
    page = json_of(r, items=list)
    matches = [f for f in page["items"] if f.get("metadata", {}).get("key") == key] or [
        f for f in page["items"] if f["name"] == key
    ]
    if not matches:
        raise ClientError(
            f"no object {key!r} in bucket {bucket!r}", code="not_found", exit_code=NOT_FOUND
        )
    # The newest: the list is sorted by created_at, newest first.
    return _checked(dict(shaped(matches[0], str(r.request.url), **FILE_FIELDS)), str(r.request.url))


# What a download reads of a file's metadata.
FILE_FIELDS: dict[str, Kind] = {"id": str, "name": str, "size": int, "sha256": str}


def _file(client: httpx.Client, file_id: Any) -> dict[str, Any]:
    r = client.get(f"/v1/files/{file_id}")
    return _checked(dict(json_of(r, **FILE_FIELDS)), str(r.request.url))


def _checked(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """A file's metadata as a download trusts it: an id that is one, a size a file can have (not negative,
    not beyond what a file system holds) and a sha256 that is one; else what the bytes
    are checked against is not known (bad_response, before any is asked for)."""
    if not UUID_RE.match(meta["id"]):  # a path segment of the content's URL
        raise bad_shape(where, f"a file id of {meta['id'][:80]!r}")
    if not 0 <= meta["size"] < 1 << 63:
        raise bad_shape(where, f"a file size of {meta['size']}")
    if not re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]):
        raise bad_shape(where, f"a sha256 of {meta['sha256'][:80]!r}")
    return meta


def destination(meta: dict[str, Any], output: str | None, *, overwrite: bool = False) -> Path:
    """Where the bytes go, checked before any is asked for: a transfer that could only
    fail at the final rename (the name taken by a directory, a missing folder) would
    leave the whole download behind as a `.part`.

    `-o DIR` (or a path ending in `/`, created if missing, as `aws s3 cp` and `mc cp` do)
    means DIR/<the file's name>. That name is the server's (or another user's, an object's
    key): as `curl -J` does, it never replaces what is there already (a file, a link,
    dangling or not) unless `overwrite`; a path -o names is the user's own choice."""
    named_by_server = True
    if output is None:
        path = Path(local_name(meta))
    else:
        path = Path(output)
        if output.endswith(("/", os.sep)):
            path.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            path = path / local_name(meta)
        else:
            named_by_server = False
    if path.is_dir():
        raise ClientError(
            f"{path}: is a directory; name the file to write with -o PATH",
            code="is_a_directory",
        )
    if not path.parent.is_dir():
        raise ClientError(f"{path.parent}: no such directory", code="no_such_directory")
    if named_by_server and not overwrite and os.path.lexists(path):
        raise ClientError(
            f"{path}: exists; --overwrite replaces it, or -o PATH names another file",
            code="file_exists",
        )
    return path


def local_name(meta: dict[str, Any]) -> str:
    """The file's name as the name of a file in one folder. It is the server's word (or
    another user's: an object's name is its key's last segment, `..` included), so, as
    curl -J and wget --content-disposition do, only what follows its last `/` or `\\` is
    kept (`../../.bashrc` must not write outside the folder) and control characters are
    escaped; a name that is then empty, `.` or `..` names no file: -o must."""
    name = printable(re.split(r"[/\\]", str(meta.get("name") or ""))[-1])
    if not name.strip("."):
        raise ClientError(
            f"the file's name {str(meta.get('name'))!r} cannot name a file here;"
            " name the file to write with -o PATH",
            code="invalid_name",
        )
    return name


def is_special(path: Path) -> bool:
    """An existing destination that is not a regular file (/dev/null, /dev/stdout, a FIFO):
    written in place, since a `.part` renamed over it would replace the device or pipe
    with a regular file (and a pipe cannot be resumed into anyway)."""
    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return False


def download_to(
    client: httpx.Client,
    meta: dict[str, Any],
    f: IO[bytes],
    label: str,
    *,
    limit_rate: int | None,
    console: Any,
) -> dict[str, Any]:
    """The whole file written to an open stream (stdout for `-o -`, a device or a FIFO),
    hashed as it goes and checked against the ETag at the end: no part, no resume, and
    on a mismatch the bytes are already out, so the exit code (6) is what says so."""
    with progress_bars(console) as progress:
        transfer = Transfer(progress, int(meta["size"]), limit_rate)
        task = transfer.add(meta["name"], total=int(meta["size"]))
        h = hashlib.sha256()
        try:
            with _content(client, meta, {}) as (r, etag):
                check(r)
                _receive(r, f, 0, h, transfer, task, int(meta["size"]))
                f.flush()
        except KeyboardInterrupt:
            raise Interrupted() from None
    expected = etag.strip('"') or meta["sha256"]
    if h.hexdigest() != expected:
        raise ClientError(
            f"{label}: sha256 {h.hexdigest()} of the bytes written is not the server's {expected}",
            code="sha256_mismatch",
            exit_code=VERIFY,
        )
    return {
        "file_id": meta["id"],
        "path": label,
        "size": int(meta["size"]),
        "sha256": expected,
        "resumed_from": 0,
    }


def download(
    client: httpx.Client,
    target: Target,
    meta: dict[str, Any],
    dest: Path,
    *,
    limit_rate: int | None,
    console: Any,
) -> dict[str, Any]:
    """`dest` through `<dest>.part`, resumed when `<dest>.part.json` says the part holds
    a prefix of this very file (its id, this server, its ETag) and is no longer than it.

    Both are opened without following a symbolic link (O_NOFOLLOW; a new part with
    O_EXCL) and the part must be a regular file of this user with one link: in a folder
    others may write to, a planted `f.bin.part -> ~/.bashrc` had the download written
    over the victim's file. What the part.json says only decides whether to ask for the
    rest: the bytes are checked against the file's own sha256 (its metadata's), never
    against an ETag read from disk."""
    part = dest.with_name(dest.name + ".part")
    sidecar = dest.with_name(dest.name + ".part.json")
    size = int(meta["size"])
    validator = f'"{meta["sha256"]}"'
    saved = _load(sidecar)
    f = _open_part(part)
    try:
        held = os.fstat(f.fileno()).st_size
        offset = 0
        if (
            saved.get("file_id") == meta["id"]
            and saved.get("url") == target.url
            and saved.get("etag") == validator
            and 0 < held <= size
        ):
            offset = held
        result = _fill(client, target, meta, f, part, sidecar, offset, limit_rate, console)
        got, resumed_from = result
        if got != meta["sha256"] or os.fstat(f.fileno()).st_size != size:
            part.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            raise ClientError(
                f"{dest}: sha256 {got} is not the server's {meta['sha256']};"
                " the partial file was removed",
                code="sha256_mismatch",
                exit_code=VERIFY,
            )
        _still_ours(part, f)
    finally:
        f.close()
    os.replace(part, dest)
    sidecar.unlink(missing_ok=True)
    return {
        "file_id": meta["id"],
        "path": os.fspath(dest),
        "size": size,
        "sha256": got,
        "resumed_from": resumed_from,
    }


def _fill(
    client: httpx.Client,
    target: Target,
    meta: dict[str, Any],
    f: IO[bytes],
    part: Path,
    sidecar: Path,
    offset: int,
    limit_rate: int | None,
    console: Any,
) -> tuple[str, int]:
    """The part completed from `offset` (0: from scratch): its sha256, and where the
    bytes asked for began."""
    size = int(meta["size"])
    validator = f'"{meta["sha256"]}"'
    if offset == size:  # all there already (cut off before the rename): no request
        h = _hash_prefix(f, offset)
        if h.hexdigest() == meta["sha256"]:
            return h.hexdigest(), offset
        offset = 0
    headers: dict[str, str] = {}
    if offset:
        headers = {"Range": f"bytes={offset}-", "If-Range": validator}
    with progress_bars(console) as progress:
        transfer = Transfer(progress, size, limit_rate)
        task = transfer.add(meta["name"], total=size)
        try:
            with _content(client, meta, headers) as (r, etag):
                if r.status_code == 416 and offset:
                    # The rest of a file of `size` bytes from `offset` < size cannot be
                    # unsatisfiable: the file is not the one the part was of.
                    part.unlink(missing_ok=True)
                    sidecar.unlink(missing_ok=True)
                    raise ClientError(
                        f"{r.request.url} answered 416 to bytes={offset}- of a file of"
                        f" {size} bytes; the partial file was removed: run again",
                        code="bad_response",
                        status=416,
                    )
                check(r)
                if r.status_code == 206:
                    _check_rest(r, etag, offset, size, validator)
                    resumed_from = offset
                else:  # 200: a changed file (If-Range failed) or no resume: start over
                    offset = resumed_from = 0
                h = _hash_prefix(f, offset)
                f.truncate(offset)
                _save(sidecar, {"file_id": meta["id"], "url": target.url, "etag": validator})
                transfer.progress.update(task, completed=offset)
                transfer.skip(offset)
                try:
                    _receive(r, f, offset, h, transfer, task, size)
                finally:
                    f.flush()
                    os.fsync(f.fileno())
        except KeyboardInterrupt:
            raise Interrupted() from None
    return h.hexdigest(), resumed_from


def _check_rest(r: httpx.Response, etag: str, offset: int, size: int, validator: str) -> None:
    """A 206 is appended only if it is the rest asked for (`bytes offset-(size-1)/size`)
    of the same version (the If-Range validator): else it is another range, or a server
    ignoring If-Range, and the part is left as it was."""
    want = f"bytes {offset}-{size - 1}/{size}"
    got = r.headers.get("Content-Range", "")
    if not offset or got != want or etag != validator:
        raise ClientError(
            f"{r.request.url} answered 206 with Content-Range {got or 'none'!r} and ETag"
            f" {etag or 'none'!r} to bytes={offset}- of {validator}: not the rest asked"
            " for; nothing was written",
            code="bad_response",
            status=206,
        )


@contextmanager
def _content(
    client: httpx.Client, meta: dict[str, Any], headers: dict[str, str]
) -> Iterator[tuple[httpx.Response, str]]:
    """The answer to GET content, and the ETag its bytes are checked against.

    With CAIRN_S3_REDIRECT a full GET is answered 307 to a presigned S3 URL (api/http/
    presigned.py); not followed, its empty body failed as a sha256 mismatch. It is followed
    once, without the token (the URL is its own credential, S3 refuses a second one, and
    a token is for Cairn only), and checked against Cairn's sha256: S3's ETag is an MD5."""
    path = f"/v1/files/{meta['id']}/content"
    with client.stream("GET", path, headers=headers) as r:
        if r.status_code != 307 or "Location" not in r.headers:
            yield r, r.headers.get("ETag", "")
            return
        hop = client.build_request("GET", r.url.join(r.headers["Location"]))
        hop.headers.pop("Authorization", None)
    s3 = client.send(hop, stream=True)
    try:
        yield s3, f'"{meta["sha256"]}"'
    finally:
        s3.close()


def _receive(
    body: httpx.Response,
    f: IO[Any],
    at: int,
    h: Any,
    transfer: Transfer,
    task: TaskID,
    end: int | None = None,
) -> None:
    """Write and hash `body` in batches of about PIECE bytes while the next batch is read.

    One thread doing all three in turn made a 1 GiB download wait for the sum of the read,
    the write and the sha256; the write and the hash release the GIL, so each runs in a
    lane of its own beside the read and the download waits for the slowest of the three.
    The body is read as it arrives (httpx's `iter_bytes(n)` joins the network's pieces
    into n-byte ones, a copy that halved the read rate here) and a batch is the list of
    those pieces, never joined. Each lane takes its batches in order (the file offset, the
    hash state): batch N+1 goes to a lane only once that lane finished batch N, so at most
    two batches are in memory. Leaving the pool waits for the lanes, so the caller's flush
    and fsync come after every write handed over, even on an error or a Ctrl-C. `f` is
    written from `at` on, never past `end` (the file's size): a body without a length that
    goes on (a broken or hostile server) is not read further, instead of filling the disk."""
    with ThreadPoolExecutor(2, thread_name_prefix="cairn-download") as lanes:
        pending: list[Future[Any]] = []
        for batch, size in _batches(body.iter_bytes(), transfer):
            if end is not None and at + size > end:
                break  # not written: the sha256 (or size) check then fails, as it must
            for lane in pending:
                lane.result()  # raises a failed write (disk full) here
            pending = [lanes.submit(_write, f, batch, at, size), lanes.submit(_hash, h, batch)]
            at += size
            transfer.advance(task, size)
        for lane in pending:
            lane.result()


def _batches(pieces: Iterator[bytes], transfer: Transfer) -> Iterator[tuple[list[bytes], int]]:
    """The pieces gathered into lists of at least PIECE bytes (the last one may be less),
    each with its size; Ctrl-C is checked at every piece."""
    batch: list[bytes] = []
    size = 0
    for piece in pieces:
        transfer.check()
        batch.append(piece)
        size += len(piece)
        if size >= PIECE:
            yield batch, size
            batch, size = [], 0
    if batch:
        yield batch, size


def _write(f: IO[Any], batch: list[bytes], at: int, size: int) -> None:
    """Write a batch and start its writeback at once (bus/blobs/writeback.py), so that the
    fsync at the end finds little still dirty instead of the whole file."""
    f.writelines(batch)
    f.flush()
    start_writeback(f.fileno(), at, size)


def _hash(h: Any, batch: list[bytes]) -> None:
    for piece in batch:
        h.update(piece)


def _unsafe(path: Path, why: str) -> ClientError:
    return ClientError(
        f"{path}: {why}; not used: remove it, or download with another -o",
        code="unsafe_part",
    )


def _open_nofollow(path: Path, flags: int, mode: int = 0o666) -> int:
    """os.open without following a symbolic link at `path` (ELOOP, or EEXIST with
    O_EXCL on a dangling one): an `unsafe_part` error naming it. O_NONBLOCK: a FIFO put
    there is opened at once (then refused as no regular file), never waited on for a
    writer; a regular file ignores it."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or (e.errno == errno.EEXIST and path.is_symlink()):
            raise _unsafe(path, "is a symbolic link") from None
        raise


def _owned(path: Path, fd: int) -> os.stat_result:
    """The open file's stat, if it is a regular file of this user with one link: another
    user's file (even one writable by all) may change under the download, and a second
    link makes it someone else's file too."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _unsafe(path, "is not a regular file")
    if st.st_uid != os.geteuid():
        raise _unsafe(path, f"is owned by uid {st.st_uid}, not this user")
    if st.st_nlink != 1:
        raise _unsafe(path, f"has {st.st_nlink} links")
    return st


def _open_part(part: Path) -> IO[bytes]:
    """The part, open for reading and writing: this user's existing one, else a new one
    (O_EXCL: never a file someone put there meanwhile)."""
    try:
        fd = _open_nofollow(part, os.O_RDWR)
    except FileNotFoundError:
        fd = _open_nofollow(part, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    try:
        _owned(part, fd)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "r+b")


def _still_ours(part: Path, f: IO[bytes]) -> None:
    """The part's name still names the file written and verified (not swapped since)."""
    held = os.fstat(f.fileno())
    try:
        now = part.lstat()
    except FileNotFoundError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
        raise _unsafe(part, "was replaced during the download")


def _hash_prefix(f: IO[bytes], n: int) -> Any:
    """sha256 of the first `n` bytes of `f`, read from the open part (not its name
    again), `f` then positioned at `n`."""
    h = hashlib.sha256()
    f.seek(0)
    left = n
    while left > 0:
        data = f.read(min(PIECE, left))
        if not data:
            break
        h.update(data)
        left -= len(data)
    f.seek(n)
    return h


def _load(path: Path) -> dict[str, Any]:
    """The part.json, if it is this user's regular file: anything else is no resume."""
    try:
        fd = _open_nofollow(path, os.O_RDONLY)
    except OSError:
        return {}
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                return {}
            data = json.loads(f.read(1 << 16))
    except (OSError, *BAD_JSON):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict[str, Any]) -> None:
    """A new part.json (the old one unlinked, the new one created O_EXCL, never through
    a link); one that cannot be replaced (another user's, in a sticky folder) is said."""
    try:
        path.unlink(missing_ok=True)
        fd = _open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except PermissionError:
        raise _unsafe(path, "belongs to another user") from None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data))
