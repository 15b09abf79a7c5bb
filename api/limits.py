"""Limits on the upload path: request bodies in flight (429) and storage quotas (413).

In flight. Every request that brings file bytes (a chunk PUT, a tus PATCH, a tus creation
with bytes, an object PUT) holds a slot from before its body is read until its answer: at
most CAIRN_MAX_INFLIGHT_PER_UPLOAD per upload (chunk PUTs and PATCHes, which name one),
CAIRN_MAX_INFLIGHT_PER_USER per user and CAIRN_MAX_INFLIGHT in total per API process.
Over any limit the request is refused at once with 429 and Retry-After, before a byte of
its body is read, so a flood of PUTs costs neither memory nor disk. The per-user limit
keeps one user from taking every slot: before it, one user's 256 bodies sent a byte now
and then held the process's slots, and everyone else's uploads were 429 meanwhile. The
counters live in the process (one event loop): taking and returning a slot never awaits,
so no lock is needed.

Quotas. CAIRN_QUOTA_BYTES per owner (0 = unlimited), overridden per user by CAIRN_QUOTAS.
Usage = bytes of the owner's live files + bytes declared by their active uploads (received,
for one whose bucket was deleted since it began: projections.usage.WENT). It is
read from the read models, with two corrections for their lag: uploads initiated so
recently that the uploads projection has not seen them are taken from the tail of the event
store, and an upload completed a moment ago counts until its file appears (so bytes are
neither missed nor counted twice around a completion). Every request that adds bytes (a
native or tus create, an object PUT, a tus length declared, bytes into an upload whose
bucket went: `more_bytes_held`) reserves them with its check (`quota_reserved`,
projections.usage.reserve: one owner's checks one at a time, across API processes; the
creates and object PUTs that arrive meanwhile in one process in batches, as if one by one:
api/quota_batches.py), so concurrent requests of one owner cannot all pass before any is
recorded. An object PUT
replaces what its key holds: it asks only for what it adds to the key (its size minus the
largest of the key's live size and the other puts on their way to it), and one that adds
nothing always passes. A body without a
length (an object PUT sent chunked, a tus body before Upload-Length) reads at most what is
left of the quota (`body_past_quota` past it), and holds its bytes as they come, before
they are taken (QuotaHold.cover: its hold grown under the owner's lock, a step ahead), so
one owner's bodies in flight are judged against each other and not each against what was
left when it began: those going past what the others hold are 413 (a tus upload keeps
what was durable; an object PUT leaves nothing). An object PUT's hold becomes its size
once its body has ended. A tus creation's hold is for its upload once that is recorded
(QuotaHold.bind), before its body is read, so the body's bytes count once as they come,
not in the hold and again in the upload. A hold of no bytes goes with its request (kept,
it would count nothing). Whoever writes (an admin too), the bytes count against the
upload's or bucket's owner, whose quota decides. A create or chunk that would go over is
413 `quota_exceeded` with {quota, used, requested}.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

from litestar import Request

from api.context import AppContext, ctx, parse_uuid
from api.errors import ApiError
from api.idempotency import Handler
from api.quota_batches import reserve_batched
from projections.usage import (
    QUOTA_EXCEEDED,
    bucket_went,
    keep,
    over_quota,
    release,
    reserve,
    storage_used,
)

RETRY_AFTER = "1"


class InflightLimiter:
    """Counts bodies in flight, per upload, per user and in total."""

    def __init__(self, per_upload: int, total: int, per_user: int = 0) -> None:
        self.per_upload = per_upload
        self.per_user = per_user
        self.total = total
        self.in_flight = 0
        self.by_upload: dict[str, int] = {}
        self.by_user: dict[str, int] = {}

    @contextmanager
    def hold(self, upload_id: str | None, user: str) -> Iterator[None]:
        """A slot for a body of `user`, to `upload_id` (None: a request that names no
        existing upload, an object PUT or a tus creation, counted per user and in total)."""
        n = self.by_upload.get(upload_id, 0) if upload_id is not None else 0
        mine = self.by_user.get(user, 0)
        if self.total > 0 and self.in_flight >= self.total:
            raise _too_many("global", self.total)
        if self.per_user > 0 and mine >= self.per_user:
            raise _too_many("user", self.per_user)
        if self.per_upload > 0 and n >= self.per_upload:
            raise _too_many("upload", self.per_upload)
        self.in_flight += 1
        if upload_id is not None:
            self.by_upload[upload_id] = n + 1
        self.by_user[user] = mine + 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if upload_id is not None:
                give_back(self.by_upload, upload_id)  # bounded by what is in flight
            give_back(self.by_user, user)


def give_back(counts: dict[str, int], key: str) -> None:
    """One fewer held by `key`; a key that holds none is dropped (the dict stays as small
    as what is held)."""
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


def _too_many(scope: str, limit: int) -> ApiError:
    return ApiError(
        429,
        "too_many_requests",
        "too many uploads in flight; retry shortly",
        {"scope": scope, "limit": limit},
        {"Retry-After": RETRY_AFTER},
    )


def limiter(request: Request[Any, Any, Any]) -> InflightLimiter:
    """The process's limiter, made on first use (no await in between: no race)."""
    state = request.app.state
    found: InflightLimiter | None = getattr(state, "cairn_inflight", None)
    if found is None:
        s = ctx(request).settings
        found = InflightLimiter(s.max_inflight_per_upload, s.max_inflight, s.max_inflight_per_user)
        state.cairn_inflight = found
    return found


