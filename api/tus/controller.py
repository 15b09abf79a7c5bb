"""tus 1.0 resumable uploads (https://tus.io/protocols/resumable-upload), over the upload
aggregate's "stream" and "final" modes.

Extensions: creation, creation-with-upload, creation-defer-length, expiration, checksum
(sha1, sha256, sha512, md5), checksum-trailer, termination, concatenation. ASGI has no way
to hand request trailers to an application, so the API server runs uvicorn with a protocol
subclass that collects them into a scope extension (api/http/trailers.py); under another
server a trailer-announced PATCH answers 400 missing_checksum_trailer and keeps nothing.

The tus upload id (the last segment of Location) is the Cairn upload id: the native API's
GET /v1/uploads/{id} shows the same upload, with its file_id once complete.

Bytes: a PATCH body is cut into pieces as it arrives; each full piece becomes a durable
content-addressed blob at once, and the pieces are appended to the upload (AppendBytes,
checked against the upload's offset by the domain) in batches: once a second has passed or
5 % of the length has gathered since the last batch (one batch in flight at a time, so
never an event per TCP read), at the end of the body, and when the client goes away
mid-body (the partial tail too). So a PATCH cut off mid-body keeps every byte the server
got, and the next HEAD reports them. With Upload-Checksum nothing may be kept before the
whole body is verified: the pieces are still stored as they arrive, but appended only
after the digest matched (on a mismatch they are left to the blob collector, unreferenced).

Piece sizes: an upload holds at most MAX_PIECES pieces (its manifest travels in single bus
messages), so pieces grow with the offset where they start: CAIRN_TUS_PIECE_BYTES (8 MiB by
default, at least 1 MiB) until offset / PIECE_GROWTH is larger, up to MAX_PIECE (64 MiB,
reached at 128 GiB). At most about 25,000 pieces then reach 1 TiB, leaving room for the
short tail piece each PATCH may end with, and Tus-Max-Size is CAIRN_MAX_UPLOAD_BYTES (1 TiB
by default). A piece is held in memory while it fills (at most two per PATCH: one filling,
one being stored). The piece size trades that memory against fsyncs: every piece costs a
file and a directory fsync (bus/blobs/local.py), so 1 MiB pieces made a 1 GiB upload wait
for about 2,000 fsyncs, 8 MiB pieces for about 250.

Two PATCHes racing on one upload both append at the offset they were given; the domain
accepts the first and refuses the other (409): each request appends its pieces strictly in
order, and stops at its first refusal, so the bytes never interleave.

A small file whole in its creation request (creation-with-upload, Content-Length ==
Upload-Length, at most one piece): its bytes are made durable first and one InitiateUpload
carries them and its completion (domain: initiate + bytes + complete in one decision, by
the same rules), so the upload costs one command instead of three, then the file follows
as below. Cut short or refused by its checksum, it is created with what was kept (or
empty), exactly as if it had been created first.

Completion: when an upload reaches its length (end of a PATCH, creation with length 0, a
final concatenation) it is finished into a file right away (api/completion.py), exactly as the
native API's `complete` does; the files handler does the same if this process dies first.
The file's sha256 comes from the running digest of the bytes as they arrived
(api/running_digests.py) when every byte came through this process in order; otherwise (a PATCH
served by another process, a restart, a final concatenation) the stored bytes are hashed.

Locations: without CAIRN_TRUST_PROXY the Location is a path (tus allows relative URLs), so
nothing a client controls (Host, X-Forwarded-*) ends up in it; with it, an absolute URL
from Forwarded / X-Forwarded-Host / X-Forwarded-Proto.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import re
import time
import unicodedata
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, Request, Response, delete, head, patch, post
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import InternalServerException
from litestar.params import FromPath
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api import running_digests
from api.auth import Principal, provide_principal
from api.bucket_access import check_writable
from api.completion import MAX_MANIFEST_ENTRIES, finish_upload
from api.context import AppContext, ctx, now, parse_uuid
from api.errors import ApiError, error_response
from api.http.forwarded import origin
from api.http.trailers import TRAILERS_EXTENSION
from api.limits import check_quota, limiter
from api.openapi import SECURED, raw_body
from api.tus.piece_feed import PieceFeed
from bus.actors.commandbus import BusUnavailable, CommandResult
from bus.blobs.sniff import SNIFF_BYTES, type_from_head
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.ids import uuid4_str
from domain import policies
from domain.commands import AbortUpload, AppendBytes, DeclareLength, ExpireUpload, InitiateUpload
from domain.errors import DomainError
from domain.events import RecordedEvent
from domain.registry import AGGREGATES
from domain.uploads import ACTIVE, UploadState, UploadStatus

log = get_logger(__name__)

TUS_VERSION = "1.0.0"
_VERSION = TUS_VERSION.encode()
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "checksum-trailer",
    "termination",
    "concatenation",
)
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
}
OFFSET_STREAM = "application/offset+octet-stream"
PATH = "/v1/tus"

# Pieces: made durable as soon as they are full; their size grows with the offset (above).
PIECE = 1024 * 1024
MAX_PIECE = 64 * PIECE
PIECE_GROWTH = 2000
# Progress throttling: append what is durable at most about once a second, or per this
# fraction of the upload's length, whichever comes first.
COMMIT_INTERVAL = 1.0
COMMIT_FRACTION = 0.05
# Pieces per AppendBytes: keeps one command (and its event) far below the bus's message
# size limit, even for one big checksummed PATCH appended at its end.
MAX_PIECES_PER_COMMIT = 2048
# Pieces of one request being made durable at once (fsyncs in flight): the next piece is
# hashed and written while the previous is fsynced; more would only queue on the disk.
MAX_STORING = 2
# A file's manifest travels whole in single bus messages (UploadCompleted, CreateFile,
# FileCreated, and a final upload's InitiateUpload), which must stay under the producer's
# request size limit (4 MiB, about 45k pieces of ~90 bytes): past it a command fails and an
# event would stall the relay. So an upload holds at most this many pieces.
MAX_PIECES = MAX_MANIFEST_ENTRIES


def piece_at(offset: int, base: int = PIECE) -> int:
    """The size of a piece that starts at `offset` into its upload: at least `base`
    (CAIRN_TUS_PIECE_BYTES), growing with the offset, at most MAX_PIECE."""
    grown = -(-(offset // PIECE_GROWTH) // PIECE) * PIECE  # offset / PIECE_GROWTH, in MiB
    return min(max(base, grown), MAX_PIECE)


def pieces_between(start: int, end: int, base: int = PIECE) -> int:
    """How many full-size pieces cover bytes [start, end) of an upload (the last may be
    short)."""
    n = 0
    while start < end:
        start += piece_at(start, base)
        n += 1
    return n


@functools.cache
def reach(max_pieces: int, base: int = PIECE) -> int:
    """The most bytes a tus upload can hold: three quarters of its pieces full-size (about
    1.4 TiB), the rest left for the short tail piece each PATCH may end with."""
    position = 0
    for _ in range(max_pieces * 3 // 4):
        position += piece_at(position, base)
    return position


_DIGITS = re.compile(r"[0-9]{1,19}")
_UPLOAD_PATH = re.compile(r".*/v1/tus/([^/]+)/?")


# ---- protocol headers ----------------------------------------------------------------


def tus_middleware(app: ASGIApp) -> ASGIApp:
    """`Tus-Resumable` on every answer, 412 for a request speaking another version, and
    the OPTIONS (discovery) answer.

    Runs inside the route's exception handler, so error answers get the header too."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = str(scope.get("method"))

        async def send_tus(message: Message) -> None:
            if message["type"] == "http.response.start":
                hdrs = [h for h in message.get("headers", []) if h[0].lower() != b"tus-resumable"]
                hdrs.append((b"tus-resumable", _VERSION))
                message["headers"] = hdrs
            await send(message)

        if method == "OPTIONS":
            # Discovery, answered here: clients ask it before they know which version to
            # speak, and Litestar's automatic OPTIONS handler shadows a controller's own.
            settings = scope["litestar_app"].state.cairn.settings
            response: Response[Any] = Response(
                None, status_code=204, headers=_discovery_headers(settings)
            )
        elif next((v for k, v in scope["headers"] if k == b"tus-resumable"), None) != _VERSION:
            response = error_response(
                Request(scope, receive),
                412,
                "unsupported_tus_version",
                f"this server speaks tus {TUS_VERSION} (send Tus-Resumable: {TUS_VERSION})",
                {"supported": [TUS_VERSION]},
                {"Tus-Version": TUS_VERSION},
            )
        else:
            await app(scope, receive, send_tus)
            return
        # (For HEAD, the server drops the error's body.)
        asgi = response.to_asgi_response(app=None, request=Request(scope, receive))
        await asgi(scope, receive, send_tus)

    return middleware


