"""`cairn upload -`: standard input to the server as it is read (`tar c d | cairn upload -`).

Why tus and not the native API: a native upload is created with its size (and its chunk
count follows from it), and stdin's size is known only at its end. tus has
creation-defer-length: the upload is created with `Upload-Defer-Length: 1`, each chunk is
a PATCH at the server's offset, and the last PATCH says `Upload-Length` (the server
declares the length first, then appends, then completes the upload into a file, all in
that request; api/tus/controller.py). The last chunk is the one that comes short of
the chunk size; when stdin ends exactly after a full chunk (or is empty), the last is an
empty PATCH that only declares the length.

Memory: one chunk (`--chunk-size`, default 8 MiB); nothing is spooled to disk. The sha256 is computed as the bytes are read and compared with the server's sha256
of the file at the end (exit 6 on a mismatch, as the file paths).

Not resumable: stdin cannot be read again. Within a chunk the client can still recover,
the chunk being in memory: a PATCH answered 429 or 503 is sent again after Retry-After,
and after a lost connection (or an offset the server moved meanwhile) the client asks
the server its offset (HEAD) and sends the rest of the chunk from there. Anything else
ends the command, and the upload is terminated on the server (tus DELETE, best effort),
so nothing half-done is left behind; Ctrl-C too.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import sys
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import httpx
from rich.console import Console
from rich.progress import (
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from bus.client.config import Target
from bus.client.errors import USAGE, VERIFY, ClientError
from bus.client.http import NONE, error_from, json_of, open_client, retry_after, unreachable
from bus.client.output import human_bytes
from bus.client.transfer import PIECE, Transfer
from bus.client.upload import MAX_RETRIES, RETRIED, code_of

TUS = {"Tus-Resumable": "1.0.0"}
DEFAULT_CHUNK = 8 << 20  # as `--tus`: one PATCH per 8 MiB, and that much memory
# A lost connection: wait this long before asking the server its offset (it may be
# restarting), at most MAX_RETRIES times per chunk.
RECONNECT_WAIT = 1.0
# A termination after a failure: short, the command is ending anyway.
TERMINATE_TIMEOUT = httpx.Timeout(10.0)


def names(name: str | None, key: str | None, bucket: str | None) -> tuple[str, str | None]:
    """The file's name and object key: `--name`, else the last part of `--key`, else
    `stdin`; a `--key` ending in / is a prefix for the name, and in a bucket the key is the
    name by default (as for a file given by itself)."""
    if key is not None and key.endswith("/"):
        if not name:
            raise ClientError(
                "--key ending in / is a prefix: give the name with --name",
                code="usage",
                exit_code=USAGE,
            )
        return name, key + name
    chosen = name or (key.rsplit("/", 1)[-1] if key else "") or "stdin"
    return chosen, key if key is not None else (chosen if bucket else None)


def readable_stdin() -> BinaryIO:
    """stdin's bytes, unless there are none to read or it is a terminal (as gzip, which
    would otherwise wait for the user to type the upload)."""
    stdin = sys.stdin
    if stdin is None:
        raise ClientError("no standard input to read", code="usage", exit_code=USAGE)
    if stdin.isatty():
        raise ClientError(
            "refusing to read the upload from a terminal (pipe or redirect it: `cmd | cairn"
            " upload -`, `cairn upload - < file`)",
            code="usage",
            exit_code=USAGE,
        )
    return stdin.buffer


class Chunks:
    """stdin cut into chunks of `size` bytes, each told whether it is the last: a short
    one (the end came within it), or an empty one after a full one (the end came just
    after it: known only by reading again, and a full chunk is not held back waiting for
    the producer's next byte to tell).

    One buffer, reused: a chunk's view is valid until the next one is read (the caller has
    sent it by then)."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._buf = bytearray(size)

    def _fill(self, view: memoryview) -> int:
        got = 0
        while got < len(view):
            n = self._f.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:  # the end of input (a pipe's short read is not: read on)
                break
            got += n
        return got

    def __iter__(self) -> Iterator[tuple[memoryview, bool]]:
        view = memoryview(self._buf)
        while True:
            n = self._fill(view)
            last = n < len(view)
            yield view[:n], last
            if last:
                return


