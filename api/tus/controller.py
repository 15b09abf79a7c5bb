"""tus 1.0 resumable uploads (https://tus.io/protocols/resumable-upload), over the upload
aggregate's "stream" and "final" modes.

Extensions: creation, creation-with-upload, creation-defer-length, expiration, checksum
(sha1, sha256, sha512, md5), checksum-trailer, termination, concatenation. ASGI has no way
to hand request trailers to an application, so the API server runs uvicorn with a protocol
subclass that collects them into a scope extension (api/http/trailers.py); under another
server a trailer-announced PATCH answers 400 missing_checksum_trailer and keeps nothing.

The tus upload id (the last segment of Location) is the Cairn upload id: the native API's
GET /v1/uploads/{id} shows the same upload, with its file_id once complete.

This module says what each request does; the rest lives beside it: the wire format
(api/tus/protocol.py), how bytes are cut into pieces (api/tus/pieces.py), and how a body is
stored and appended (api/tus/appender.py).

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
Its bucket is checked again first: gone since the creation (deleted, or deleted and made
again by another user), the request answers 404 bucket_not_found and the upload stays
incomplete with its bytes (a creation: with its Location), as the native `complete`
leaves it; once its owner makes the bucket again, an empty PATCH at its length (or the
native `complete`) finishes it.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import replace
from typing import Any

from litestar import Controller, Request, Response, delete, head, patch, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from api.auth import Principal, provide_principal
from api.bucket_access import check_writable
from api.completion import finish_upload
from api.context import AppContext, ctx, now, parse_uuid
from api.errors import ApiError, api_error
from api.http import objheaders
from api.http.digits import ascii_int
from api.limits import QuotaHold, limiter, more_bytes_held, quota_reserved, received_kept
from api.openapi import BODY_IN_FLIGHT, SECURED, TOO_LARGE, raw_body
from api.tus import pieces as piece_sizes
from api.tus.appender import Fresh, append_body
from api.tus.pieces import PIECE, max_size
from api.tus.protocol import (
    OFFSET_STREAM,
    PATH,
    content_type,
    empty_answer,
    encode_metadata,
    expires_at,
    http_date,
    id_from_url,
    media_type,
    not_found,
    parse_checksum,
    parse_int,
    parse_metadata,
    state_headers,
    tus_error,
    tus_middleware,
    upload_url,
)
from bus.actors.commandbus import BusUnavailable, CommandResult
from bus.blobs.sniff import type_from_head
from bus.config.logs import get_logger
from bus.ids import uuid4_str
from domain import policies
from domain.commands import AbortUpload, DeclareLength, ExpireUpload, InitiateUpload
from domain.errors import DomainError, NotFound
from domain.events import RecordedEvent
from domain.registry import AGGREGATES
from domain.uploads import LIVE, UploadState, UploadStatus
from projections.usage import bucket_went

log = get_logger(__name__)


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
    id (after checking the caller may write to its bucket). Metadata keys naming one of an
    object's stored headers (`cache-control`, `content-encoding`, ...) are those headers,
    not user metadata (objheaders.split_tus_metadata; 400 invalid_header as a PUT's)."""
    upload_id = uuid4_str()
    headers, metadata = objheaders.split_tus_metadata(metadata)
    await check_writable(c, metadata.get("bucket") or None, principal.user)
    return InitiateUpload(
        aggregate_id=upload_id,
        caller=principal.user,
        at=now(),
        file_name=metadata.get("filename") or upload_id,
        chunk_size=PIECE,
        content_type=content_type(metadata),
        bucket=metadata.get("bucket") or "default",
        metadata=metadata,
        key=metadata.get("key") or None,
        headers=headers,
        **upload,
    )


async def _bucket_still_there(c: AppContext, cmd: InitiateUpload) -> bool:
    """Is the bucket `cmd` names still one its caller may write (see `_finish_if_full`)?"""
    try:
        await check_writable(c, cmd.bucket, cmd.caller)
    except NotFound:
        return False
    return True


