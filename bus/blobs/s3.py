"""Blob store adapter: content-addressed chunks in an S3 bucket (AWS, MinIO, R2, Garage).

`CAIRN_BLOB_STORE=s3://BUCKET[/prefix]`; a chunk lives at `<prefix>chunks/<sha256>`.
Credentials and region come from the standard `AWS_*` variables (botocore's chain);
`CAIRN_S3_ENDPOINT` points at a non-AWS server and switches to path-style addressing.

Content addressing without buffering. A chunk's key is its sha256, known only when the
stream ends. Two ways were measured against the tests' local S3 server on this
(loaded, 2-core) machine: (a) spool the body to a local temp file while hashing, then one PUT
under the final key with the digest in `x-amz-checksum-sha256`; (b) stream to a
temporary key, then CopyObject to the final key and delete the temporary one. (a) wins
(8 MiB chunks: 24 vs 19 MiB/s; 64 MiB: 38 vs 32 MiB/s, (b) even sent from memory):
one request instead of three, S3 verifies the digest we computed before it acknowledges
(with (b) the checksum is only known once the bytes are already in S3, so the server
could only verify it on the copy, which S3 does not do), and a copy of a large object is
itself a full read and write on the server. The spool costs local disk of at most the
chunk-size limit per PUT in flight (`CAIRN_S3_SPOOL_DIR`), never memory: bodies go to the
file in 4 MiB buffers hashed in a thread, and aiohttp streams the file from disk.

Durability: `put_stream` returns only after S3 answered 200 to a PUT that carried the
sha256 checksum header, which S3 verifies against the bytes it received (a mismatch is
400 BadDigest, and nothing is stored). botocore's own default CRC checksums are set to
`when_required`: several S3-compatible servers reject or mishandle them, and the sha256
we send is the stronger check. Payload signing is off (`UNSIGNED-PAYLOAD`): SigV4 would
otherwise read the whole file on the event loop to sign it, and the checksum header
already covers the body.

A chunk larger than one PUT may carry (S3: 5 GiB; `S3Options.multipart_threshold`) goes as
a multipart upload instead: parts of `multipart_part_bytes` (more if 10,000 would not
hold it) are read straight from the spool file (never whole into memory), each PUT with
the sha256 of its own bytes, which S3 verifies; a failure anywhere aborts the upload, so
neither parts nor an object are left. Only `cairn blobs migrate` meets such chunks (the
chunk-size settings are capped at 5 GiB with an S3 store): a local store may hold larger
ones. (A multipart object's LastModified is when the upload began; the grace is far
beyond what one chunk's upload takes.)

Reading never calls `Body.read()` on a whole object: `open_range` issues ranged GETs of
`CAIRN_S3_RANGE_BYTES` and yields ~1 MiB pieces; a read timeout or a connection cut while
streaming resumes from the last byte received (up to `CAIRN_S3_MAX_ATTEMPTS` times).
When a whole chunk is read, it is hashed on the way and its last piece is held back until
the digest matches its name: a corrupt body fails the read (BlobCorrupt) instead of
completing a response with wrong bytes.

Garbage collection lists with ListObjectsV2 (LastModified is the "stored at" the grace is
judged on: every put PUTs again, even for bytes already stored, so a re-upload refreshes
it) and deletes with DeleteObjects, 1000 keys per request. LastModified is a time on S3's
clock, the collector's cutoff one on Cairn's: every time this store reports is moved onto
Cairn's clock by the skew measured in the same response (see `_to_our_clock`), so a
server whose clock is behind cannot make a chunk PUT a moment ago look old. Before each
DeleteObjects the batch is re-checked with at most one listing page from its first key
and a HEAD (16 at a time) for each key that page did not reach: sha256 names are
uniform, so listing from the first wanted key to the last walked nearly the whole
bucket. Unlike the local store, S3
offers no atomic "delete only if not rewritten since": a put of the very same bytes that
lands between the collector's reference check and its DeleteObjects is lost. The
collector narrows that window to one request, and the chunk-reference grace makes it a
put of an *old, unreferenced* blob racing the collector; see bus/maintenance.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import functools
import hashlib
import io
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import get_session
from aiohttp import ClientPayloadError, ClientTimeout
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from bus.blobs.batching import HashingBatcher, run_cleanup
from bus.blobs.errors import (
    BlobCorrupt,
    BlobNotFound,
    BlobStoreFull,
    BlobStoreUnavailable,
    is_disk_full,
)
from bus.blobs.local import check_range, is_sha256
from bus.config import metrics
from bus.config.logs import get_logger
from bus.config.private import private_dir
from bus.config.settings import S3_MAX_PUT_BYTES

log = get_logger(__name__)

# Body pieces are gathered into buffers of this size before one thread hop hashes and
# writes them to the spool file (same reasoning as the local store's WRITE_BUFFER).
SPOOL_BUFFER = 4 * 1024 * 1024
# Pieces yielded by `open_range`.
READ_PIECE = 1024 * 1024
# DeleteObjects takes at most 1000 keys per request.
DELETE_BATCH = 1000
# The re-check before DeleteObjects: HEADs in flight at once, and when a batch is big
# enough to try one listing page first (a page is 1000 keys; below this, HEADs only).
STAT_CONCURRENCY = 16
STAT_LIST_FROM = 9
# A skew between S3's clock and Cairn's beyond this is logged (ages are judged on S3's
# clock either way).
SKEW_WARN_SECONDS = 30.0
SPOOL_SUFFIX = ".s3spool"
# A multipart upload has at most this many parts.
MAX_PARTS = 10_000
# Reads of a part's bytes to hash them (the part is then sent from disk again).
HASH_READ = 1024 * 1024


@dataclass(frozen=True)
class S3Options:
    """Everything the S3 store is configured with (from bus/config/settings.py)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    pool_size: int = 32
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 4
    range_bytes: int = 8 * 1024 * 1024
    spool_dir: Path = Path(".cairn/s3-spool")
    # A chunk over this goes as a multipart upload (S3 takes at most 5 GiB in one PUT).
    multipart_threshold: int = S3_MAX_PUT_BYTES
    multipart_part_bytes: int = 256 * 1024 * 1024


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket[/prefix]` -> (bucket, prefix ending in "/" or empty)."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"blob store URL without a bucket: {url!r}")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class S3BlobStore:
    """Chunks as objects named by sha256 in one bucket. Implements domain.ports.BlobStore."""

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self.bucket = options.bucket
        self.prefix = options.prefix
        self.spool_dir = options.spool_dir
        # Runs once at startup, before the loop serves anything: blocking is fine here.
        # Owner-only: the spool holds request bodies (bus/config/private.py).
        private_dir(self.spool_dir)
        self._client: Any = None
        self._client_cm: Any = None
        self._client_lock = asyncio.Lock()
        # Cairn's clock, which S3 times are moved onto (a seam: tests set it).
        self.clock: Callable[[], float] = time.time
        self._skew_warned = False

    # -- the client ------------------------------------------------------------------

    async def client(self) -> Any:
        """The one aiobotocore client (its connection pool is shared by every request)."""
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    o = self.options
                    config = AioConfig(
                        http_session_cls=_bounded_pool_wait(o.connect_timeout + o.read_timeout),
                        max_pool_connections=o.pool_size,
                        connect_timeout=o.connect_timeout,
                        read_timeout=o.read_timeout,
                        # total_max_attempts: tries in all, as CAIRN_S3_MAX_ATTEMPTS says
                        # (botocore's "max_attempts" here counts retries, one try more).
                        retries={"total_max_attempts": o.max_attempts, "mode": "standard"},
                        # SigV4 for presigned URLs too (botocore presigns with SigV2 by
                        # default, which newer regions and several S3 servers refuse).
                        signature_version="s3v4",
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        s3={
                            "addressing_style": "path" if o.endpoint else "auto",
                            "payload_signing_enabled": False,
                        },
                    )
                    cm = get_session().create_client(
                        "s3",
                        endpoint_url=o.endpoint or None,
                        region_name=o.region or "us-east-1",
                        config=config,
                    )
                    self._client = await cm.__aenter__()
                    self._client_cm = cm
        return self._client

    async def close(self) -> None:
        if self._client_cm is not None:
            cm, self._client_cm, self._client = self._client_cm, None, None
            await cm.__aexit__(None, None, None)

    def key_of(self, sha256: str) -> str:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return f"{self.prefix}chunks/{sha256}"

    def _unavailable(self, e: Exception, doing: str) -> BlobStoreUnavailable:
        """One message per cause, naming the setting an operator has to look at."""
        where = self.options.endpoint or "AWS S3"
        credentials = "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"
        if isinstance(e, NoCredentialsError | PartialCredentialsError):
            msg = "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            reason = f"no S3 credentials ({credentials})"
        elif isinstance(e, ClientError):
            code, status = _code(e), _status(e)
            if code == "NoSuchBucket" or (doing == "head bucket" and status == 404):
                msg = f"S3 bucket {self.bucket!r} does not exist (CAIRN_BLOB_STORE)"
                reason = "S3 bucket does not exist (CAIRN_BLOB_STORE)"
            elif status in (401, 403) or code in {
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
            }:
                msg = (
                    f"S3 refused access to bucket {self.bucket!r} ({code or status}):"
                    " check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                )
                reason = f"S3 refused access ({credentials})"
            else:
                msg = f"S3 {doing} failed at {where}: {code or status} {e}"
                reason = f"S3 {doing} failed: {code or status}"
        elif isinstance(e, ConnectTimeoutError):
            msg = (
                f"S3 endpoint {where} unreachable (CAIRN_S3_ENDPOINT), or all"
                f" {self.options.pool_size} connections stayed busy (CAIRN_S3_POOL_SIZE): {e}"
            )
            reason = "S3 endpoint unreachable (CAIRN_S3_ENDPOINT) or connections busy"
        elif isinstance(e, BotoConnectionError | HTTPClientError):
            msg = f"S3 endpoint {where} unreachable (CAIRN_S3_ENDPOINT): {e}"
            reason = "S3 endpoint unreachable (CAIRN_S3_ENDPOINT)"
        else:
            msg = f"S3 {doing} failed at {where}: {e}"
            reason = f"S3 {doing} failed: {type(e).__name__}"
        return BlobStoreUnavailable(msg, reason=reason)

    # -- writing -----------------------------------------------------------------------

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int | None = None,
        also_hash: Any = None,
    ) -> tuple[str, int]:
        """Spool while hashing, then one verified PUT; return (sha256 hex, size) once S3
        acknowledged. On any failure (source error, BlobTooLarge, S3 down, cancellation)
        the spool file is removed and nothing new is visible in the bucket."""
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, self._open_spool)
        try:
            f, path = await asyncio.shield(opening)
        except BaseException:
            await run_cleanup(_close_opened(opening))
            raise
        # Shielded waits and one write in flight: see bus/blobs/batching.py.
        batcher = HashingBatcher(
            functools.partial(_write_all, f),
            buffer=SPOOL_BUFFER,
            max_bytes=max_bytes,
            also_hash=also_hash,
        )
        try:
            await batcher.absorb(chunks)
            total = batcher.size
            digest = batcher.hasher.digest()
            await asyncio.shield(loop.run_in_executor(None, f.seek, 0))
            await self._put_file(digest.hex(), digest, f, total)
            await run_cleanup(_discard(None, f, path))
            metrics.BLOB_WRITTEN_BYTES.inc(total)
            return digest.hex(), total
        except BaseException as e:
            # (Also reached if cancelled after S3 acknowledged: the complete blob stays,
            # which is harmless, like the local store's cancelled commit.)
            await run_cleanup(_discard(batcher.inflight, f, path))
            if isinstance(e, OSError) and is_disk_full(e):
                raise BlobStoreFull(
                    f"no space left in the S3 spool {self.spool_dir}: {e.strerror}",
                    retry_after=30,
                ) from e
            raise

    async def _put_file(self, hexdigest: str, digest: bytes, f: _SpoolFile, size: int) -> None:
        if size > self.options.multipart_threshold:
            await self._put_multipart(hexdigest, f, size)
            return
        client = await self.client()
        # botocore rewinds the file itself when it retries (5xx, connection reset).
        await self._watched(
            client.put_object(
                Bucket=self.bucket,
                Key=self.key_of(hexdigest),
                Body=f,
                ContentLength=size,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(digest).decode(),
            ),
            f,
            "PUT",
        )

    async def _watched(self, request: Any, body: _SpoolFile | _Part, doing: str) -> Any:
        """Await a request that sends `body`, giving up once it stopped reading from it.

        botocore sends a file body with `Expect: 100-continue`, and aiohttp waits for the
        100 (and then writes the body) with no timeout: its read timeout only starts once
        the whole body is sent. An S3 that accepts the connection but never answers (a
        hung server, a black-holed route) held the PUT, the client's request and a pool
        connection forever. So a watchdog: the request is abandoned once aiohttp has read
        nothing from the body for CAIRN_S3_READ_TIMEOUT (after the last read, the wait for
        S3's answer is aiohttp's own read timeout, the same length)."""
        timeout = self.options.read_timeout
        body.last_read = time.monotonic()
        put = asyncio.ensure_future(request)
        try:
            while not put.done():
                idle = time.monotonic() - body.last_read
                if idle >= timeout:
                    raise BlobStoreUnavailable(
                        f"S3 {doing} at {self.options.endpoint or 'AWS S3'} made no progress"
                        f" for {timeout:g} s (CAIRN_S3_READ_TIMEOUT): S3 accepted the"
                        " connection but does not answer"
                    )
                await asyncio.wait({put}, timeout=timeout - idle)
            return put.result()
        except (BotoCoreError, ClientError) as e:
            raise self._unavailable(e, doing) from e
        finally:
            if not put.done():
                put.cancel()
                with contextlib.suppress(BaseException):
                    await put

    async def _put_multipart(self, hexdigest: str, f: _SpoolFile, size: int) -> None:
        """Upload the spool file in parts, each verified by S3 against its own sha256
        (the whole chunk's digest was computed from the same file as it was spooled).
        Parts go one at a time, each read from disk in pieces (hashed first in a thread,
        then streamed by aiohttp): memory stays flat whatever the chunk's size. Any
        failure, cancellation included, aborts the upload."""
        client = await self.client()
        key = self.key_of(hexdigest)
        part_bytes = max(self.options.multipart_part_bytes, -(-size // MAX_PARTS))
        try:
            created = await client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256"
            )
        except (BotoCoreError, ClientError) as e:
            raise self._unavailable(e, "CreateMultipartUpload") from e
        upload_id = str(created["UploadId"])
        parts: list[dict[str, Any]] = []
        try:
            for number, start in enumerate(range(0, size, part_bytes), 1):
                length = min(part_bytes, size - start)
                part_digest = await asyncio.to_thread(_hash_part, f.fileno(), start, length)
                checksum = base64.b64encode(part_digest).decode()
                body = _Part(f.fileno(), start, length)
                resp = await self._watched(
                    client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=body,
                        ContentLength=length,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=checksum,
                    ),
                    body,
                    "UploadPart",
                )
                parts.append(
                    {"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": checksum}
                )
            try:
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except (BotoCoreError, ClientError) as e:
                raise self._unavailable(e, "CompleteMultipartUpload") from e
        except BaseException:
            await run_cleanup(self._abort_multipart(key, upload_id))
            raise

    async def _abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort an upload (S3 drops its parts). If S3 cannot be told, the parts stay
        until a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them: logged."""
        try:
            client = await self.client()
            await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as e:
            log.warning(
                "S3 multipart upload not aborted: its parts stay until a lifecycle rule"
                " removes them",
                key=key,
                upload_id=upload_id,
                error=str(e),
            )

    def _open_spool(self) -> tuple[_SpoolFile, Path]:
        # A fresh random name per put: concurrent puts, even of the same bytes, never share
        # a spool file. Named (not O_TMPFILE) so `sweep` can find what a crash left behind.
        path = self.spool_dir / f"{secrets.token_hex(12)}{SPOOL_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        return _SpoolFile(fd, "r+"), path

    async def sweep(self, older_than: float = 24 * 3600) -> int:
        """Remove spool files a crashed process left behind (older ones only: other
        processes may share the spool directory)."""
        return await asyncio.to_thread(self._sweep_sync, older_than)

    def _sweep_sync(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for p in self.spool_dir.glob(f"*{SPOOL_SUFFIX}"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    # -- presigned URLs ----------------------------------------------------------------

    async def presigned_get(
        self,
        sha256: str,
        *,
        expires: int,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str:
        """A URL that GETs the whole blob straight from S3 for `expires` seconds.

        Signed locally, but only after a HEAD showed the object is there: a URL to a
        missing object is a broken download (a 307 to S3's 404, which the client cannot
        tell from a fault of ours), so that is BlobNotFound, as a streamed read of it
        would be, and an S3 that is down is BlobStoreUnavailable (503), not a redirect to
        it. `content_type` / `content_disposition` become S3's response overrides, so the
        client gets the file's type and name rather than the chunk object's. The URL
        names CAIRN_S3_ENDPOINT (or AWS): clients must be able to reach it."""
        if await self.size(sha256) is None:
            raise BlobNotFound(sha256)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_of(sha256)}
        if content_type:
            params["ResponseContentType"] = content_type
        if content_disposition:
            params["ResponseContentDisposition"] = content_disposition
        client = await self.client()
        try:
            url: str = await client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires
            )
        except (BotoCoreError, ClientError) as e:
            raise self._unavailable(e, "presign") from e
        return url

    # -- reading -----------------------------------------------------------------------

    async def size(self, sha256: str) -> int | None:
        if not is_sha256(sha256):
            return None
        client = await self.client()
        try:
            head = await client.head_object(Bucket=self.bucket, Key=self.key_of(sha256))
        except ClientError as e:
            if _status(e) == 404 or _code(e) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise self._unavailable(e, "HEAD") from e
        except BotoCoreError as e:
            raise self._unavailable(e, "HEAD") from e
        return int(head["ContentLength"])

    async def exists(self, sha256: str) -> bool:
        return await self.size(sha256) is not None

    async def open_range(
        self, sha256: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream bytes [offset, offset+length) of one blob with ranged GETs.

        Lazy like any async generator: BlobNotFound / ValueError (bad range) surface on the
        first iteration. A whole-blob read is verified against the name (BlobCorrupt).
        No HEAD first: the first GET's Content-Range says the blob's size, against which
        the range is checked before any byte is yielded (one round trip per chunk saved)."""
        if not is_sha256(sha256):
            raise BlobNotFound(sha256)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"negative offset/length for blob {sha256}")
        piece = (
            self.options.range_bytes if length is None else min(length, self.options.range_bytes)
        )
        first = await self._open_get(sha256, offset, offset + piece) if piece > 0 else None
        if first is None:
            # Nothing to read (length 0), or the range starts at or past the end (416):
            # only the size can tell an empty range at the end from a bad one.
            size = await self.size(sha256)
            if size is None:
                raise BlobNotFound(sha256)
            check_range(sha256, size, offset, length)
            if length == 0 or offset == size:
                return
            raise BlobStoreUnavailable(f"S3 GET of blob {sha256} refused a valid range")
        body, size = first
        try:
            n = check_range(sha256, size, offset, length)
        except BaseException:
            body.close()
            raise
        hasher = hashlib.sha256() if (offset == 0 and n == size) else None
        pos, end = offset, offset + n
        held: bytes | None = None
        opened: Any = body
        while pos < end:
            upto = min(end, pos + self.options.range_bytes)
            async for data in self._get(sha256, pos, upto, opened):
                pos += len(data)
                if hasher is not None:
                    await asyncio.to_thread(hasher.update, data)
                if held is not None:
                    metrics.BLOB_READ_BYTES.inc(len(held))
                    yield held
                held = data
            opened = None
        if hasher is not None and hasher.hexdigest() != sha256:
            raise BlobCorrupt(sha256, hasher.hexdigest())
        if held is not None:
            metrics.BLOB_READ_BYTES.inc(len(held))
            yield held

    async def _open_get(self, sha256: str, start: int, end: int) -> tuple[Any, int] | None:
        """GET bytes [start, end) (S3 clamps `end` to the size); return the streaming body
        and the blob's size from Content-Range, or None when S3 answers 416 (start at or
        past the end)."""
        client = await self.client()
        try:
            resp = await client.get_object(
                Bucket=self.bucket, Key=self.key_of(sha256), Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as e:
            if _status(e) == 404 or _code(e) in {"NoSuchKey", "404"}:
                raise BlobNotFound(sha256) from None
            if _status(e) == 416 or _code(e) == "InvalidRange":
                return None
            raise self._unavailable(e, "GET") from e
        except BotoCoreError as e:
            raise self._unavailable(e, "GET") from e
        content_range = str(resp.get("ContentRange") or "")
        total = content_range.rpartition("/")[2]
        if not total.isdigit():
            resp["Body"].close()
            raise BlobStoreUnavailable(
                f"S3 answered a ranged GET without a size: {content_range!r}"
            )
        return resp["Body"], int(total)

    async def _get(
        self, sha256: str, start: int, end: int, opened: Any = None
    ) -> AsyncIterator[bytes]:
        """Bytes [start, end) in pieces of up to READ_PIECE (from `opened`, a body already
        positioned at `start`, if given), resuming after a read timeout or a cut connection
        from the first byte not yet received. botocore retries the request itself; this
        retries the *body*, which botocore cannot.

        A consumer that takes no next piece for CAIRN_S3_READ_TIMEOUT (a client that
        stopped reading) gets the connection taken back: the body is closed, returning its
        pool slot (CAIRN_S3_POOL_SIZE), and the next piece, if ever asked for, comes from a
        new GET at the first byte not yet yielded. Before, such downloads held their
        connections for as long as their clients stayed connected, and a pool's worth of
        them stopped every other S3 request."""
        loop = asyncio.get_running_loop()
        pos = start
        failures = 0
        while pos < end:
            if opened is not None:
                body, opened = opened, None
            else:
                got = await self._open_get(sha256, pos, end)
                if got is None:  # the blob shrank under us: it cannot, it is immutable
                    raise BlobStoreUnavailable(f"S3 GET of blob {sha256} refused a valid range")
                body = got[0]
            released: list[bool] = []

            def release(body: Any = body, released: list[bool] = released) -> None:
                released.append(True)
                body.close()

            try:
                while pos < end:
                    data = await _read_piece(body, min(READ_PIECE, end - pos))
                    if not data:
                        raise IncompleteReadError(actual_bytes=pos - start, expected_bytes=end)
                    pos += len(data)
                    failures = 0
                    idle = loop.call_later(self.options.read_timeout, release)
                    try:
                        yield data
                    finally:
                        idle.cancel()
                    if released:
                        break  # the consumer paused: GET the rest anew
            except (TimeoutError, HTTPClientError, IncompleteReadError, ClientPayloadError) as e:
                # A connection the server closed mid-body surfaces as aiohttp's
                # ClientPayloadError (aiobotocore wraps only timeouts and connection
                # errors): the same cut as a timeout, resumed from the next byte.
                failures += 1
                if failures >= self.options.max_attempts:
                    raise self._unavailable(e, "GET body") from e
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))
            finally:
                body.close()

    async def iter_blobs(self) -> AsyncIterator[tuple[str, int, float]]:
        """Every stored chunk as (sha256, size, stored at), one ListObjectsV2 page (1000
        keys) at a time; "stored at" is LastModified moved onto Cairn's clock
        (`_to_our_clock`)."""
        client = await self.client()
        prefix = f"{self.prefix}chunks/"
        paginator = client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                ours = self._to_our_clock(page)
                for obj in page.get("Contents", ()):
                    name = str(obj["Key"])[len(prefix) :]
                    if is_sha256(name):
                        yield name, int(obj["Size"]), ours(obj["LastModified"].timestamp())
        except (BotoCoreError, ClientError) as e:
            raise self._unavailable(e, "LIST") from e

    # -- deleting and the rest -----------------------------------------------------------

    async def delete(self, sha256: str) -> None:
        """Remove the blob; a missing (or malformed) digest is fine."""
        if not is_sha256(sha256):
            return
        client = await self.client()
        try:
            await client.delete_object(Bucket=self.bucket, Key=self.key_of(sha256))
        except (BotoCoreError, ClientError) as e:
            raise self._unavailable(e, "DELETE") from e

    async def delete_many(self, shas: Sequence[str], *, stored_before: float) -> dict[str, int]:
        """DeleteObjects in batches of 1000. Each batch is re-checked first (`_stat_many`:
        one listing page and HEADs for what it did not reach): a key rewritten since
        `stored_before` (on Cairn's clock) is kept. Returns {sha256: size} of what S3
        reported deleted."""
        wanted = sorted({s for s in shas if is_sha256(s)})
        client = await self.client()
        freed: dict[str, int] = {}
        for i in range(0, len(wanted), DELETE_BATCH):
            batch = wanted[i : i + DELETE_BATCH]
            current = await self._stat_many(batch)
            old = [s for s in batch if s in current and current[s][1] < stored_before]
            if not old:
                continue
            try:
                resp = await client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self.key_of(s)} for s in old], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as e:
                raise self._unavailable(e, "DeleteObjects") from e
            failed = {str(err.get("Key", "")) for err in resp.get("Errors", ())}
            for s in old:
                if self.key_of(s) not in failed:
                    freed[s] = current[s][0]
        return freed

    def _to_our_clock(self, resp: Any) -> Callable[[float], float]:
        """Moves the S3 times of one response (LastModified) onto Cairn's clock.

        The grace is a difference of two times; LastModified is on S3's clock and the
        collector's "now" on Cairn's. With S3's clock behind Cairn's by more than the
        grace, a chunk PUT a moment ago (its StoreChunk still in flight, nothing
        references it) looked older than the grace and was collected: an acknowledged
        upload lost its bytes. Refusing to collect past some skew would leave a skewed
        install with no collection at all, so instead every age is judged on S3's clock:
        the skew is measured in the very response that carries LastModified, as Cairn's
        time now minus the response's `Date` (S3's time when it answered), and added.
        Both errors of that measure make a blob look younger, never older: `Date` is
        truncated to the second (S3's real "now" is at or after it) and Cairn's time is
        read after the answer arrived (latency). A response without a usable `Date`
        gives no S3 "now" at all: its blobs count as stored just now (not collected this
        run), and that is logged, once."""
        date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        ours = self.clock()
        try:
            skew = ours - email.utils.parsedate_to_datetime(str(date)).timestamp()
        except (TypeError, ValueError):
            if not self._skew_warned:
                self._skew_warned = True
                log.warning(
                    "S3 answered without a Date header: blob ages cannot be judged, nothing"
                    " is collected",
                    endpoint=self.options.endpoint or "AWS S3",
                )
            return lambda _at: ours
        if abs(skew) > SKEW_WARN_SECONDS and not self._skew_warned:
            self._skew_warned = True
            log.warning(
                "S3's clock differs from Cairn's; blob ages are judged on S3's clock",
                endpoint=self.options.endpoint or "AWS S3",
                skew_seconds=round(skew, 1),
            )
        return lambda at: at + skew

    async def _stat_many(self, shas: list[str]) -> dict[str, tuple[int, float]]:
        """(size, stored at on Cairn's clock) of those of the sorted `shas` that exist.

        The work is bounded by the number of keys, never by the bucket: at most one
        listing page from the first key (which settles every key up to the last one it
        lists, all of them when the keys are dense), then a HEAD, STAT_CONCURRENCY at a
        time, for each key past that page. Listing on to the last key instead walked,
        for sparse keys (sha256 names are uniform), nearly every object in the bucket."""
        client = await self.client()
        found: dict[str, tuple[int, float]] = {}
        rest = shas
        if len(shas) >= STAT_LIST_FROM:
            prefix = f"{self.prefix}chunks/"
            try:
                page = await client.list_objects_v2(
                    Bucket=self.bucket,
                    Prefix=prefix,
                    StartAfter=self.key_of(shas[0])[:-1],  # just before the first key
                    MaxKeys=DELETE_BATCH,
                )
            except (BotoCoreError, ClientError) as e:
                raise self._unavailable(e, "LIST") from e
            ours = self._to_our_clock(page)
            wanted = set(shas)
            last = ""
            for obj in page.get("Contents", ()):
                last = str(obj["Key"])[len(prefix) :]
                if last in wanted:
                    found[last] = (int(obj["Size"]), ours(obj["LastModified"].timestamp()))
            if not page.get("IsTruncated"):
                return found  # the listing reached the end: the rest do not exist
            rest = [s for s in shas if s > last]
        gate = asyncio.Semaphore(STAT_CONCURRENCY)

        async def head(s: str) -> None:
            async with gate:
                try:
                    h = await client.head_object(Bucket=self.bucket, Key=self.key_of(s))
                except ClientError as e:
                    if _status(e) == 404:
                        return
                    raise self._unavailable(e, "HEAD") from e
                except BotoCoreError as e:
                    raise self._unavailable(e, "HEAD") from e
                found[s] = (
                    int(h["ContentLength"]),
                    self._to_our_clock(h)(h["LastModified"].timestamp()),
                )

        # Every HEAD ends (each is bounded by the client's timeouts) before a failure is
        # raised: none is left running unawaited.
        results = await asyncio.gather(*(head(s) for s in rest), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return found

    async def ping(self) -> None:
        """Raise BlobStoreUnavailable (naming the setting) unless the bucket answers.

        Within one connect and read timeout in all: the API pings at start, and against an
        endpoint that accepts connections but never answers, every retry waited its read
        timeout (with the defaults, over two minutes before the start failed)."""
        o = self.options
        bound = o.connect_timeout + o.read_timeout
        try:
            async with asyncio.timeout(bound):
                client = await self.client()
                await client.head_bucket(Bucket=self.bucket)
        except TimeoutError as e:
            where = o.endpoint or "AWS S3"
            raise BlobStoreUnavailable(
                f"S3 endpoint {where} did not answer within {bound:g} s (CAIRN_S3_ENDPOINT)",
                reason="S3 endpoint not answering (CAIRN_S3_ENDPOINT)",
            ) from e
        except (BotoCoreError, ClientError) as e:
            raise self._unavailable(e, "head bucket") from e


def _bounded_pool_wait(seconds: float) -> Any:
    """aiobotocore's HTTP session with a bound on waiting for a pooled connection.

    aiobotocore gives aiohttp only socket timeouts (connect, read), and aiohttp's wait for
    a free connection of the pool (CAIRN_S3_POOL_SIZE) is bounded by its `connect`
    timeout alone, which was unset: with every connection held by a download whose client
    stopped reading (its ranged GET open mid-body), every other S3 request (uploads, HEADs,
    new downloads) waited forever. Now such a wait ends after `seconds` as a connect
    timeout (BlobStoreUnavailable, 503)."""

    class BoundedPoolWait(AIOHTTPSession):  # type: ignore[misc]  # untyped library
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            t: ClientTimeout = getattr(self, "_timeout")  # noqa: B009  # set by super()
            self._timeout = ClientTimeout(
                sock_connect=t.sock_connect, sock_read=t.sock_read, connect=seconds
            )

    return BoundedPoolWait


async def _read_piece(body: Any, want: int) -> bytes:
    """Up to `want` bytes from a streaming body, gathered (aiohttp hands out ~64 KiB)."""
    parts: list[bytes] = []
    got = 0
    while got < want:
        data = await body.read(want - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _SpoolFile(io.FileIO):
    """The spool file, unbuffered, stamping when the PUT last read from it (the
    watchdog in `_put_file` judges progress by it)."""

    last_read = 0.0

    def read(self, size: int | None = -1) -> bytes:
        self.last_read = time.monotonic()
        return super().read(size)

    def readinto(self, buffer: Any) -> int | None:
        self.last_read = time.monotonic()
        return super().readinto(buffer)


class _Part(io.RawIOBase):
    """Bytes [start, start+length) of the spool file as a file of their own, read with
    pread (the spool file's own position is left alone), stamping when the upload last
    read from it (the watchdog in `_watched`); seekable, so botocore can rewind it for a
    retry."""

    last_read = 0.0

    def __init__(self, fd: int, start: int, length: int) -> None:
        super().__init__()
        self._fd, self._start, self._length, self._pos = fd, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        self.last_read = time.monotonic()
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        data = os.pread(self._fd, want, self._start + self._pos)
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        self._pos += n
        return n


def _hash_part(fd: int, start: int, length: int) -> bytes:
    """The sha256 of bytes [start, start+length) of a file, read in HASH_READ pieces."""
    hasher = hashlib.sha256()
    pos, end = start, start + length
    while pos < end:
        data = os.pread(fd, min(HASH_READ, end - pos), pos)
        if not data:
            raise OSError(f"spool file ended at {pos}, before {end}")
        hasher.update(data)
        pos += len(data)
    return hasher.digest()


def _write_all(f: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = f.write(view)
        view = view[n:]


async def _discard(inflight: asyncio.Future[None] | None, f: Any, path: Path) -> None:
    """Close and remove a spool file, after its in-flight write has finished."""
    if inflight is not None:
        with contextlib.suppress(BaseException):
            await inflight
    await asyncio.to_thread(_remove_spool, f, path)


async def _close_opened(opening: asyncio.Future[tuple[Any, Path]]) -> None:
    try:
        f, path = await opening
    except BaseException:  # nothing was created
        return
    await asyncio.to_thread(_remove_spool, f, path)


def _remove_spool(f: Any, path: Path) -> None:
    with contextlib.suppress(Exception):
        f.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