class _Received(ProgressColumn):
    """Bytes so far, no total (there is none until the end)."""

    def render(self, task: Task) -> Text:
        return Text(human_bytes(task.completed), style="progress.download")


def progress_line(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        _Received(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def upload_stdin(
    target: Target,
    f: BinaryIO,
    *,
    name: str,
    key: str | None,
    bucket: str | None,
    chunk_size: int | None,
    limit_rate: int | None,
    console: Console,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Send `f` to its end as one new file; the result row the file uploads report."""
    try:
        with open_client(target) as client, progress_line(console) as progress:
            transfer = Transfer(progress, None, limit_rate, description=name)
            return _send(
                client,
                f,
                name,
                key,
                bucket,
                chunk_size or DEFAULT_CHUNK,
                transfer,
                metadata,
            )
    except httpx.TransportError as e:
        raise unreachable(target.url, e) from None


def _send(
    client: httpx.Client,
    f: BinaryIO,
    name: str,
    key: str | None,
    bucket: str | None,
    chunk_size: int,
    transfer: Transfer,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    url = _create(client, name, key, bucket, metadata or {})
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    done = False
    try:
        sha = hashlib.sha256()
        offset = 0
        for chunk, last in Chunks(f, chunk_size):
            sha.update(chunk)
            offset = send_chunk(client, url, offset, chunk, last, transfer)
        done = True
    finally:
        if not done:  # Ctrl-C or a failure: leave nothing half-done behind
            terminate(client, url)
    file_id, theirs = finished_file(client, upload_id)
    ours = sha.hexdigest()
    if theirs != ours:
        raise ClientError(
            f"-: the server's sha256 {theirs} of file {file_id} is not that of the bytes"
            f" read, {ours}",
            code="sha256_mismatch",
            exit_code=VERIFY,
        )
    return {
        "path": "-",
        "name": name,
        "file_id": file_id,
        "upload_id": upload_id,
        "size": offset,
        "sha256": ours,
        "key": key,
        "resumed": False,
        "bytes_sent": offset,
        "deduplicated": False,
        "protocol": "tus",
    }


def _metadata(values: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def _create(
    client: httpx.Client, name: str, key: str | None, bucket: str | None, extra: dict[str, str]
) -> str:
    """A tus upload of deferred length; its URL. A 429 or 503 is waited out as a PATCH's
    is (a 503 may have come after the upload was made: one nobody writes to expires)."""
    metadata = {**extra, "filename": name}
    if bucket:
        metadata["bucket"] = bucket
    if key:
        metadata["key"] = key
    headers = {**TUS, "Upload-Defer-Length": "1", "Upload-Metadata": _metadata(metadata)}
    for _ in range(MAX_RETRIES):
        r = client.post("/v1/tus/", headers=headers)
        if r.status_code not in RETRIED:
            break
        _wait(r)
    if r.status_code != 201 or not r.headers.get("location"):
        raise error_from(r)
    # Every PATCH carries the token (a client header) and stdin: to this server only,
    # never to a host a broken or hostile answer names.
    url = r.url.join(r.headers["location"])
    if (url.scheme, url.host, url.port) != (r.url.scheme, r.url.host, r.url.port):
        raise ClientError(
            f"{r.url} answered an upload at {url}, on another server: not sending"
            " stdin (and the token) there",
            code="bad_response",
        )
    return str(url)


def send_chunk(
    client: httpx.Client,
    url: str,
    start: int,
    chunk: memoryview,
    last: bool,
    transfer: Transfer,
) -> int:
    """PATCH `chunk`, which belongs at `start`, until the server has it all; the new offset.

    The last chunk carries `Upload-Length`. Sent again, from where the server's offset
    stands, after a 429/503 (its Retry-After), a lost connection or a 409 offset_mismatch
    (a PATCH cut off may still have appended what arrived: HEAD says how much); an offset
    outside the chunk cannot be helped from memory, and ends the upload."""
    end = start + len(chunk)
    offset = start
    lost: httpx.TransportError | None = None
    for _ in range(MAX_RETRIES):
        transfer.progress.update(transfer.total_task, completed=offset)
        headers = {
            **TUS,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(end - offset),
        }
        if last:
            headers["Upload-Length"] = str(end)
        try:
            r = client.patch(
                url, content=_pieces(chunk[offset - start :], transfer), headers=headers
            )
        except httpx.TransportError as e:
            # The server may be restarting; then it says how much of the body it kept.
            lost = e
            transfer.stop.wait(RECONNECT_WAIT)
            r = None
        if r is not None and r.status_code == 204:
            return end
        if r is not None and r.status_code in RETRIED:
            _wait(r, transfer.stop)
            continue
        if r is None or (r.status_code == 409 and code_of(r) == "offset_mismatch"):
            offset, length = _offset_within(client, url, start, end, offset)
            # All there: done, unless the last chunk's length is still to be declared
            # (an empty one, whose PATCH never arrived).
            if offset == end and (not last or length == end):
                return end
            continue
        raise error_from(r)
    if r is None and lost is not None:
        raise lost  # unreachable to the end (exit 7)
    raise ClientError(
        f"the server did not take the bytes at {offset} after {MAX_RETRIES} tries",
        code="incomplete",
    )


def _pieces(data: memoryview, transfer: Transfer) -> Iterator[bytes]:
    """A chunk's bytes as an HTTP body, a piece at a time, counted (and rate-limited)."""
    for i in range(0, len(data), PIECE):
        piece = bytes(data[i : i + PIECE])
        yield piece
        transfer.count(len(piece))


def _offset_within(
    client: httpx.Client, url: str, start: int, end: int, current: int
) -> tuple[int, int | None]:
    """The server's offset, which must fall within the chunk in memory (start..end), and
    the upload's length if it is declared."""
    try:
        r = client.head(url, headers=TUS)
    except httpx.TransportError:
        # Still unreachable: the next PATCH tries (and counts) again; were the offset
        # another by then, its 409 brings us back here.
        return current, None
    if r.status_code != 200:
        raise error_from(r)
    try:
        offset = int(r.headers.get("upload-offset", ""))
        length = int(r.headers["upload-length"]) if "upload-length" in r.headers else None
    except ValueError:
        raise ClientError("the server's HEAD has no offset", code="bad_answer") from None
    if not start <= offset <= end:
        raise ClientError(
            f"the server is at offset {offset}, outside the chunk still in memory"
            f" ({start} to {end}); stdin cannot be read again",
            code="offset_lost",
        )
    return offset, length


def _wait(r: httpx.Response, stop: threading.Event | None = None) -> None:
    """Wait as a 429/503 says (Retry-After)."""
    (stop or threading.Event()).wait(retry_after(r))


def terminate(client: httpx.Client, url: str) -> None:
    """Best effort: the upload is aborted on the server (tus termination); a failure to
    say so changes nothing of the error being reported."""
    with contextlib.suppress(Exception):
        client.delete(url, headers=TUS, timeout=TERMINATE_TIMEOUT)


def finished_file(client: httpx.Client, upload_id: str) -> tuple[str, str]:
    """The file a completed upload became, and its sha256 as the server computed it."""
    file_id = json_of(client.get(f"/v1/uploads/{upload_id}"), file_id=(str, NONE))["file_id"]
    if not file_id:
        raise ClientError(
            "the server has every byte but has not made the file yet; it will (see `cairn"
            " ls`), but its sha256 could not be checked",
            code="not_finished",
        )
    return file_id, json_of(client.get(f"/v1/files/{file_id}"), sha256=str)["sha256"]