def max_size(settings: Settings) -> int:
    """The largest tus upload: CAIRN_MAX_UPLOAD_BYTES, within the manifest's limit (which
    the default 1 TiB is well within)."""
    return min(settings.max_upload_bytes, reach(MAX_PIECES, settings.tus_piece_bytes))


def _discovery_headers(settings: Settings) -> dict[str, str]:
    return {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": ",".join(EXTENSIONS),
        "Tus-Max-Size": str(max_size(settings)),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
    }


def parse_metadata(value: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64(value)` pairs, the value optional.

    Values are decoded as UTF-8; a key without a value maps to "". Raises ApiError(400)."""
    out: dict[str, str] = {}
    if value is None or not value.strip():
        return out
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, encoded = item.partition(" ")
        encoded = encoded.strip()
        if not key or any(c.isspace() or unicodedata.category(c) == "Cc" for c in key):
            raise ApiError(400, "invalid_metadata", "Upload-Metadata has an invalid key")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8") if encoded else ""
        except (binascii.Error, ValueError):
            raise ApiError(
                400,
                "invalid_metadata",
                "Upload-Metadata values must be base64 of UTF-8 text",
                {"key": key[:100]},
            ) from None
        out[key] = decoded
    return out


_MEDIA_TYPE = re.compile(r"[!-~][ -~]{0,254}")


def _content_type(metadata: dict[str, str]) -> str:
    """`filetype` becomes the file's Content-Type when served: visible ASCII only."""
    value = metadata.get("filetype") or "application/octet-stream"
    if not _MEDIA_TYPE.fullmatch(value):
        raise ApiError(400, "invalid_metadata", "filetype must be a media type (printable ASCII)")
    return value


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items()
    )


def _parse_int(value: str, header: str) -> int:
    value = value.strip()
    if not _DIGITS.fullmatch(value):
        raise ApiError(400, "invalid_header", f"{header} must be a non-negative integer")
    return int(value)


async def _initiate(
    c: AppContext,
    request: Request[Any, Any, Any],
    principal: Principal,
    metadata: dict[str, str],
    **upload: Any,
) -> str:
    """Create a stream or final upload named by its tus metadata; return its id."""
    cmd = await _initiation(c, principal, metadata, **upload)
    await _send_initiation(c, request, cmd)
    return cmd.aggregate_id


async def _initiation(
    c: AppContext, principal: Principal, metadata: dict[str, str], **upload: Any
) -> InitiateUpload:
    """The command creating a stream or final upload named by its tus metadata, under a new
    id (after checking the caller may write to its bucket)."""
    upload_id = uuid4_str()
    await check_writable(c, metadata.get("bucket") or None, principal.user)
    return InitiateUpload(
        aggregate_id=upload_id,
        caller=principal.user,
        at=now(),
        file_name=metadata.get("filename") or upload_id,
        chunk_size=PIECE,
        content_type=_content_type(metadata),
        bucket=metadata.get("bucket") or "default",
        metadata=metadata,
        key=metadata.get("key") or None,
        **upload,
    )


async def _send_initiation(
    c: AppContext, request: Request[Any, Any, Any], cmd: InitiateUpload
) -> CommandResult:
    try:
        return await c.send(request, cmd)
    except DomainError as e:
        raise _tus_error(e) from None


def _trailer(request: Request[Any, Any, Any], name: str) -> str | None:
    """A request trailer field (see api/http/trailers.py), or None."""
    extensions: dict[Any, Any] = dict(request.scope.get("extensions") or {})
    fields: list[tuple[bytes, bytes]] = list(extensions.get(TRAILERS_EXTENSION) or [])
    for key, value in fields:
        if key.decode("latin-1").lower() == name:
            return str(value.decode("latin-1"))
    return None


def _parse_checksum(value: str | None) -> tuple[str, bytes] | None:
    """`Upload-Checksum: <algorithm> <base64 digest>`; 400 for anything unknown or bent."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUMS:
        raise ApiError(
            400,
            "unsupported_checksum_algorithm",
            f"unsupported checksum algorithm {algorithm[:32]!r}",
            {"supported": list(CHECKSUMS)},
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_checksum", "Upload-Checksum must be base64") from None
    if len(digest) != CHECKSUMS[algorithm]().digest_size:
        raise ApiError(400, "invalid_checksum", f"not a {algorithm} digest")
    return algorithm, digest


def _media_type(request: Request[Any, Any, Any]) -> str:
    return (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()


# ---- URLs ------------------------------------------------------------------------------


def upload_url(request: Request[Any, Any, Any], upload_id: str) -> str:
    root = str(request.scope.get("root_path") or "")
    path = f"{root}{PATH}/{upload_id}"
    if not ctx(request).settings.trust_proxy:
        return path
    base = origin(request, trust_proxy=True)
    return f"{base}{path}" if base else path


def _id_from_url(url: str) -> str:
    m = _UPLOAD_PATH.fullmatch(urlsplit(url.strip()).path)
    if not m:
        raise ApiError(
            400, "invalid_concat", "Upload-Concat names something that is not a tus upload URL"
        )
    try:
        return str(uuid.UUID(m.group(1)))
    except ValueError:
        raise ApiError(
            400, "invalid_concat_part", "a part is not a partial upload of yours", {"part": url}
        ) from None


# ---- upload state ----------------------------------------------------------------------


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def expires_at(state: UploadState, ttl: float) -> datetime | None:
    """When an unfinished upload expires: its last activity plus the TTL."""
    if state.status not in ACTIVE or state.mode == "final":
        return None
    return _aware(state.updated_at) + timedelta(seconds=ttl)


def _http_date(t: datetime) -> str:
    return format_datetime(t.astimezone(UTC), usegmt=True)


def _not_found(upload_id: str) -> ApiError:
    return ApiError(404, "upload_not_found", "no such upload", {"id": upload_id})


def _tus_error(e: DomainError) -> DomainError | ApiError:
    """A domain refusal in tus terms: a terminated upload is gone from the protocol's view
    (404), an expired or failed one is 410, bytes past the length are 413. Anything else
    keeps the one mapping of api/errors.py."""
    if e.code == "upload_not_active":
        status = e.details.get("status")
        if status == UploadStatus.ABORTED.value:
            return ApiError(404, "upload_not_found", "the upload was terminated", e.details)
        if status in (UploadStatus.EXPIRED.value, UploadStatus.FAILED.value):
            return ApiError(410, "upload_gone", e.message, e.details)
    if e.code == "length_exceeded":
        return ApiError(413, e.code, e.message, e.details)
    return e


async def _load(
    c: AppContext, request: Request[Any, Any, Any], raw_id: str, principal: Principal
) -> UploadState:
    """The caller's tus upload, or 404 / 410 as the protocol wants them.

    An upload idle for longer than the TTL answers 410 even before the expiry sweeper got
    to it; it is expired here and now (the same idempotent command the sweeper sends)."""
    upload_id = parse_uuid(raw_id, "upload_not_found", "upload")
    state: UploadState | None = await c.load("uploads", f"upload-{upload_id}")
    if (
        state is None
        or (state.owner != principal.user and not principal.admin)
        or state.mode == "chunks"  # a native upload is no tus resource
        or state.status == UploadStatus.ABORTED
    ):
        raise _not_found(upload_id)
    if state.status in (UploadStatus.EXPIRED, UploadStatus.FAILED):
        raise ApiError(410, "upload_gone", f"the upload is {state.status.value.lower()}")
    exp = expires_at(state, c.settings.upload_ttl)
    if exp is not None and now() >= exp:
        with contextlib.suppress(DomainError, BusUnavailable):
            await c.send(
                request,
                ExpireUpload(
                    aggregate_id=upload_id,
                    caller=state.owner,
                    admin=principal.admin,
                    at=now(),
                    idle_before=state.updated_at,
                ),
            )
        raise ApiError(410, "upload_expired", "the upload has expired", {"expired_at": str(exp)})
    return state


def _state_headers(state: UploadState, ttl: float) -> dict[str, str]:
    headers = {"Upload-Offset": str(state.offset), "Cache-Control": "no-store"}
    exp = expires_at(state, ttl)
    if exp is not None:
        headers["Upload-Expires"] = _http_date(exp)
    return headers


# ---- bytes -----------------------------------------------------------------------------


class ChecksumMismatch(Exception):
    pass


class BodyTooLarge(Exception):
    pass


class TooManyPieces(Exception):
    pass


class ClientGone(Exception):
    pass


@dataclass(frozen=True)
class Fresh:
    """What an Appender needs of an upload that its first append creates (see Appender)."""

    id: str
    file_size: int | None
    offset: int = 0
    pieces: tuple[tuple[str, int], ...] = ()


# Creates the upload with these durable pieces; with a digest (theirs: all its bytes), done;
# the bytes are the body's first (up to SNIFF_BYTES), to tell the file's type without
# reading it back.
Creation = Callable[[list[dict[str, Any]], str | None, bytes], Awaitable[None]]


async def _until_end(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    """A piece's reads as the body delivers them; None ends the piece."""
    while (part := await queue.get()) is not None:
        yield part


class Appender:
    """One request body, appended to one stream upload at the offset the client named.

    Two pipelines overlap with reading the body off the socket, each strictly ordered and
    at most one step deep (so memory stays at about two pieces):

    - pieces are made durable in body order (`storing`, at most MAX_STORING at once). A
      piece streams into the blob store while it arrives (`streaming`: its reads go to the
      store's hashing and writing threads as they come, so only the last batch, the fsyncs
      and the rename remain once its last byte is in), unless the previous piece is still
      going through the hashes: then its reads are held (`parts`) until it has, since the
      checksum and the running digest must see the pieces in order
      (api/tus/piece_feed.py). So piece N+1 is hashed and written while piece N is
      fsynced, and pieces join `pending` in body order whatever order they finish in;
    - durable pieces are appended one batch after another (`committing`), each AppendBytes
      at the offset where the previous one ended. A command's round trip is much slower
      than a socket read, so appends run in the background; pieces that become durable
      meanwhile wait for the next batch.

    The domain's offset check makes a concurrent writer's append, or ours, fail as a
    whole; a request stops at its first refusal (raised at its next step).

    With `create` (creation-with-upload of a whole small file, see TusController.create)
    the upload does not exist yet: pieces are held back (like with a checksum) and the
    first append is the creation itself, `create(pieces, digest, head)`: one InitiateUpload that
    carries them, and with `digest` (the running sha256, when they are all the upload's
    bytes) its completion too."""

    def __init__(
        self,
        c: AppContext,
        request: Request[Any, Any, Any],
        principal: Principal,
        state: UploadState | Fresh,
        *,
        limit: int,
        checksum: tuple[str, bytes] | None,
        trailer: bool = False,
        create: Creation | None = None,
    ) -> None:
        self.c = c
        # checksum-trailer: the algorithm and digest come after the body, so pieces are kept
        # back (like a checksum header) and verified by re-reading them at the end.
        self.trailer = trailer
        self.request = request
        self.principal = principal
        self.upload_id = state.id
        self.length = state.file_size
        self.offset = state.offset  # where the next append goes: the upload's offset
        self.limit = limit  # the most bytes this body may carry
        self.room = MAX_PIECES - len(state.pieces)  # the most pieces it may add
        self.create = create
        self.hasher = CHECKSUMS[checksum[0]]() if checksum else None
        self.expected = checksum[1] if checksum else b""
        self.received = 0
        # Where the piece now filling starts in the upload, and its size.
        self.position = state.offset
        self.base = c.settings.tus_piece_bytes
        self.piece = piece_at(self.position, self.base)
        # The piece now filling, as the body's reads arrived: never copied into one buffer
        # on the event loop (the blob store writes and hashes them as they are).
        self.parts: list[bytes] = []
        self.filled = 0
        # The piece now filling, once its put has started: its reads go to this queue.
        self.streaming: (
            tuple[asyncio.Queue[bytes | None], asyncio.Future[dict[str, Any]]] | None
        ) = None
        # The latest piece whose put has started: it says when its bytes are all hashed.
        self.piece_feed: PieceFeed | None = None
        self.pending: list[dict[str, Any]] = []  # durable, not yet appended
        self.pending_bytes = 0
        self.storing: list[asyncio.Future[dict[str, Any]]] = []  # ended puts, body order
        self.committing: asyncio.Future[None] | None = None
        self.last_commit = time.monotonic()
        # The upload's running sha256 (api/running_digests.py), carried on from where the
        # last accepted append of this process left it, or started at offset 0; None if
        # neither.
        self.running: Any = running_digests.resume(self.upload_id, state.offset)
        self.snapshots: dict[int, Any] = {}  # a stored piece's end offset -> digest state there
        self.head = b""  # a creation's first bytes (see Creation)

    async def feed(self, data: bytes) -> None:
        if self.received + len(data) > self.limit:
            raise BodyTooLarge
        self.received += len(data)
        if not isinstance(data, bytes):
            data = bytes(data)  # held until stored: it must not change meanwhile
        if self.create is not None and len(self.head) < SNIFF_BYTES:
            self.head += data[: SNIFF_BYTES - len(self.head)]
        pos, n = 0, len(data)
        while pos < n:
            room = self.piece - self.filled
            # Only a read that straddles a piece boundary is cut (copied).
            part = data if pos == 0 and n <= room else data[pos : pos + room]
            self.filled += len(part)
            pos += len(part)
            if self.streaming is not None:
                self.streaming[0].put_nowait(part)
            else:
                self.parts.append(part)
                if self._may_start():
                    self._settle_done()  # a failure surfaces here
                    self._start()
            if self.filled == self.piece:
                await self._end_piece()
                self.position += self.piece
                self.piece = piece_at(self.position, self.base)
        if self.hasher is None and not self.trailer and self.create is None:
            self._settle_done()
            self._reap()
            if self.committing is None and self._due():
                batch = self._take()
                self.committing = asyncio.ensure_future(self._append(batch))

    def _due(self) -> bool:
        if not self.pending:
            return False
        return (
            len(self.pending) >= MAX_PIECES_PER_COMMIT
            or time.monotonic() - self.last_commit >= COMMIT_INTERVAL
            or (self.length is not None and self.pending_bytes >= self.length * COMMIT_FRACTION)
        )

    def _may_start(self) -> bool:
        """May the piece now filling start its put? Once the previous piece is all through
        the hashes, and fewer than MAX_STORING pieces wait to be durable."""
        fed = self.piece_feed is None or self.piece_feed.fed.done()
        return fed and len(self.storing) < MAX_STORING

    async def _ready(self) -> None:
        """Wait until the piece now filling may start its put (see `_may_start`)."""
        self._settle_done()
        if self.piece_feed is not None and not self.piece_feed.fed.done():
            # The previous piece's put is the last one ended; if it fails before its
            # bytes are all hashed, `fed` never comes: wait for either.
            last = self.storing[-1]
            await asyncio.wait({self.piece_feed.fed, last}, return_when=asyncio.FIRST_COMPLETED)
            if last.done():
                last.result()  # its failure surfaces here
        while len(self.storing) >= MAX_STORING:
            await self._settle_one()

    def _start(self) -> None:
        """Start the put of the piece now filling, with the reads held so far (see
        `_may_start`)."""
        assert self.streaming is None
        if self.room <= 0:
            raise TooManyPieces
        self.room -= 1
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for part in self.parts:
            queue.put_nowait(part)
        self.parts = []
        # The checksum and the running digest are fed by the store's threads as it hashes
        # and writes the piece; `feed` tells when they have all of it (see `_may_start`).
        # A failed put leaves them ahead of what is stored, but then the request fails,
        # and nothing of theirs is used.
        self.piece_feed = PieceFeed(self.hasher, self.running)
        task = asyncio.ensure_future(self._put(queue, self.position, self.piece_feed))
        self.streaming = (queue, task)

    async def _end_piece(self) -> None:
        """The piece now filling has all its bytes (full, or the body's tail): end its put,
        after starting it if it was held back; it joins the pieces being stored."""
        if self.streaming is None:
            await self._ready()
            self._start()
        assert self.streaming is not None and self.piece_feed is not None
        (queue, task), self.streaming = self.streaming, None
        queue.put_nowait(None)
        self.piece_feed.end(self.filled)
        self.storing.append(task)
        self.filled = 0

    async def _put(
        self, queue: asyncio.Queue[bytes | None], start: int, feed: PieceFeed
    ) -> dict[str, Any]:
        also = feed if feed.feeds else None  # no hash: no thread hop to feed nothing
        digest, size = await self.c.blobs.put_stream(_until_end(queue), also_hash=also)
        # The store fed every byte before it returned, so `fed` has come (with the running
        # digest as it was at this piece's end, whatever later pieces did to it since).
        state = await feed.fed
        if state is not None:
            self.snapshots[start + size] = state
        return {"sha256": digest, "size": size}

    def _pend(self, piece: dict[str, Any]) -> None:
        self.pending.append(piece)
        self.pending_bytes += int(piece["size"])

    def _settle_done(self) -> None:
        """Pieces durable by now, in body order, join the pending ones; a failed put's
        error surfaces here."""
        while self.storing and self.storing[0].done():
            self._pend(self.storing.pop(0).result())

    async def _settle_one(self) -> None:
        """Wait for the oldest piece being stored; once durable it joins the pending ones."""
        await asyncio.wait([self.storing[0]])  # its error, if any, surfaces below
        self._pend(self.storing.pop(0).result())

    async def _settle(self) -> None:
        """Wait for every piece being stored, in body order."""
        while self.storing:
            await self._settle_one()

    async def _store_tail(self) -> None:
        if self.filled:
            await self._end_piece()
        await self._settle()

    def _take(self) -> list[dict[str, Any]]:
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        self.last_commit = time.monotonic()
        return batch

    def _reap(self) -> None:
        """If the append in flight is done, surface its refusal (or failure), if any."""
        if self.committing is not None and self.committing.done():
            task, self.committing = self.committing, None
            task.result()

    async def _drain(self) -> None:
        """Wait for the append in flight; raise its refusal, if any."""
        if self.committing is not None:
            task, self.committing = self.committing, None
            await task

    async def _append(self, pieces: list[dict[str, Any]]) -> None:
        """Append durable pieces, in order, in batches the bus can carry."""
        if self.create is not None:
            await self._create(pieces)
            return
        for i in range(0, len(pieces), MAX_PIECES_PER_COMMIT):
            batch = pieces[i : i + MAX_PIECES_PER_COMMIT]
            await self.c.send(
                self.request,
                AppendBytes(
                    aggregate_id=self.upload_id,
                    caller=self.principal.user,
                    admin=self.principal.admin,
                    at=now(),
                    offset=self.offset,
                    pieces=batch,
                ),
            )
            self.offset += sum(int(p["size"]) for p in batch)
            self._remember()

    async def _create(self, pieces: list[dict[str, Any]]) -> None:
        """The first append of an upload that does not exist yet: its creation (see the
        class docstring). Only small bodies take this way, so `pieces` are few."""
        assert self.create is not None
        create, self.create = self.create, None
        end = self.offset + sum(int(p["size"]) for p in pieces)
        whole = self.length is not None and end == self.length
        snapshot = self.snapshots.get(end)
        await create(
            pieces, snapshot.hexdigest() if whole and snapshot is not None else None, self.head
        )
        self.offset = end
        self._remember()

    async def refused(self) -> None:
        """Nothing of this body may be kept (its checksum did not match): the upload is
        still created, empty, as if its creation had come before the body."""
        if self.create is not None:
            create, self.create = self.create, None
            await create([], None, b"")

    def _remember(self) -> None:
        """An append ending at `self.offset` was accepted: record the running digest there
        and forget the states of pieces before it."""
        snapshot = self.snapshots.pop(self.offset, None)
        for end in [e for e in self.snapshots if e < self.offset]:
            del self.snapshots[end]
        if snapshot is not None:
            running_digests.record(self.upload_id, self.offset, snapshot)

    async def commit(self) -> None:
        """Append everything durable, after the append in flight."""
        await self._drain()
        if self.pending:
            await self._append(self._take())

    async def finish(self) -> None:
        """The whole body arrived: store the tail, verify the checksum, append the rest."""
        await self._store_tail()
        if self.hasher is not None and self.hasher.digest() != self.expected:
            raise ChecksumMismatch
        if self.trailer:
            await self._drain()
            checksum = _parse_checksum(_trailer(self.request, "upload-checksum"))
            if checksum is None:
                raise ApiError(
                    400, "missing_checksum_trailer", "the Upload-Checksum trailer is missing"
                )
            algorithm, expected = checksum
            hasher = CHECKSUMS[algorithm]()
            for piece in self.pending:
                async for data in self.c.blobs.open_range(piece["sha256"]):
                    hasher.update(data)
            if hasher.digest() != expected:
                raise ChecksumMismatch
        await self.commit()

    async def salvage(self) -> None:
        """The body ended early (client gone, or too long): keep what arrived, if allowed.

        With a checksum nothing can be verified, so nothing is kept."""
        if self.hasher is not None or self.trailer:
            await self.refused()
            return
        with contextlib.suppress(TooManyPieces):
            await self._store_tail()
        await self._settle()
        await self.commit()

    async def close(self) -> None:
        """Leave nothing running behind the request. A put cut short leaves an unreferenced
        blob (garbage); an append cut short may still be applied, which only moves the
        offset the client will ask for next."""
        streaming = self.streaming[1] if self.streaming is not None else None
        for task in (streaming, *self.storing, self.committing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self.committing = self.streaming = None
        self.storing = []


async def _append_body(
    c: AppContext,
    request: Request[Any, Any, Any],
    principal: Principal,
    state: UploadState | Fresh,
    checksum: tuple[str, bytes] | None,
    create: Creation | None = None,
) -> int:
    """Stream the request body onto the upload at its current offset; return the new offset.

    Without an Upload-Checksum header, a `Trailer: Upload-Checksum` announcement makes the
    body wait for its checksum in the trailer (checksum-trailer).

    Raises ApiError: 413 past the length (or the maximum size), 460 checksum mismatch, or a
    domain refusal in tus terms (409 another writer won, 404 terminated meanwhile...)."""
    if state.file_size is not None:
        limit = state.file_size - state.offset
    else:
        limit = max_size(c.settings) - state.offset
    declared_h = request.headers.get("content-length")
    declared = int(declared_h) if declared_h and _DIGITS.fullmatch(declared_h.strip()) else None
    if declared is not None and declared > limit:
        raise ApiError(
            413,
            "length_exceeded",
            "the body goes past the upload's length",
            {"offset": state.offset, "length": state.file_size, "body": declared},
        )
    if (
        declared is not None
        and len(state.pieces)
        + pieces_between(state.offset, state.offset + declared, c.settings.tus_piece_bytes)
        > MAX_PIECES
    ):
        raise _too_many_pieces()
    announced = (request.headers.get("trailer") or "").lower()
    trailer = checksum is None and "upload-checksum" in [t.strip() for t in announced.split(",")]
    appender = Appender(
        c, request, principal, state, limit=limit, checksum=checksum, trailer=trailer, create=create
    )
    try:
        try:
            async with contextlib.aclosing(_body(request)) as body:
                async for data in body:
                    await appender.feed(data)
            await appender.finish()
        except ClientGone:
            # Keep what came. Nobody reads this answer; the next HEAD reports the offset.
            await appender.salvage()
            raise ApiError(400, "incomplete_body", "the request body ended early") from None
        except BodyTooLarge:
            await appender.salvage()
            raise ApiError(
                413,
                "length_exceeded",
                "the body goes past the upload's length",
                {"offset": appender.offset, "length": state.file_size},
            ) from None
        except TooManyPieces:
            await appender.salvage()
            raise _too_many_pieces() from None
        except ChecksumMismatch:
            await appender.refused()
            raise ApiError(
                460,
                "checksum_mismatch",
                "the body does not match Upload-Checksum; nothing was kept",
                {"offset": state.offset},
            ) from None
    except DomainError as e:
        raise _tus_error(e) from None
    finally:
        await appender.close()
    return appender.offset


async def _body(request: Request[Any, Any, Any]) -> AsyncGenerator[bytes, None]:
    """The request body as it arrives; ClientGone if the client disconnects mid-body."""
    stream = request.stream()
    while True:
        try:
            data = await anext(stream)
        except StopAsyncIteration:
            return
        except InternalServerException:  # Litestar's word for a client gone mid-body
            raise ClientGone from None
        if data:
            yield data


def _too_many_pieces() -> ApiError:
    return ApiError(
        413,
        "too_many_pieces",
        f"an upload holds at most {MAX_PIECES} pieces: send bigger PATCHes",
        {"max_pieces": MAX_PIECES, "max_piece_bytes": MAX_PIECE},
    )


def _created_state(done: CommandResult) -> UploadState | None:
    """The upload as the command that created it recorded it, from its reply: the events
    of a stream it created are the whole stream. None when it did not (read it then)."""
    if not done.applied or done.events[0].get("version") != 1:
        return None
    state: UploadState | None = AGGREGATES["uploads"].fold(
        RecordedEvent.from_envelope(e) for e in done.events
    )
    return state


async def _finish_if_full(
    c: AppContext,
    request: Request[Any, Any, Any],
    principal: Principal,
    upload_id: str,
    file_created: bool = False,
    known: UploadState | None = None,
) -> UploadState | None:
    """Turn the upload into a file if it has all its bytes (never a partial one).

    `file_created`: the command that completed it had the file follow (nothing to send).
    `known`: the upload as that command recorded it (else it is read from the store)."""
    state: UploadState | None = known or await c.load("uploads", f"upload-{upload_id}")
    if state is None or state.partial or not state.all_received:
        return state
    # The bytes' digest comes from their running digest if they all came through here in
    # order (api/running_digests.py), else from the stored bytes.
    try:
        return await finish_upload(
            c,
            request,
            state,
            caller=principal.user,
            admin=principal.admin,
            file_created=file_created,
        )
    except BusUnavailable as e:
        # The bytes are durable and the files handler completes the upload from its events;
        # the client learns nothing it could act on from a failure here.
        log.warning(
            "upload full but not finished; the handler will", upload=upload_id, error=str(e)
        )
        return state


def _empty(status: int, headers: dict[str, str]) -> Response[bytes]:
    """An answer with no body at all (not JSON `null`), as tus clients expect."""
    return Response(b"", status_code=status, headers=headers, media_type="text/plain")


# ---- the controller --------------------------------------------------------------------


class TusController(Controller):
    path = PATH
    tags = ["uploads (tus)"]
    dependencies = {"principal": Provide(provide_principal)}
    middleware = [tus_middleware]
    security = SECURED

    @post(
        "/",
        status_code=201,
        request_max_body_size=None,
        summary="Create a tus upload (creation, creation-with-upload, defer-length, concatenation)",
        operation_class=raw_body(
            OFFSET_STREAM, "creation-with-upload: the first bytes of the upload", required=False
        ),
    )
    async def create(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> Response[Any]:
        c = ctx(request)
        s = c.settings
        metadata = parse_metadata(request.headers.get("upload-metadata"))
        concat = (request.headers.get("upload-concat") or "").strip()
        partial = concat == "partial"
        if concat and not partial:
            kind, _, urls = concat.partition(";")
            if kind.strip() != "final" or not urls.split():
                raise ApiError(
                    400, "invalid_concat", "Upload-Concat must be `partial` or `final;<urls>`"
                )
            return await self._create_final(request, principal, metadata, urls.split())
        length_h = request.headers.get("upload-length")
        defer_h = request.headers.get("upload-defer-length")
        if (length_h is None) == (defer_h is None):
            raise ApiError(
                400,
                "invalid_length",
                "send exactly one of Upload-Length and Upload-Defer-Length",
            )
        if defer_h is not None and defer_h.strip() != "1":
            raise ApiError(400, "invalid_length", "Upload-Defer-Length must be 1")
        length = _parse_int(length_h, "Upload-Length") if length_h is not None else None
        if length is not None and length > max_size(s):
            raise ApiError(
                413,
                "upload_too_large",
                "Upload-Length exceeds the maximum upload size",
                {"max_upload_bytes": max_size(s)},
                {"Tus-Max-Size": str(max_size(s))},
            )
        if length is not None:
            await check_quota(c, principal.user, length)
        with_body = _media_type(request) == OFFSET_STREAM and (
            request.headers.get("content-length", "0").strip() not in ("", "0")
            or "chunked" in (request.headers.get("transfer-encoding") or "").lower()
        )
        # Checked before anything is created: a bad header must not leave an upload behind.
        checksum = _parse_checksum(request.headers.get("upload-checksum")) if with_body else None
        cmd = await _initiation(
            c, principal, metadata, file_size=length, mode="stream", partial=partial
        )
        upload_id = cmd.aggregate_id
        location = upload_url(request, upload_id)
        # A small file whole in this body: created with its bytes, and completed, by one
        # command (issue 13), once they are durable; else created first, then appended to.
        whole = (
            with_body
            and length is not None
            and length <= s.tus_piece_bytes
            and request.headers.get("content-length", "").strip() == str(length)
        )
        created = not whole
        if created:
            await _send_initiation(c, request, cmd)

        file_created = False
        recorded: UploadState | None = None

        async def create(pieces: list[dict[str, Any]], digest: str | None, head: bytes) -> None:
            nonlocal created, file_created, recorded
            if digest is not None and not partial:
                # Completed by the same command, and (given the type the bytes show) the
                # file follows in the actor's same step: see domain.policies.follow_ups.
                # The type comes from the body's first bytes, kept on the way in: these
                # pieces are all of the file.
                kind = type_from_head(
                    head, sum(int(p["size"]) for p in pieces), cmd.file_name, cmd.content_type
                )
                whole_cmd = policies.initiate_complete(cmd, pieces, digest, kind)
            else:
                whole_cmd = replace(cmd, pieces=pieces)
            done = await _send_initiation(c, request, whole_cmd)
            created = True
            file_created = done.followed_by(policies.file_command_id(upload_id))
            recorded = _created_state(done)

        try:
            if whole:
                await _append_body(
                    c, request, principal, Fresh(upload_id, length), checksum, create
                )
            elif with_body:
                state = await c.load("uploads", f"upload-{upload_id}")
                await _append_body(c, request, principal, state, checksum)
            state = await _finish_if_full(c, request, principal, upload_id, file_created, recorded)
        except ApiError as e:
            # The upload exists: say where, so the client can resume it.
            if created:
                e.headers = {**e.headers, "Location": location}
            raise
        assert state is not None
        headers = {"Location": location, **_state_headers(state, s.upload_ttl)}
        return _empty(201, headers)

    async def _create_final(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        metadata: dict[str, str],
        urls: list[str],
    ) -> Response[Any]:
        """Concatenation: a final upload made of the caller's finished partial uploads.

        No bytes move: its manifest is the parts' pieces, in order."""
        c = ctx(request)
        s = c.settings
        ids = [_id_from_url(u) for u in urls]
        manifest: list[dict[str, Any]] = []
        for part_id in ids:
            part: UploadState | None = await c.load("uploads", f"upload-{part_id}")
            # Someone else's partial is answered like one that does not exist.
            if (
                part is None
                or part.owner != principal.user
                or part.mode != "stream"
                or not part.partial
            ):
                raise ApiError(
                    400,
                    "invalid_concat_part",
                    "a part is not a partial upload of yours",
                    {"part": part_id},
                )
            exp = expires_at(part, s.upload_ttl)
            if part.status not in ACTIVE or (exp is not None and now() >= exp):
                raise ApiError(
                    400,
                    "invalid_concat_part",
                    f"a part is {part.status.value.lower()}",
                    {"part": part_id, "status": part.status.value},
                )
            if not part.all_received:
                raise ApiError(
                    400,
                    "concat_part_unfinished",
                    "a part has not received all its bytes",
                    {"part": part_id, "offset": part.offset, "length": part.file_size},
                )
            manifest.extend(part.manifest())
        size = sum(int(p["size"]) for p in manifest)
        declared = request.headers.get("upload-length")
        if declared is not None and _parse_int(declared, "Upload-Length") != size:
            raise ApiError(
                400, "invalid_length", "Upload-Length differs from the parts' total", {"size": size}
            )
        if size > max_size(s) or len(manifest) > MAX_PIECES:
            raise ApiError(
                413,
                "upload_too_large",
                "the concatenation exceeds the maximum upload size",
                {"max_upload_bytes": max_size(s), "size": size, "max_pieces": MAX_PIECES},
            )
        upload_id = await _initiate(
            c,
            request,
            principal,
            metadata,
            file_size=size,
            mode="final",
            parts=ids,
            manifest=manifest,
        )
        location = upload_url(request, upload_id)
        try:
            state = await _finish_if_full(c, request, principal, upload_id)
        except DomainError as e:
            err = _tus_error(e)
            if isinstance(err, ApiError):
                err.headers = {**err.headers, "Location": location}
            raise err from None
        assert state is not None
        headers = {"Location": location, **_state_headers(state, s.upload_ttl)}
        return _empty(201, headers)

    @head("/{upload_id:str}", summary="A tus upload's offset, length and metadata")
    async def head_upload(
        self,
        request: Request[Any, Any, Any],
        upload_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> Response[None]:
        return await self._head(request, upload_id, principal)

    async def _head(
        self, request: Request[Any, Any, Any], upload_id: str, principal: Principal
    ) -> Response[Any]:
        c = ctx(request)
        state = await _load(c, request, upload_id, principal)
        headers = _state_headers(state, c.settings.upload_ttl)
        if state.file_size is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(state.file_size)
        if state.metadata:
            headers["Upload-Metadata"] = encode_metadata(state.metadata)
        if state.partial:
            headers["Upload-Concat"] = "partial"
        elif state.mode == "final":
            urls = " ".join(upload_url(request, p) for p in state.parts)
            headers["Upload-Concat"] = f"final;{urls}"
        return _empty(200, headers)

    @patch(
        "/{upload_id:str}",
        status_code=204,
        request_max_body_size=None,
        summary="Append bytes at Upload-Offset (application/offset+octet-stream)",
        operation_class=raw_body(OFFSET_STREAM, "The bytes to append at Upload-Offset"),
    )
    async def patch_upload(
        self,
        request: Request[Any, Any, Any],
        upload_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> Response[None]:
        return await self._patch(request, upload_id, principal)

    async def _patch(
        self, request: Request[Any, Any, Any], upload_id: str, principal: Principal
    ) -> Response[None]:
        c = ctx(request)
        s = c.settings
        if _media_type(request) != OFFSET_STREAM:
            raise ApiError(415, "unsupported_media_type", f"PATCH bodies must be {OFFSET_STREAM}")
        state = await _load(c, request, upload_id, principal)
        if state.mode == "final":
            raise ApiError(403, "final_upload", "a final (concatenated) upload takes no bytes")
        offset_h = request.headers.get("upload-offset")
        if offset_h is None:
            raise ApiError(400, "invalid_header", "Upload-Offset is required")
        offset = _parse_int(offset_h, "Upload-Offset")
        checksum = _parse_checksum(request.headers.get("upload-checksum"))
        length_h = request.headers.get("upload-length")
        length = _parse_int(length_h, "Upload-Length") if length_h is not None else None
        # Everything that can refuse comes before anything changes.
        if offset != state.offset:
            raise ApiError(
                409,
                "offset_mismatch",
                f"the upload is at offset {state.offset}",
                {"expected_offset": state.offset, "offset": offset},
            )
        if length is not None and state.file_size is not None and length != state.file_size:
            raise ApiError(400, "invalid_length", "Upload-Length differs from the upload's length")
        if length is not None and state.file_size is None:
            await check_quota(c, principal.user, length, exclude_upload=state.id)
            if length > max_size(s):
                raise ApiError(
                    413,
                    "upload_too_large",
                    "Upload-Length exceeds the maximum upload size",
                    {"max_upload_bytes": max_size(s)},
                )
            try:
                await c.send(
                    request,
                    DeclareLength(
                        aggregate_id=state.id,
                        caller=principal.user,
                        admin=principal.admin,
                        at=now(),
                        file_size=length,
                    ),
                )
            except DomainError as e:
                raise _tus_error(e) from None
            reloaded = await c.load("uploads", f"upload-{state.id}")
            assert reloaded is not None
            state = reloaded
        # The same per-upload and global in-flight limits as native chunk PUTs (429).
        with limiter(request).hold(state.id):
            new_offset = await _append_body(c, request, principal, state, checksum)
        final = await _finish_if_full(c, request, principal, state.id)
        headers = {"Upload-Offset": str(new_offset)}
        if final is not None:
            exp = expires_at(final, s.upload_ttl)
            if exp is not None:
                headers["Upload-Expires"] = _http_date(exp)
        return Response(None, status_code=204, headers=headers)

    @delete("/{upload_id:str}", status_code=204, summary="Terminate a tus upload")
    async def delete_upload(
        self,
        request: Request[Any, Any, Any],
        upload_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> Response[None]:
        return await self._delete(request, upload_id, principal)

    async def _delete(
        self, request: Request[Any, Any, Any], upload_id: str, principal: Principal
    ) -> Response[None]:
        c = ctx(request)
        state = await _load(c, request, upload_id, principal)
        if state.status == UploadStatus.COMPLETED:
            # Terminating a finished upload answers 204 like any other (tus 1.0); its file
            # is a file of its own now and stays (DELETE /v1/files/{id} removes it).
            return Response(None, status_code=204)
        try:
            await c.send(
                request,
                AbortUpload(
                    aggregate_id=state.id, caller=principal.user, admin=principal.admin, at=now()
                ),
            )
        except DomainError as e:
            raise _tus_error(e) from None
        return Response(None, status_code=204)

    @post(
        "/{upload_id:str}",
        request_max_body_size=None,
        summary="X-HTTP-Method-Override: PATCH, DELETE or HEAD through POST",
    )
    async def override(
        self,
        request: Request[Any, Any, Any],
        upload_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        method = (request.headers.get("x-http-method-override") or "").strip().upper()
        if method == "PATCH":
            return await self._patch(request, upload_id, principal)
        if method == "DELETE":
            return await self._delete(request, upload_id, principal)
        if method == "HEAD":
            return await self._head(request, upload_id, principal)
        raise ApiError(
            405,
            "method_not_allowed",
            "POST to an upload needs X-HTTP-Method-Override: PATCH, DELETE or HEAD",
            headers={"Allow": "OPTIONS, HEAD, PATCH, DELETE, POST"},
        )
