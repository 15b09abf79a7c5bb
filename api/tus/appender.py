"""A tus PATCH (or creation-with-upload) body, stored and appended to its upload.

A body is cut into pieces as it arrives (their sizes: api/tus/pieces.py); each full piece
becomes a durable content-addressed blob at once, and the pieces are appended to the upload
(AppendBytes, checked against the upload's offset by the domain) in batches: once a second
has passed or 5 % of the length has gathered since the last batch (one batch in flight at
a time, so never an event per TCP read), at the end of the body, and when the client goes
away mid-body (the partial tail too). So a PATCH cut off mid-body keeps every byte the
server got, and the next HEAD reports them. With Upload-Checksum nothing may be kept before
the whole body is verified: the pieces are still stored as they arrive, but appended only
after the digest matched (on a mismatch they are left to the blob collector, unreferenced).

Two PATCHes racing on one upload both append at the offset they were given; the domain
accepts the first and refuses the other (409): each request appends its pieces strictly in
order, and stops at its first refusal, so the bytes never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.exceptions import InternalServerException

from api import running_digests
from api.auth import Principal
from api.context import AppContext, now
from api.errors import ApiError
from api.http.digits import ascii_int
from api.limits import body_past_quota
from api.tus import pieces as piece_sizes
from api.tus.piece_feed import PieceFeed
from api.tus.pieces import max_size, piece_at, pieces_between, too_many_pieces
from api.tus.protocol import CHECKSUMS, parse_checksum, trailer_field, tus_error
from bus.blobs.sniff import SNIFF_BYTES
from domain.commands import AppendBytes
from domain.errors import DomainError
from domain.uploads import UploadState

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
        self.room = piece_sizes.MAX_PIECES - len(state.pieces)  # the most pieces it may add
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
            checksum = parse_checksum(trailer_field(self.request, "upload-checksum"))
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


async def append_body(
    c: AppContext,
    request: Request[Any, Any, Any],
    principal: Principal,
    state: UploadState | Fresh,
    checksum: tuple[str, bytes] | None,
    create: Creation | None = None,
    quota_cap: int | None = None,
    grow: Callable[[int], Awaitable[None]] | None = None,
) -> int:
    """Stream the request body onto the upload at its current offset; return the new offset.
    `quota_cap`: the most bytes the owner's quota leaves this body (an upload without a
    length yet), past which it is 413 quota_exceeded. `grow`: called with the offset each
    read would bring the upload to, before it is taken; its ApiError (413 quota_exceeded:
    api/limits.QuotaHold.cover) ends the body, what was durable kept.

    Without an Upload-Checksum header, a `Trailer: Upload-Checksum` announcement makes the
    body wait for its checksum in the trailer (checksum-trailer).

    Raises ApiError: 413 past the length (or the maximum size), 460 checksum mismatch, or a
    domain refusal in tus terms (409 another writer won, 404 terminated meanwhile...)."""
    if state.file_size is not None:
        limit = state.file_size - state.offset
    else:
        limit = max_size(c.settings) - state.offset
    by_quota = quota_cap is not None and quota_cap < limit
    if quota_cap is not None:
        limit = min(limit, quota_cap)
    declared_h = request.headers.get("content-length")
    declared = ascii_int(declared_h.strip()) if declared_h else None
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
        > piece_sizes.MAX_PIECES
    ):
        raise too_many_pieces()
    announced = (request.headers.get("trailer") or "").lower()
    trailer = checksum is None and "upload-checksum" in [t.strip() for t in announced.split(",")]
    appender = Appender(
        c, request, principal, state, limit=limit, checksum=checksum, trailer=trailer, create=create
    )
    try:
        try:
            async with contextlib.aclosing(_body(request)) as body:
                async for data in body:
                    if grow is not None:
                        try:
                            await grow(state.offset + appender.received + len(data))
                        except ApiError as e:
                            raise _Refused(e) from None
                    await appender.feed(data)
            await appender.finish()
        except _Refused as e:
            await appender.salvage()
            raise e.error from None
        except ClientGone:
            # Keep what came. Nobody reads this answer; the next HEAD reports the offset.
            await appender.salvage()
            raise ApiError(400, "incomplete_body", "the request body ended early") from None
        except BodyTooLarge:
            await appender.salvage()
            if by_quota:
                raise body_past_quota(limit, offset=appender.offset) from None
            raise ApiError(
                413,
                "length_exceeded",
                "the body goes past the upload's length",
                {"offset": appender.offset, "length": state.file_size},
            ) from None
        except TooManyPieces:
            await appender.salvage()
            raise too_many_pieces() from None
        except ChecksumMismatch:
            await appender.refused()
            raise ApiError(
                460,
                "checksum_mismatch",
                "the body does not match Upload-Checksum; nothing was kept",
                {"offset": state.offset},
            ) from None
    except DomainError as e:
        raise tus_error(e) from None
    finally:
        await appender.close()
    return appender.offset


class _Refused(Exception):
    """A read refused by `append_body`'s `grow`, with its answer."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.code)
        self.error = error


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
