"""`cairn upload`: files and directories through the native chunked API, resumable (or,
with `--tus`, through the tus protocol: tus.py).

Each file is hashed first (sha256, sent on create: the server verifies the whole file on
complete, and a file the user already has is answered at once without sending a byte),
then its chunks are PUT, streamed from disk, `--streams` of them at once (each from its own
file handle), so one file's chunks overlap the server's per-chunk work (storing, then a
command round trip) instead of waiting for it one after the other; `--parallel` files go
at once. The upload id and the Idempotency-Keys are kept in the resume state (resume.py), so
after Ctrl-C, a lost connection or a crash the same command asks the server which chunks
are still missing and sends only those.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import jwt

from bus.client.config import Target
from bus.client.errors import USAGE, VERIFY, ClientError, Interrupted
from bus.client.http import (
    NONE,
    SHAPE_ERRORS,
    bad_shape,
    check,
    error_from,
    json_of,
    open_client,
    retry_after,
    shaped,
    unexpected,
    unreachable,
)
from bus.client.resume import UUID, ResumeState, state_key
from bus.client.transfer import Transfer, progress_bars, read_pieces, sha256_file
from bus.terminal import printable

ACTIVE = ("INITIATED", "IN_PROGRESS")
MAX_RETRIES = 20  # 429s and 503s (see RETRIED), and chunks_missing rounds
# A chunk PUT answered with one of these is sent again after the answer's Retry-After: 429,
# the server's in-flight limits; 503, a state that passes (the blob store or the bus
# unavailable for a moment, an API process draining before a restart). A chunk PUT is
# idempotent: the same bytes again are a 200.
RETRIED = (429, 503)


@dataclass(frozen=True)
class Job:
    path: Path
    size: int
    mtime_ns: int
    name: str
    key: str | None
    # `--meta NAME=VALUE`: the user metadata the file or object is created with.
    metadata: tuple[tuple[str, str], ...] = ()
    # `--header 'NAME: VALUE'`: the object's stored headers, by lower-case name.
    headers: tuple[tuple[str, str], ...] = ()


def meta_state(job: Job) -> tuple[object, ...]:
    """What `--meta` and `--header` add to a resume state's key (nothing without them, so
    the states of uploads started before they existed still match): other metadata or
    other stored headers, another upload (the server refuses a create replayed with others)."""
    meta = (repr(job.metadata),) if job.metadata else ()
    return (*meta, "headers", repr(job.headers)) if job.headers else meta


def job_state(
    job: Job,
    target: Target,
    caller: str,
    bucket: str | None,
    chunk_size: int | None,
    *protocol: str,
) -> ResumeState:
    """What is kept of sending `job` between runs. Its key is what makes a later run the
    same upload; `protocol`: "tus" for a tus upload's, nothing for the native one's (as
    before tus came)."""
    return ResumeState(
        state_key(
            job.path,
            job.size,
            job.mtime_ns,
            target.url,
            caller,
            bucket,
            job.key,
            *protocol,
            chunk_size,
            *meta_state(job),
        ),
        target.url,
    )


def job_sha256(job: Job, state: ResumeState, transfer: Transfer, task: Any) -> str:
    """The file's sha256: kept in `state`, or hashed now (saying so on `task`'s bar) and
    kept there for a later run."""
    sha = state.get("sha256")
    if not sha:
        transfer.progress.update(task, description=f"{job.name} (sha256)")
        sha = sha256_file(job.path, stop=transfer.stop)
        state.update(sha256=sha)
        transfer.progress.update(task, description=job.name)
    return str(sha)


def collect(paths: list[str], key: str | None, *, in_bucket: bool = False) -> list[Job]:
    """Files to send; a directory recurses (sorted), its files keyed by relative path.

    A `key` ending in "/" is a prefix: each file given by itself is keyed by it and its
    name (`--key photos/`, as `aws s3 cp f s3://b/photos/`). In a bucket a file given by
    itself is an object, so without `key` its name is its key: else it would become a file
    of the bucket that no listing of the bucket shows."""
    prefix = key if key is not None and key.endswith("/") else None
    jobs: list[Job] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in _files_under(path):
                rel = file.relative_to(path).as_posix()
                jobs.append(_job(file, f"{key.rstrip('/')}/{rel}" if key else rel))
        elif path.is_file():
            if prefix is not None:
                file_key: str | None = prefix + path.name
            elif key is None and in_bucket:
                file_key = path.name
            else:
                file_key = key
            jobs.append(_job(path, file_key))
        elif path.exists():  # a FIFO, a socket, a device: no size to announce
            raise ClientError(f"{raw}: not a regular file or a directory", code="not_a_file")
        else:
            raise ClientError(f"{raw}: no such file or directory", code="not_a_file")
    if key and prefix is None and len(jobs) > 1 and not any(Path(p).is_dir() for p in paths):
        raise ClientError(
            "--key names one object: give one file, a directory, or a prefix ending in /",
            code="usage",
            exit_code=USAGE,
        )
    return jobs


def _files_under(root: Path) -> list[Path]:
    """The files of a tree, sorted. A directory that cannot be listed stops the command
    with its name: `Path.rglob` skipped it without a word, and the upload ended with exit
    0 while its files were never sent. (Directory symlinks are not followed, as before.)
    What is not a file (a broken symlink, a FIFO, a socket) is skipped with a warning."""

    def refuse(e: OSError) -> None:
        raise ClientError(
            f"{e.filename}: cannot read the directory: {e.strerror or e}", code="io_error"
        )

    found: list[Path] = []
    for folder, _, names in os.walk(root, onerror=refuse):
        for name in names:
            path = Path(folder, name)
            if path.is_file():
                found.append(path)
            else:
                # Nothing to send, but said, as `aws s3 cp --recursive` does: a silent
                # skip looks like a complete upload.
                what = "a broken symbolic link" if path.is_symlink() else "not a regular file"
                # A path may hold any byte but `/` and NUL (an unpacked archive's names).
                print(printable(f"cairn: warning: {path}: {what}, skipped"), file=sys.stderr)
    return sorted(found)


def _job(path: Path, key: str | None) -> Job:
    _utf8_or_refused(path, path.name, key)
    st = path.stat()
    return Job(path.resolve(), st.st_size, st.st_mtime_ns, path.name, key)


def _utf8_or_refused(path: Path, *texts: str | None) -> None:
    """A name or key that is not UTF-8 text stops the command, naming the file. A path
    may hold any byte (an archive's Latin-1 names: `caf\\xe9.txt`), which Python reads as
    lone surrogates; sent as they were, encoding the request's JSON failed, and the
    command blamed the server (`bad_response: an answer is not shaped as Cairn's`)."""
    for text in texts:
        if text is None:
            continue
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ClientError(
                f"{path}: its name is not UTF-8 text, which a file name or key must be:"
                " rename it, or upload it from stdin with --name",
                code="invalid_file_name",
            ) from None


def caller_of(target: Target) -> str:
    """Who the token is for (its `sub`), so two users' resume states never mix."""
    if not target.token:
        return ""
    try:
        claims = jwt.decode(target.token, options={"verify_signature": False})
        return str(claims.get("sub", ""))
    except jwt.PyJWTError:
        return state_key(target.token)  # an API key: its digest, never the key itself


def upload(
    target: Target,
    jobs: list[Job],
    *,
    bucket: str | None,
    parallel: int,
    chunk_size: int | None,
    limit_rate: int | None,
    console: Any,
    tus: bool = False,
    streams: int = 1,
) -> tuple[list[dict[str, Any]], list[tuple[Job, ClientError]]]:
    if tus:
        # Imported only when used: tuspy brings aiohttp and requests, most of a second of
        # every `cairn` command's start-up.
        from bus.client.tus import upload_tus
    results: list[dict[str, Any]] = []
    failures: list[tuple[Job, ClientError]] = []
    with progress_bars(console) as progress:
        transfer = Transfer(progress, sum(j.size for j in jobs), limit_rate)
        with concurrent.futures.ThreadPoolExecutor(max(1, parallel)) as pool:
            futures = {
                (
                    pool.submit(
                        upload_tus, target, job, bucket, chunk_size, transfer, caller_of(target)
                    )
                    if tus
                    else pool.submit(
                        _upload_one,
                        target,
                        job,
                        bucket,
                        chunk_size,
                        transfer,
                        caller_of(target),
                        streams,
                    )
                ): job
                for job in jobs
            }
            try:
                pending = set(futures)
                while pending:
                    # A timeout so the main thread wakes up for Ctrl-C (KeyboardInterrupt).
                    done, pending = concurrent.futures.wait(pending, timeout=0.5)
                    for fut in done:
                        _collect(fut, futures[fut], results, failures)
            except KeyboardInterrupt:
                # Workers see the flag at their next piece; what the server has is kept.
                transfer.stop.set()
                concurrent.futures.wait(futures)
                raise Interrupted() from None
    return results, failures


def _collect(
    fut: concurrent.futures.Future[dict[str, Any]],
    job: Job,
    results: list[dict[str, Any]],
    failures: list[tuple[Job, ClientError]],
) -> None:
    try:
        results.append(fut.result())
    except Interrupted:
        raise KeyboardInterrupt from None
    except ClientError as e:
        failures.append((job, e))
    except SHAPE_ERRORS as e:  # an answer of the wrong shape: this file fails, not the run
        failures.append((job, unexpected(e)))
    except OSError as e:
        # The path is already at the head of the line printed for a failed file.
        failures.append((job, ClientError(e.strerror or str(e), code="io_error")))


def _upload_one(
    target: Target,
    job: Job,
    bucket: str | None,
    chunk_size: int | None,
    transfer: Transfer,
    caller: str,
    streams: int = 1,
) -> dict[str, Any]:
    state = job_state(job, target, caller, bucket, chunk_size)
    try:
        with open_client(target) as client:
            return _send(client, state, job, bucket, chunk_size, transfer, streams)
    except httpx.TransportError as e:
        raise unreachable(target.url, e) from None


def _send(
    client: httpx.Client,
    state: ResumeState,
    job: Job,
    bucket: str | None,
    chunk_size: int | None,
    transfer: Transfer,
    streams: int = 1,
) -> dict[str, Any]:
    task = transfer.add(job.name, total=job.size)
    sha = job_sha256(job, state, transfer, task)
    resumed = False
    missing: list[int] | None = None
    upload_id = state.get("upload_id")
    if upload_id:
        r = client.get(f"/v1/uploads/{upload_id}/missing-chunks")
        if r.status_code == 200 and json_of(r, status=str)["status"] in (*ACTIVE, "COMPLETED"):
            missing, resumed = json_of(r, missing_chunks=list)["missing_chunks"], True
            missing = _chunk_indexes(missing, job.size, int(state.get("chunk_size")), str(r.url))
        elif r.status_code in (200, 404):  # expired, aborted, failed or gone: start again
            state.reset(sha256=sha)
            upload_id = None
        else:
            check(r)
    if upload_id is None:
        create_key = state.get("create_key") or str(uuid.uuid4())
        state.update(create_key=create_key)
        body: dict[str, Any] = {"file_name": job.name, "file_size": job.size, "sha256": sha}
        if chunk_size:
            body["chunk_size"] = chunk_size
        if bucket:
            body["bucket"] = bucket
        metadata = dict(job.metadata)
        if job.key:
            metadata["key"] = job.key
        if metadata:
            body["metadata"] = metadata
        if job.key:
            if bucket:  # in a bucket, the key names the object the upload becomes
                body["key"] = job.key
        if job.headers:
            body["headers"] = dict(job.headers)
        r = client.post("/v1/uploads", json=body, headers={"Idempotency-Key": create_key})
        if _refused(r):
            # A refused create changed nothing, but its answer is stored under its key and
            # would be replayed for a day: once the cause is fixed (the bucket created, the
            # quota raised), the next run must ask afresh, under a new key.
            state.update(create_key=None)
        created = json_of(r)
        where = str(r.request.url)
        if created.get("deduplicated"):
            shaped(created, where, file_id=str)
            transfer.progress.update(task, completed=job.size)
            transfer.skip(job.size)
            state.remove()
            return _result(job, created["file_id"], sha, None, resumed=False, sent=0, dedup=True)
        shaped(created, where, id=str, chunk_size=int, total_chunks=(int, NONE))
        if not UUID.match(created["id"]):  # a path segment of every later request
            raise bad_shape(where, f"an upload id of {created['id'][:80]!r}")
        if not 0 < created["chunk_size"] <= MAX_CHUNK:
            raise bad_shape(where, f"a chunk_size of {created['chunk_size']}")
        total = created["total_chunks"] or 0
        if not 0 <= total <= _chunk_count(job.size, created["chunk_size"]):
            raise bad_shape(where, f"total_chunks {total} for {job.size} bytes")
        upload_id = created["id"]
        state.update(upload_id=upload_id, chunk_size=created["chunk_size"])
        missing = list(range(total))
    size_of = _chunk_sizes(job.size, int(state.get("chunk_size")))
    already = job.size - sum(size_of(i) for i in missing or [])
    transfer.progress.update(task, completed=already)
    transfer.skip(already)
    sent = 0
    put = functools.partial(_put_chunk, client, upload_id, state, size_of, transfer, task)
    with _Chunks(job.path, streams) as chunks:
        for _ in range(MAX_RETRIES):
            sent += chunks.send(put, missing or [])
            complete_key = state.get("complete_key") or str(uuid.uuid4())
            state.update(complete_key=complete_key)
            r = client.post(
                f"/v1/uploads/{upload_id}/complete", headers={"Idempotency-Key": complete_key}
            )
            if r.status_code == 409 and code_of(r) == "chunks_missing":
                # Chunks the server lost track of (e.g. a PUT cut off): send them, then a
                # fresh complete (the refused one is stored under its key and would replay).
                missing = r.json()["error"]["details"].get("missing_chunks") or []
                missing = _chunk_indexes(
                    missing, job.size, int(state.get("chunk_size")), str(r.request.url)
                )
                state.update(complete_key=None)
                continue
            if r.status_code == 422 and code_of(r) == "checksum_mismatch":
                # The server's bytes are not the file hashed when this upload began: it
                # changed since, keeping its size and mtime (`cp -p`), so the resume state
                # could not tell. This upload can never complete, and its complete's
                # stored answer would be replayed to every later run: abort it (best
                # effort) and forget it, so that the next run hashes the file afresh.
                client.delete(f"/v1/uploads/{upload_id}")
                state.remove()
                raise ClientError(
                    f"the bytes sent are not the file hashed when the upload began ({sha}):"
                    " it changed since; run the command again to upload it afresh",
                    code="sha256_mismatch",
                    status=r.status_code,
                    exit_code=VERIFY,
                )
            done = json_of(r, file_id=str, sha256=str)
            break
        else:
            raise ClientError(f"{job.path}: could not complete the upload", code="incomplete")
    if done.get("sha256") != sha:
        state.remove()  # what the server made is not this file: the next run starts afresh
        raise ClientError(
            f"{job.path}: the server's sha256 {done.get('sha256')} is not the file's {sha}",
            code="sha256_mismatch",
            exit_code=VERIFY,
        )
    state.remove()
    return _result(job, done["file_id"], sha, upload_id, resumed=resumed, sent=sent, dedup=False)


# The largest chunk an answer may set (a chunk is read and sent whole, not held).
MAX_CHUNK = 1 << 40


def _chunk_count(size: int, chunk: int) -> int:
    """How many chunks a file of `size` bytes has (an empty file: one, or none)."""
    return max(1, -(-size // chunk))


def _chunk_indexes(values: Any, size: int, chunk: int, where: str) -> list[int]:
    """The server's list of missing chunks, if each is a chunk of this file: -1 seeked
    before its start (`io_error: Invalid argument`), one past its end sent empty PUTs."""
    count = _chunk_count(size, chunk)
    if not isinstance(values, list) or not all(type(i) is int and 0 <= i < count for i in values):
        raise bad_shape(where, f"missing chunks {str(values)[:80]} of a file of {count}")
    return values


def _chunk_sizes(size: int, chunk: int) -> Any:
    return lambda i: max(0, min(chunk, size - i * chunk))


class _Chunks:
    """Sends one file's chunks, `streams` at a time, each worker with its own file handle.

    httpx's Client is shared: it is safe across threads, and its pool keeps a connection
    per stream. The first failure stops the chunks not yet started and is raised once the
    running ones have ended (nothing is left writing to the server behind the caller's
    back); what did arrive is kept, and a rerun sends only what is missing."""

    def __init__(self, path: Path, streams: int) -> None:
        self._path = path
        self._streams = max(1, streams)
        self._pool = concurrent.futures.ThreadPoolExecutor(self._streams)
        self._local = threading.local()
        self._handles: list[BinaryIO] = []
        self._lock = threading.Lock()

    def __enter__(self) -> _Chunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for f in self._handles:
            f.close()

    def _handle(self) -> BinaryIO:
        f: BinaryIO | None = getattr(self._local, "f", None)
        if f is None:
            f = self._local.f = self._path.open("rb")
            with self._lock:
                self._handles.append(f)
        return f

    def _put_one(self, put: Callable[[BinaryIO, int], int], index: int) -> int:
        return put(self._handle(), index)

    def send(self, put: Callable[[BinaryIO, int], int], indexes: list[int]) -> int:
        """PUT every chunk of `indexes`; the bytes sent."""
        futures = [self._pool.submit(self._put_one, put, i) for i in indexes]
        sent = 0
        try:
            for fut in concurrent.futures.as_completed(futures):
                sent += fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            concurrent.futures.wait(futures)
            raise
        return sent


def _put_chunk(
    client: httpx.Client,
    upload_id: str,
    state: ResumeState,
    size_of: Any,
    transfer: Transfer,
    task: Any,
    f: Any,
    index: int,
) -> int:
    length: int = size_of(index)
    for _ in range(MAX_RETRIES):
        f.seek(index * int(state.get("chunk_size")))
        moved = 0

        def body() -> Iterator[bytes]:
            nonlocal moved
            for data in read_pieces(f, length, transfer, task):
                moved += len(data)
                yield data

        r = client.put(
            f"/v1/uploads/{upload_id}/chunks/{index}",
            content=body(),
            headers={"Content-Length": str(length), "Content-Type": "application/octet-stream"},
        )
        if r.status_code not in RETRIED:
            check(r)
            return length
        # Over the server's in-flight limit, or unavailable for now: undo the bar, wait as
        # told, send again.
        transfer.progress.update(task, advance=-moved)
        transfer.progress.update(transfer.total_task, advance=-moved)
        if transfer.stop.wait(retry_after(r)):
            raise Interrupted()
    raise error_from(r)


def _refused(r: httpx.Response) -> bool:
    """A 4xx that says no for good: not 429 (try later) nor a concurrent request with the
    same key (whose answer is still to come)."""
    return (
        400 <= r.status_code < 500
        and r.status_code != 429
        and code_of(r) != "idempotency_request_in_progress"
    )


def code_of(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _result(
    job: Job,
    file_id: str,
    sha: str,
    upload_id: str | None,
    *,
    resumed: bool,
    sent: int,
    dedup: bool,
) -> dict[str, Any]:
    return {
        "path": os.fspath(job.path),
        "file_id": file_id,
        "upload_id": upload_id,
        "size": job.size,
        "sha256": sha,
        "key": job.key,
        "resumed": resumed,
        "bytes_sent": sent,
        "deduplicated": dedup,
    }