def inflight_limited(fn: Handler) -> Handler:
    """Take an in-flight slot for the upload named by `upload_id`, of the caller, before
    anything else."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request: Request[Any, Any, Any] = kwargs["request"]
        # Counted by the canonical id: the path takes any spelling of a UUID (upper case,
        # no hyphens, braces, urn:uuid:), and each spelling must not be a fresh count.
        upload_id = parse_uuid(str(kwargs["upload_id"]), "upload_not_found", "upload")
        with limiter(request).hold(upload_id, kwargs["principal"].user):
            return await fn(*args, **kwargs)

    return wrapper


# ---- quotas ---------------------------------------------------------------------------


async def check_quota(
    c: AppContext, owner: str, requested: int, exclude_upload: str | None = None
) -> None:
    """Raise 413 quota_exceeded if `requested` more bytes would take `owner` over quota."""
    quota = c.settings.quota_for(owner)
    if quota <= 0:
        return
    used = await storage_used(c.store, owner, exclude_upload)
    if (details := over_quota(quota, used, requested)) is not None:
        raise ApiError(413, "quota_exceeded", QUOTA_EXCEEDED, dict(details))


def body_past_quota(allowed: int, **details: int) -> ApiError:
    """413 for a body without a length that went past what the quota left it (`allowed`
    bytes): an object PUT sent chunked, a tus body before Upload-Length."""
    return ApiError(413, "quota_exceeded", QUOTA_EXCEEDED, {**details, "allowed": allowed})


# A body without a length holds what it brings as it comes (QuotaHold.cover), its hold
# grown ahead of its bytes by this much at least, or an eighth of what it holds: a long
# body takes its owner's lock a few dozen times, not once per read.
GROWTH_STEP = 64 * 1024


class QuotaHold:
    """Bytes of an owner's quota reserved for one request (none when there is no quota)."""

    def __init__(
        self,
        c: AppContext,
        owner: str,
        quota: int,
        target: str | None = None,
        completing: str | None = None,
    ) -> None:
        self.c, self.owner, self.quota, self.target = c, owner, quota, target
        self.completing = completing  # the upload its bytes go to (see reserve)
        self.id: str | None = None
        self.held = 0  # the bytes its reservation holds
        self.remaining: int | None = None  # what is left of the quota beside this hold
        self.file_id: str | None = None  # set by a request that made a file: see release
        # Set by a put to `target` once applied: the object's stream version it left.
        self.version: int | None = None
        # Set by a completion once recorded: its hold stays, and counts until the read
        # model has the upload completed (projections.usage.storage_used).
        self.kept = False

    async def keep(self, size: int | None = None, upload: str | None = None) -> None:
        """The bytes now count through an upload's event, which the read model may not have
        yet (a hold with `completing`, or for `upload`): the hold stays, as `size` bytes
        (None: as it is), and counts only what of them the upload's row does not count yet
        (nothing once it does: projections.usage.keep)."""
        if self.id is None:
            return
        if size is not None:
            await asyncio.shield(keep(self.c.pool, self.id, size, upload))
            self.held = size
        self.kept = True

    async def bind(self, upload: str) -> None:
        """The upload its bytes go to exists now (a tus creation's, recorded before its body
        is read): the hold is for it from now on (`completing`), as big as it is, and
        counts only what of it the upload's row (or event) does not count yet, so that a
        byte appended to the upload counts there and no more here, at every moment: a
        declared length at once, a body without one as its bytes come. No check: the hold
        counts less, never more. (Unlocked: a check reading the holds meanwhile sees it as
        one or the other, or, between its two reads, both: never neither.)"""
        if self.id is None:
            return
        await asyncio.shield(keep(self.c.pool, self.id, self.held, upload))
        self.completing = upload

    async def resize(
        self, size: int, at_least: int | None = None, completing: str | None = None
    ) -> None:
        """The request's bytes are `size` after all (a body without a length, ended), or
        may grow to it (`cover`): reserve that instead, or else `at_least` if given, or
        413 with nothing more reserved. `completing`: the upload they go to from now on (a
        tus creation's, once it exists): the hold counts what of them its row does not."""
        if self.id is None:
            return
        if completing is not None:
            self.completing = completing
        details = None
        for n in dict.fromkeys((size, size if at_least is None else at_least)):
            _, details, _ = await reserve(
                self.c.store,
                self.owner,
                self.quota,
                n,
                resize=self.id,
                target=self.target,
                completing=self.completing,
            )
            if details is None:
                self.held = n
                return
        raise ApiError(413, "quota_exceeded", QUOTA_EXCEEDED, dict(details or {}))

    async def cover(self, size: int, most: int, completing: str | None = None) -> None:
        """A body without a length has brought the request to `size` bytes (what its hold
        counts: an object PUT's body, a tus upload's offset), at most `most` (its limit,
        which refuses the body past it): hold them before they are taken, so that one
        owner's bodies in flight are judged against each other as they come, not each
        against what was left when it began. Grown ahead (GROWTH_STEP), or by just what
        came when that does not fit; 413 quota_exceeded when that does not either (the
        hold stays as it was)."""
        if self.id is None or size <= self.held or size > most:
            return
        ahead = min(most, max(size, self.held + max(GROWTH_STEP, self.held // 8)))
        await self.resize(ahead, at_least=size, completing=completing)


@asynccontextmanager
async def quota_reserved(
    c: AppContext,
    owner: str,
    requested: int,
    exclude_upload: str | None = None,
    parts: Sequence[str] = (),
    target: str | None = None,
    completing: str | None = None,
) -> AsyncIterator[QuotaHold]:
    """Check `requested` more bytes against `owner`'s quota and hold them until the block
    ends (413 quota_exceeded if they would go over); `parts`: a concatenation's, whose
    bytes that count already are not asked again; `target`: the object an object PUT
    replaces, whose key's bytes are not asked again (`remaining` counts them in);
    `completing`: an upload being completed, asked only what of it does not count now. See
    projections.usage.reserve."""
    hold = QuotaHold(c, owner, c.settings.quota_for(owner), target, completing)
    if hold.quota <= 0:
        yield hold
        return
    if exclude_upload is None and not parts and completing is None:
        # A create or an object PUT: decided with the owner's others (api/quota_batches.py).
        rid, details, used = await reserve_batched(c.store, owner, hold.quota, requested, target)
    else:
        rid, details, used = await reserve(
            c.store,
            owner,
            hold.quota,
            requested,
            exclude_upload,
            parts=parts,
            target=target,
            completing=completing,
        )
    if details is not None or rid is None:
        raise ApiError(413, "quota_exceeded", QUOTA_EXCEEDED, dict(details or {}))
    hold.id, hold.remaining = rid, max(0, hold.quota - used - requested)
    hold.held = requested
    try:
        yield hold
    finally:
        # Shielded: a request cancelled by its client's going still gives its bytes back
        # (else they would count until the reservation expires). A hold of no bytes (a
        # zero-byte upload, object or length) goes whatever the request did: kept, or
        # left for a file or a version, it would count nothing, a row every later check
        # of the owner's passes over until one of them deletes it.
        if hold.held == 0:
            await asyncio.shield(release(c.pool, rid))
        elif not hold.kept:
            await asyncio.shield(release(c.pool, rid, hold.file_id, hold.version))


@asynccontextmanager
async def more_bytes_held(
    c: AppContext, owner: str, upload_id: str, size: int
) -> AsyncIterator[QuotaHold]:
    """Bytes into an upload that holds only what it received (its bucket went since it began:
    projections.usage.WENT): its whole `size` must fit beside everything else (413
    quota_exceeded before the body, nothing held), and is held while they come, so that
    two such requests of one owner are judged one after the other, each seeing the
    other's bytes. After, however the request ends, the hold keeps what the upload then
    has until the uploads read model counts it (`received_kept`)."""
    async with (
        quota_reserved(c, owner, size, completing=upload_id) as hold,
        received_kept(hold, upload_id),
    ):
        yield hold


@asynccontextmanager
async def received_kept(hold: QuotaHold, upload_id: str) -> AsyncIterator[None]:
    """However the block ends (bytes appended to the upload in it, or some of them), the
    hold then keeps what the upload has (its bytes received, read from its stream) until
    the uploads read model counts it: released at once, the bytes would count nowhere in
    the read model's lag, and a request just after could take their room again."""
    try:
        yield
    finally:
        if hold.id is not None:
            await asyncio.shield(_keep_received(hold, upload_id))


async def _keep_received(hold: QuotaHold, upload_id: str) -> None:
    state = await hold.c.load("uploads", f"upload-{upload_id}")
    await hold.keep(int(state.bytes_received), upload_id)


def quota_checked(kind: Literal["create", "chunk"]) -> Callable[[Handler], Handler]:
    """Check the quota before the handler runs (for a chunk: before its body is read).

    A create asks for its declared size, held until the upload is initiated. A chunk
    belongs to an upload whose size already counts, so it asks for that upload's size
    against everything else; it only trips when the quota was lowered, or the owner's usage
    grew by other ways, since the create. Unless the upload's bucket went since it began:
    then it counts only what it received, each chunk adds to that, and the check holds its
    size (more_bytes_held), or two such chunks of one owner could both pass and go over."""

    def decorate(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request: Request[Any, Any, Any] = kwargs["request"]
            principal = kwargs["principal"]
            c = ctx(request)
            s = c.settings
            # The owner's quota decides, not the caller's (an admin writing into another
            # user's upload): a create's owner is its caller; a chunk's, its upload's.
            if s.quota_for(principal.user) > 0 or (kind == "chunk" and s.any_quota):
                if kind == "create":
                    size = kwargs["data"].file_size
                    # Malformed or over the size limit: the handler's own answer is clearer.
                    if (
                        isinstance(size, int)
                        and not isinstance(size, bool)
                        and 0 <= size <= c.settings.max_upload_bytes
                    ):
                        # Held until the upload is initiated: it then counts by its event.
                        async with quota_reserved(c, principal.user, size):
                            return await fn(*args, **kwargs)
                else:
                    upload_id = parse_uuid(kwargs["upload_id"], "upload_not_found", "upload")
                    shape = await c.upload_shape(upload_id, principal)
                    if s.quota_for(shape.owner) <= 0:
                        return await fn(*args, **kwargs)
                    if await bucket_went(c.pool, upload_id, shape.bucket):
                        # Its bytes count as they come: held, see more_bytes_held.
                        async with more_bytes_held(c, shape.owner, upload_id, shape.file_size):
                            return await fn(*args, **kwargs)
                    await check_quota(c, shape.owner, shape.file_size, upload_id)
            return await fn(*args, **kwargs)

        return wrapper

    return decorate
