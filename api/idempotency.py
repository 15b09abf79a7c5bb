"""Idempotency-Key for the upload commands, and answering a create for known content at once.

A client that did not get an answer (timeout, dropped connection) resends with the same
`Idempotency-Key` and must not create a second upload. Keys are scoped per caller and
stored in Postgres (`api.idempotency_keys`, bus/store/idempotency.py), so every API
process sees them:

1. Before running, the request *claims* the key: a pending row (unique on (owner, key))
   with a lease that this request renews every few seconds while it runs. A concurrent
   request with the same key finds the live claim and gets 409
   `idempotency_request_in_progress` instead of running a second time. When the holder
   dies, its lease runs out within seconds and the next retry takes the claim over (a
   restarted API process frees its predecessor's claims at once).
2. After a success, the answer (status, exact body bytes, Location) is stored in the row;
   later requests with the same key and the same request get exactly those bytes again
   (`Idempotent-Replayed: true`). The first answer is sent as those same bytes, so a replay
   is byte-identical to it. A refusal that changed nothing (a 4xx) is stored and replayed
   too (with the replaying request's own `request_id`), if the request got as far as its
   key: one refused before (malformed input, authentication, a chunk whose size is wrong,
   429) stored nothing, and sending it again is refused again the same way.
3. A 5xx / 503 (bus unavailable: the outcome is unknown, the client should retry), a 429,
   or a body cut short releases the claim, so the retry runs for real. (Commands are
   idempotent themselves, so a retry after an unknown outcome does no harm.)
4. The same key with a different request is 409 `idempotency_key_reused`.

What identifies a request (its fingerprint): method and path, plus the canonical JSON body
for a create, plus the body's sha256 and X-Chunk-SHA256 for a chunk PUT. The chunk body's
digest is only known after streaming it (the blob store computes it on the way; the handler
hands it over with `note_body_digest`), so a chunk's pending row carries no fingerprint
until then, and a repeated chunk PUT is compared only after its body was hashed.

Keys expire after 24 hours (the cleanup deletes them; an expired row is also taken over by
a new request). A create with a key gets an upload id derived from (caller, key,
fingerprint, when the key was first claimed); a released or taken-over claim keeps when it
was first claimed, so a retry after a crash or an unknown outcome names the same upload as
the request that died (the actor treats the same InitiateUpload again as already applied):
no orphaned upload is left to count against the caller's quota. The same key reused after
it expired makes a new one.

Deduplication (`deduplicated`): a create whose `sha256` matches a live file the caller owns
in the same bucket, with the same size, is answered at once with 201, status COMPLETED and
that `file_id` (`id` is null: no upload was needed), once the create passed every check the
upload path makes (api/routes/uploads.py). Only the caller's own files are looked
at, so the answer for content only another user has is exactly the answer for unknown
content. It relies on the files read model: a file completed a moment ago may not be found
yet, and the create then proceeds as a normal upload (never wrong, just not deduplicated).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.params import HeaderParameter
from litestar.serialization import decode_json, encode_json

from api.context import ctx
from api.errors import ApiError, handle_exception, request_id_of
from api.http.strict import refuse_repeated
from bus.config.logs import get_logger
from bus.store.idempotency import RENEW_EVERY, KeyInProgress, KeyStore
from domain.errors import DomainError
from domain.uploads import SHA256_RE, UploadStatus
from projections import queries

log = get_logger(__name__)

KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, like Stripe's keys
_REPLAYED_HEADERS = ("location",)
_BODY_DIGEST = "cairn.idempotency.body_sha256"
_RESOURCE_ID = "cairn.idempotency.resource_id"
# Hashing a replayed chunk body: gather this much before one thread hop.
_HASH_BUFFER = 1024 * 1024
_NAMESPACE = uuid.UUID("0b6c2f0e-7a53-4c0e-9d7e-2f1d4b8a6c11")

Kind = Literal["create", "chunk", "complete"]
Handler = Callable[..., Awaitable[Any]]


def note_body_digest(request: Request[Any, Any, Any], sha256: str) -> None:
    """The handler reports the sha256 of the body it streamed (part of the fingerprint)."""
    request.scope.setdefault("state", {})[_BODY_DIGEST] = sha256


def resource_id(request: Request[Any, Any, Any]) -> str | None:
    """The id a create must use under an Idempotency-Key, else None (pick a random one)."""
    value = request.scope.get("state", {}).get(_RESOURCE_ID)
    return str(value) if value else None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _canonical(value: Any) -> str:
    """The request body, canonical (sorted keys). It was decoded strictly and range-checked
    (api/http/strict.py) before this runs, so every number fits."""
    return msgspec.json.encode(msgspec.to_builtins(value), order="sorted").decode()


def _chunk_fingerprint(target: str, body_sha256: str, declared: str | None) -> str:
    return _digest(target, body_sha256, (declared or "").lower())


def _stored(response: Response[Any]) -> tuple[int, Any, dict[str, str], bytes]:
    """What a replay needs of a response: status, body (as JSON and as the exact bytes),
    and the headers worth replaying."""
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() in _REPLAYED_HEADERS}
    return response.status_code or 200, response.content, headers, encode_json(response.content)


def _as_sent(response: Response[Any], body: bytes) -> Response[bytes]:
    """`response` with its body as the bytes that were stored: first answer == replay."""
    return Response(
        body,
        status_code=response.status_code,
        headers=dict(response.headers),
        media_type="application/json",
    )


def _storable(response: Response[Any]) -> bool:
    """A refusal worth replaying: a 4xx that is final for this request. Not a 429 (come back
    later), nor a body cut short (the client never saw the answer and will resend)."""
    code = response.status_code or 200
    if not 400 <= code < 500 or code in (408, 429):
        return False
    content = response.content if isinstance(response.content, dict) else {}
    return (content.get("error") or {}).get("code") != "incomplete_body"


async def _hash_body(stream: AsyncIterator[bytes], max_bytes: int) -> str | None:
    """sha256 of a request body without storing it (a replay); None if over `max_bytes`."""
    h = hashlib.sha256()
    total = 0
    buf: list[bytes] = []
    buffered = 0
    async for piece in stream:
        total += len(piece)
        if total > max_bytes:
            return None
        buf.append(piece)
        buffered += len(piece)
        if buffered >= _HASH_BUFFER:
            # Off the loop: a chunk may be hundreds of MiB.
            await asyncio.to_thread(h.update, b"".join(buf))
            buf, buffered = [], 0
    if buf:
        await asyncio.to_thread(h.update, b"".join(buf))
    return h.hexdigest()


def _replay(request: Request[Any, Any, Any], row: asyncpg.Record) -> Response[Any]:
    headers = {**dict(row["response_headers"] or {}), "Idempotent-Replayed": "true"}
    raw: bytes | None = row["response_body"]
    if raw is None:  # stored before exact bodies were kept
        raw = encode_json(row["response"])
    status = int(row["status_code"])
    if status >= 400:
        body = decode_json(raw)  # keeps the key order
        if isinstance(body, dict) and "error" in body and "request_id" in body:
            # The error itself is replayed; the request id is this request's (it is echoed
            # in X-Request-ID and the error shape promises they match).
            body["request_id"] = request_id_of(request)
            raw = encode_json(body)
    return Response(raw, status_code=status, headers=headers, media_type="application/json")


def _reused() -> ApiError:
    return ApiError(
        409,
        "idempotency_key_reused",
        "this Idempotency-Key was used for a different request",
    )


def idempotent(kind: Kind, status: int) -> Callable[[Handler], Handler]:
    """Honour Idempotency-Key on a handler taking `request` and `principal` (see module doc).

    `status` is the handler's default status, for handlers that return a plain dict."""

    def decorate(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request: Request[Any, Any, Any] = kwargs["request"]
            key = kwargs.pop(_PARAM, None)
            if key is None:
                return await fn(*args, **kwargs)
            refuse_repeated(request.headers, "Idempotency-Key", "invalid_idempotency_key")
            if not KEY_RE.fullmatch(key):
                raise ApiError(
                    400,
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                )
            owner = kwargs["principal"].user
            c = ctx(request)
            keys = KeyStore(c.pool)
            target = f"{request.method} {request.url.path}"
            declared = kwargs.get("chunk_sha256")
            fingerprint: str | None = None
            if kind == "create":
                fingerprint = _digest(target, _canonical(kwargs["data"]))
            elif kind == "complete":
                fingerprint = _digest(target)
            try:
                claim, row = await keys.claim(owner, key, target, fingerprint, c.holder)
            except KeyInProgress as e:
                raise ApiError(409, "idempotency_request_in_progress", str(e), {}) from e
            if claim is None:
                assert row is not None
                if row["request_target"] != target:
                    raise _reused()
                if row["completed_at"] is None:
                    raise ApiError(
                        409,
                        "idempotency_request_in_progress",
                        "a request with this Idempotency-Key is still in progress",
                        headers={"Retry-After": "1"},
                    )
                if kind == "chunk":
                    body_sha = await _hash_body(request.stream(), c.settings.max_chunk_size)
                    if body_sha is None:
                        raise _reused()
                    fingerprint = _chunk_fingerprint(target, body_sha, declared)
                if fingerprint != row["request_fingerprint"]:
                    raise _reused()
                return _replay(request, row)

            token: uuid.UUID = claim["token"]
            if kind == "create":
                # Named by the claim, so a re-run after a takeover names the same upload (the
                # actor takes the same InitiateUpload again as already applied).
                name = f"{owner}\n{key}\n{fingerprint}\n{claim['created_at'].isoformat()}"
                state = request.scope.setdefault("state", {})
                state[_RESOURCE_ID] = str(uuid.uuid5(_NAMESPACE, name))

            def final_fingerprint() -> str | None:
                if kind != "chunk":
                    return fingerprint
                body_sha = request.scope.get("state", {}).get(_BODY_DIGEST)
                return _chunk_fingerprint(target, body_sha, declared) if body_sha else None

            # Renew the lease while the request runs: it is what tells everybody else the
            # holder is alive. (Cancelled below whatever happens.)
            renewer = asyncio.create_task(_keep_leased(keys, owner, key, token))
            try:
                result = await fn(*args, **kwargs)
            except (ApiError, DomainError) as exc:
                renewer.cancel()
                response = handle_exception(request, exc)
                fp = final_fingerprint()
                if fp is not None and _storable(response):
                    await _settle(keys.complete(owner, key, token, fp, *_stored(response)))
                else:
                    await _settle(keys.release(owner, key, token))
                raise
            except BaseException:
                # 5xx, bus unavailable (outcome unknown) or cancelled: let the client retry.
                renewer.cancel()
                await _settle(keys.release(owner, key, token))
                raise
            renewer.cancel()
            response = (
                result if isinstance(result, Response) else Response(result, status_code=status)
            )
            fp = final_fingerprint()
            if fp is None:
                await _settle(keys.release(owner, key, token))
                return response
            stored = _stored(response)
            await _settle(keys.complete(owner, key, token, fp, *stored))
            return _as_sent(response, stored[3])

        _declare_header(wrapper, fn)
        return wrapper

    return decorate


_PARAM = "idempotency_key"


def _declare_header(wrapper: Handler, fn: Handler) -> None:
    """Give the wrapper an `Idempotency-Key` header parameter, so that Litestar passes it
    in and the OpenAPI document shows it, without touching the handler's own signature."""
    sig = inspect.signature(fn)
    param = inspect.Parameter(
        _PARAM,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                description="Makes a retry safe: the same key and request get the first"
                " answer again (24 hours, per caller).",
            ),
        ],
    )
    params = list(sig.parameters.values())
    # Keyword-only parameters go last; the handlers have no **kwargs.
    wrapper.__signature__ = sig.replace(parameters=[*params, param])  # type: ignore[attr-defined]
    # functools.wraps shares the handler's annotations dict: copy before adding to it.
    wrapper.__annotations__ = {**fn.__annotations__, _PARAM: param.annotation}