async def _send_initiation(
    c: AppContext, request: Request[Any, Any, Any], cmd: InitiateUpload
) -> CommandResult:
    try:
        return await c.send(request, cmd)
    except DomainError as e:
        raise tus_error(e) from None


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
        raise not_found(upload_id)
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
    if state.status != UploadStatus.COMPLETED:
        # Checked at creation, but the bucket may have gone since (deleted, or its name
        # taken by someone else): then no file is made, as with the native `complete`
        # (404 bucket_not_found). The upload stays, with its bytes.
        await check_writable(c, state.bucket, state.owner)
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
        responses=BODY_IN_FLIGHT
        | TOO_LARGE
        | {
            404: ResponseSpec(
                None,
                description="bucket_not_found: the `bucket` of Upload-Metadata is not one of"
                " the caller's; or it went while the upload completed (creation-with-upload,"
                " a final concatenation): then the upload exists (Location), incomplete",
            )
        },
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
        length = parse_int(length_h, "Upload-Length") if length_h is not None else None
        if length is not None and length > max_size(s):
            raise ApiError(
                413,
                "upload_too_large",
                "Upload-Length exceeds the maximum upload size",
                {"max_upload_bytes": max_size(s)},
                {"Tus-Max-Size": str(max_size(s))},
            )
        with_body = media_type(request) == OFFSET_STREAM and (
            request.headers.get("content-length", "0").strip() not in ("", "0")
            or "chunked" in (request.headers.get("transfer-encoding") or "").lower()
        )
        # Checked before anything is created: a bad header must not leave an upload behind.
        checksum = parse_checksum(request.headers.get("upload-checksum")) if with_body else None
        body = ascii_int(request.headers.get("content-length", "").strip())
        if with_body and length is not None and body is not None and body > length:
            raise ApiError(
                413,
                "length_exceeded",
                "the body goes past the upload's length",
                {"offset": 0, "length": length, "body": body},
            )
        # Without a length, a body that says its size (Content-Length) past the maximum is
        # refused here too, before the upload exists (it would be refused at its first byte).
        if with_body and length is None and body is not None and body > max_size(s):
            raise ApiError(
                413,
                "upload_too_large",
                "the body exceeds the maximum upload size",
                {"max_upload_bytes": max_size(s), "body": body},
                {"Tus-Max-Size": str(max_size(s))},
            )
        # A body holds an in-flight slot (api/limits.py) from before the upload exists: a
        # 429 leaves nothing behind.
        slot = (
            limiter(request).hold(None, principal.user) if with_body else contextlib.nullcontext()
        )
        # The declared length is reserved until the upload is recorded (api/limits.py); a
        # deferred one is checked when declared (PATCH). Without a length, the body's own
        # size when it says it (so a body past the quota is refused before the upload
        # exists, as PATCH does).
        sized = body if with_body and length is None and body is not None else 0
        async with quota_reserved(c, principal.user, length or sized) as hold:
            # Without a length, the body may bring at most what is left of the quota.
            cap = None if length is not None or hold.remaining is None else hold.remaining + sized
            with slot:
                return await self._create_stream(
                    request, principal, metadata, length, partial, with_body, checksum, cap, hold
                )

    async def _create_stream(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        metadata: dict[str, str],
        length: int | None,
        partial: bool,
        with_body: bool,
        checksum: tuple[str, bytes] | None,
        quota_cap: int | None = None,
        hold: QuotaHold | None = None,
    ) -> Response[Any]:
        """A stream upload, created; with a body (creation-with-upload) its first bytes
        appended (at most `quota_cap` of them, when given), or all of a small file's bytes
        created with it. `hold`: the creation's quota hold, which keeps the bytes appended
        without a length until the read model counts them (its event counts no size)."""
        c = ctx(request)
        s = c.settings
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
            if with_body and hold is not None:
                # From now on the upload counts what it has (its length, or its bytes as
                # they come): the creation's hold counts only the rest, not the same bytes
                # again while the body is read.
                await hold.bind(upload_id)

        file_created = False
        recorded: UploadState | None = None

        async def create(pieces: list[dict[str, Any]], digest: str | None, head: bytes) -> None:
            nonlocal created, file_created, recorded
            if digest is not None and not partial and await _bucket_still_there(c, cmd):
                # Completed by the same command, and (given the type the bytes show) the
                # file follows in the actor's same step: see domain.policies.follow_ups.
                # The type comes from the body's first bytes, kept on the way in: these
                # pieces are all of the file.
                kind = type_from_head(
                    head, sum(int(p["size"]) for p in pieces), cmd.file_name, cmd.content_type
                )
                whole_cmd = policies.initiate_complete(cmd, pieces, digest, kind)
            else:
                # (A bucket gone while the body came: created with its bytes, not completed;
                # `_finish_if_full` below says why.)
                whole_cmd = replace(cmd, pieces=pieces)
            done = await _send_initiation(c, request, whole_cmd)
            created = True
            file_created = done.followed_by(policies.file_command_id(upload_id))
            recorded = _created_state(done)

        try:
            if whole:
                await append_body(c, request, principal, Fresh(upload_id, length), checksum, create)
            elif with_body:
                state = await c.load("uploads", f"upload-{upload_id}")
                kept = (
                    received_kept(hold, upload_id)
                    if hold is not None and length is None
                    else contextlib.nullcontext()
                )
                # Its bytes held as they come, against the upload from now on.
                grow = (
                    functools.partial(hold.cover, most=quota_cap, completing=upload_id)
                    if hold is not None and length is None and quota_cap is not None
                    else None
                )
                async with kept:
                    await append_body(
                        c, request, principal, state, checksum, quota_cap=quota_cap, grow=grow
                    )
            state = await _finish_if_full(c, request, principal, upload_id, file_created, recorded)
        except (ApiError, DomainError) as e:
            if not created:
                raise
            # The upload exists: say where, so the client can resume (or complete) it.
            err = e if isinstance(e, ApiError) else api_error(e)
            err.headers = {**err.headers, "Location": location}
            raise err from None
        assert state is not None
        headers = {"Location": location, **state_headers(state, s.upload_ttl)}
        return empty_answer(201, headers)

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
        ids = [id_from_url(u) for u in urls]
        manifest: list[dict[str, Any]] = []
        parts: dict[str, UploadState] = {}  # by id: a part named twice is one upload
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
            if part.status not in LIVE or (exp is not None and now() >= exp):
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
            parts[part_id] = part
        size = sum(int(p["size"]) for p in manifest)
        declared = request.headers.get("upload-length")
        if declared is not None and parse_int(declared, "Upload-Length") != size:
            raise ApiError(
                400, "invalid_length", "Upload-Length differs from the parts' total", {"size": size}
            )
        if size > max_size(s) or len(manifest) > piece_sizes.MAX_PIECES:
            raise ApiError(
                413,
                "upload_too_large",
                "the concatenation exceeds the maximum upload size",
                {
                    "max_upload_bytes": max_size(s),
                    "size": size,
                    "max_pieces": piece_sizes.MAX_PIECES,
                },
            )
        # A new file of `size` bytes, of which its parts' bytes may count already (active
        # uploads that no other final holds): only the rest is asked of the quota, and from
        # its initiation on the final counts them, the parts no more (storage_used). So a
        # parallel upload needs no room twice, and a second final of the same parts asks
        # for all of its size: a second file. Held until the final is recorded.
        async with quota_reserved(c, principal.user, size, parts=list(parts)):
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
                # The final upload exists: say where (a bucket gone meanwhile: complete it
                # once the bucket is back, or terminate it).
                refusal = tus_error(e)
                err = refusal if isinstance(refusal, ApiError) else api_error(refusal)
                err.headers = {**err.headers, "Location": location}
                raise err from None
        assert state is not None
        headers = {"Location": location, **state_headers(state, s.upload_ttl)}
        return empty_answer(201, headers)

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
        headers = state_headers(state, c.settings.upload_ttl)
        if state.file_size is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(state.file_size)
        if state.metadata or state.headers:
            # What the creation sent: its stored headers were keys of its metadata too.
            headers["Upload-Metadata"] = encode_metadata({**state.metadata, **state.headers})
        if state.partial:
            headers["Upload-Concat"] = "partial"
        elif state.mode == "final":
            urls = " ".join(upload_url(request, p) for p in state.parts)
            headers["Upload-Concat"] = f"final;{urls}"
        return empty_answer(200, headers)

    @patch(
        "/{upload_id:str}",
        status_code=204,
        request_max_body_size=None,
        summary="Append bytes at Upload-Offset (application/offset+octet-stream)",
        operation_class=raw_body(OFFSET_STREAM, "The bytes to append at Upload-Offset"),
        responses=BODY_IN_FLIGHT
        | TOO_LARGE
        | {
            404: ResponseSpec(
                None,
                description="upload_not_found; or bucket_not_found: the bytes completed the"
                " upload but its bucket is gone since its creation (the bytes are kept, the"
                " upload stays incomplete: make the bucket again and PATCH no bytes at its"
                " length, or terminate it)",
            )
        },
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
        if media_type(request) != OFFSET_STREAM:
            raise ApiError(415, "unsupported_media_type", f"PATCH bodies must be {OFFSET_STREAM}")
        state = await _load(c, request, upload_id, principal)
        if state.mode == "final":
            raise ApiError(403, "final_upload", "a final (concatenated) upload takes no bytes")
        offset_h = request.headers.get("upload-offset")
        if offset_h is None:
            raise ApiError(400, "invalid_header", "Upload-Offset is required")
        offset = parse_int(offset_h, "Upload-Offset")
        checksum = parse_checksum(request.headers.get("upload-checksum"))
        length_h = request.headers.get("upload-length")
        length = parse_int(length_h, "Upload-Length") if length_h is not None else None
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
        # Its bucket deleted since it began: it holds only what it received, not its
        # length (projections.usage.WENT), so more bytes must fit the quota again, as a
        # native chunk's do.
        went = c.settings.quota_for(state.owner) > 0 and await bucket_went(
            c.pool, state.id, state.bucket
        )
        if length is not None and state.file_size is None:
            body = ascii_int((request.headers.get("content-length") or "").strip())
            # (A length short of the offset is the domain's 400, below.)
            if body is not None and state.offset <= length < state.offset + body:
                raise ApiError(
                    413,
                    "length_exceeded",
                    "the body goes past the upload's length",
                    {"offset": state.offset, "length": length, "body": body},
                )
            # The length is reserved with its check, as a creation's is (what of it does
            # not count yet, beside everything else: 413 quota_exceeded, nothing declared),
            # and held until the uploads read model has it: two uploads of one owner
            # declaring their lengths at once are judged one after the other.
            async with quota_reserved(c, state.owner, length, completing=state.id) as hold:
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
                    raise tus_error(e) from None
                if not went:  # (else its length never counts: held below as it grows)
                    await hold.keep()
            reloaded = await c.load("uploads", f"upload-{state.id}")
            assert reloaded is not None
            state = reloaded

        # Into an upload whose bucket went: its whole length must fit beside everything
        # else (413 before a byte of the body is read; what it has is kept), and is held
        # while the body comes, then what it received until the read model has it.
        more = (
            more_bytes_held(c, state.owner, state.id, state.file_size)
            if went and state.file_size is not None
            else contextlib.nullcontext()
        )
        # The same in-flight limits as native chunk PUTs (429).
        async with more:
            with limiter(request).hold(state.id, principal.user):
                if state.file_size is None:
                    # No length yet, so nothing of this upload was checked against the quota:
                    # the body may bring at most what is left of its owner's (the caller may
                    # be an admin), held as it comes (its declared size at once), so that
                    # one owner's bodies in flight are judged against each other.
                    declared = ascii_int((request.headers.get("content-length") or "").strip())
                    # What it then has stays held until the read model counts it.
                    async with quota_reserved(
                        c, state.owner, state.offset + (declared or 0), completing=state.id
                    ) as hold:
                        cap = None if hold.remaining is None else hold.remaining + (declared or 0)
                        grow = (
                            functools.partial(hold.cover, most=state.offset + cap)
                            if cap is not None
                            else None
                        )
                        async with received_kept(hold, state.id):
                            new_offset = await append_body(
                                c, request, principal, state, checksum, quota_cap=cap, grow=grow
                            )
                else:
                    new_offset = await append_body(c, request, principal, state, checksum)
        final = await _finish_if_full(c, request, principal, state.id)
        headers = {"Upload-Offset": str(new_offset)}
        if final is not None:
            exp = expires_at(final, s.upload_ttl)
            if exp is not None:
                headers["Upload-Expires"] = http_date(exp)
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
            raise tus_error(e) from None
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
