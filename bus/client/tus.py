"""`cairn upload --tus`: the same files through the tus 1.0 protocol (`/v1/tus/`), with
tuspy (tusclient) doing the protocol: creation with metadata, PATCH per chunk with an
`Upload-Checksum` (sha1 of the chunk, so the server keeps nothing it did not verify), HEAD
for the offset on resume.

Why next to the native path: tus is what other tools speak (Uppy, tusd clients), and a
server behind a proxy that allows only tus still takes uploads. Resume works the same way
as the native path: the upload URL tuspy creates is saved in our resume state (resume.py,
keyed by path, size, mtime, server, user and destination, plus "tus") before the first
byte is sent, so after Ctrl-C or a crash the same command asks the server for the offset
and sends only the rest. The whole file's sha256 is computed first and compared with the
server's sha256 of the file it made.

tuspy reads one chunk into memory per PATCH (bounded by the chunk size, never the file).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError
from tusclient.storage.interface import Storage
from tusclient.uploader.uploader import Uploader

from bus.client.config import Target
from bus.client.errors import VERIFY, ClientError, exit_code_for_status
from bus.client.http import BAD_JSON, open_client, unreachable
from bus.client.pipe import finished_file
from bus.client.resume import ResumeState
from bus.client.transfer import Transfer
from bus.client.upload import job_sha256, job_state

DEFAULT_CHUNK = 8 << 20  # one PATCH per 8 MiB: progress is durable per chunk
RETRIES = 5  # a PATCH refused (429 in-flight limit) or cut: tuspy re-reads the offset


class _StateStorage(Storage):
    """tuspy's URL store, backed by our resume state: its fingerprint is not needed,
    the state file is already keyed by the file and the destination."""

    def __init__(self, state: ResumeState) -> None:
        self.state = state

    def get_item(self, key: str) -> str | None:
        url = self.state.get("tus_url")
        return str(url) if url else None

    def set_item(self, key: str, url: str | None) -> None:
        # The file's bytes (and the token) go where this URL says: this server only
        # (tuspy stores None too, an upload forgotten).
        if url is not None and not self.state.on_server(url):
            raise ClientError(
                f"the server answered an upload at {url}, not under its own /v1/tus/:"
                " not sending the file there",
                code="bad_response",
            )
        self.state.update(tus_url=url)

    def remove_item(self, key: str) -> None:
        self.state.update(tus_url=None)


class _Fingerprint:
    """A constant: our state file is the identity, so no need to hash the file's head."""

    def get_fingerprint(self, fs: Any) -> str:
        return "cairn"


def _error(e: TusCommunicationError, target: Target) -> ClientError:
    status = getattr(e, "status_code", None)
    if status is None:  # no answer at all (connection refused, reset, DNS)
        return unreachable(target.url, e)
    raw = getattr(e, "response_content", None) or b""
    try:
        err = json.loads(raw)["error"]
        code, message = str(err["code"]), str(err["message"])
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
    except (*BAD_JSON, KeyError, TypeError):
        code, message, details = f"http_{status}", str(e), {}
    return ClientError(
        message,
        code=code,
        status=status,
        exit_code=exit_code_for_status(status),
        details=details,
    )


def upload_tus(
    target: Target,
    job: Any,
    bucket: str | None,
    chunk_size: int | None,
    transfer: Transfer,
    caller: str,
) -> dict[str, Any]:
    """One file (a bus.client.upload.Job) through tus; the result row upload.py reports."""
    state = job_state(job, target, caller, bucket, chunk_size, "tus")
    task = transfer.add(job.name, total=job.size)
    sha = job_sha256(job, state, transfer, task)
    metadata = {**dict(job.metadata), "filename": job.name}
    if bucket:
        metadata["bucket"] = bucket
    if job.key:
        metadata["key"] = job.key
    # The stored headers: Upload-Metadata keys of their lower-case names (api/tus/).
    metadata.update(job.headers)
    headers = {"User-Agent": "cairn-cli"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    client = TusClient(f"{target.url.rstrip('/')}/v1/tus/", headers=headers)
    # A path, not an open file: tuspy closes the stream it is given after fingerprinting.
    uploader = _uploader(
        client, str(job.path), state, metadata, chunk_size or DEFAULT_CHUNK, target
    )
    resumed = uploader.url is not None
    start = uploader.offset
    transfer.progress.update(task, completed=start)
    transfer.skip(start)
    try:
        if uploader.url is None:  # created (and saved) before the first byte goes
            uploader.set_url(uploader.create_url())
            uploader.offset = 0
        while uploader.offset < job.size:
            transfer.check()  # Ctrl-C: stop between chunks; the server keeps each one
            before = uploader.offset
            uploader.upload_chunk()  # type: ignore[no-untyped-call]
            transfer.advance(task, uploader.offset - before)
    except TusCommunicationError as e:
        raise _error(e, target) from None
    upload_id = str(uploader.url).rstrip("/").rsplit("/", 1)[-1]
    try:
        with open_client(target) as http:
            file_id, theirs = finished_file(http, upload_id)
    except httpx.TransportError as e:
        raise unreachable(target.url, e) from None
    if theirs != sha:
        # The file changed since it was hashed, keeping its size and mtime (`cp -p`): the
        # server has a mix. Kept, this state would lead every later run to the same upload
        # and the same mismatch; forgotten, the next run hashes and sends the file afresh.
        state.remove()
        raise ClientError(
            f"{job.path}: the server's sha256 {theirs} is not the file's {sha}",
            code="sha256_mismatch",
            exit_code=VERIFY,
        )
    state.remove()
    return {
        "path": str(job.path),
        "file_id": file_id,
        "upload_id": upload_id,
        "size": job.size,
        "sha256": sha,
        "key": job.key,
        "resumed": resumed,
        "bytes_sent": job.size - start,
        "deduplicated": False,
        "protocol": "tus",
    }


def _uploader(
    client: TusClient,
    path: str,
    state: ResumeState,
    metadata: dict[str, str],
    chunk_size: int,
    target: Target,
) -> Uploader:
    def make() -> Uploader:
        return client.uploader(
            file_path=path,
            chunk_size=chunk_size,
            metadata=metadata,
            retries=RETRIES,
            retry_delay=1,
            store_url=True,
            url_storage=_StateStorage(state),
            fingerprinter=_Fingerprint(),
            upload_checksum=True,
        )

    try:
        return make()  # with a saved URL, this asks the server for its offset (HEAD)
    except TusCommunicationError as e:
        if getattr(e, "status_code", None) not in (404, 410):
            raise _error(e, target) from None
        # The saved upload expired or is gone: start again, from zero.
        state.update(tus_url=None)
        return make()