async def _keep_leased(keys: KeyStore, owner: str, key: str, token: uuid.UUID) -> None:
    """Renew a claim's lease every RENEW_EVERY seconds until cancelled."""
    while True:
        await asyncio.sleep(RENEW_EVERY)
        try:
            if not await keys.renew(owner, key, token):
                return  # completed or taken over: nothing left to hold
        except Exception as e:
            # Keep trying: one failed renewal leaves the lease two more chances to be renewed.
            log.warning("idempotency lease not renewed", error=str(e))


async def _settle(op: Awaitable[None]) -> None:
    """Write the key's outcome even if the request is being cancelled (shielded task), and
    never turn the request's own outcome into a different one: a failure here only leaves
    a pending row, which is free again when its lease runs out."""
    task = asyncio.ensure_future(op)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.warning("idempotency key not updated", error=str(e))


# ---- deduplicated creates -------------------------------------------------------------


def deduplicated(fn: Handler) -> Handler:
    """Answer a create for content the caller already has with that file (see module doc)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        data = kwargs["data"]
        sha = data.sha256.lower() if isinstance(data.sha256, str) else None
        size = data.file_size
        # An upload into an object key is never answered with another file: it must become
        # that object (whose content the key's next write may replace).
        keyed = getattr(data, "key", None) is not None
        if not keyed and sha is not None and SHA256_RE.fullmatch(sha) and isinstance(size, int):
            request: Request[Any, Any, Any] = kwargs["request"]
            c = ctx(request)
            found = await queries.find_file_by_sha256(
                c.pool, kwargs["principal"].user, sha, bucket=data.bucket or "default"
            )
            if found is not None and found["size"] == size:
                chunk_size = (
                    data.chunk_size
                    if data.chunk_size is not None
                    else c.settings.default_chunk_size
                )
                body = {
                    "id": None,
                    "chunk_size": chunk_size,
                    "total_chunks": 0,
                    "status": UploadStatus.COMPLETED.value,
                    "file_id": found["id"],
                    "file_name": found["name"],
                    "file_size": found["size"],
                    "deduplicated": True,
                }
                return Response(
                    body, status_code=201, headers={"Location": f"/v1/files/{found['id']}"}
                )
        return await fn(*args, **kwargs)

    return wrapper
