"""Objects: `PUT, GET, HEAD, DELETE /v1/buckets/{name}/objects/{key}` (S3's path style).

An object is a file with a key in its bucket (domain/files/keys.py): its file id is derived
from (bucket, key), so every write of a key goes to one aggregate. A PUT streams the whole
body into the blob store first (bus/blobs/ingest.py: durable pieces, never the whole body
in memory), then sends ONE command (`domain.policies.put_object`) that creates the object
or replaces its live version in one event: until that event the old version is what GET
serves, and a PUT cut off mid-body sends no command at all, so the old version stays.
Two racing PUTs of one key are applied one after the other by the aggregate's one writer;
the later wins, and with `If-None-Match: *` exactly one of them creates.

Reads fold the object's short stream (consistent at once after a PUT) and are served by
the same code as file downloads (api/http/content.py: Range, conditionals, ETag = sha256,
Content-Type, Last-Modified = when this version was written). Who may read or write is
api/bucket_access.py's decision: a public bucket's objects are readable by anyone (also
without auth), writes are the owner's and admins'; a missing bucket, another user's
private bucket and a missing key are 404 (401 for an anonymous caller), never 403.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from litestar import HttpMethod, Request, Response, delete, get, post, put, route
from litestar.di import NamedDependency, Provide
from litestar.exceptions import InternalServerException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from api import bucket_access, object_copy, signed_urls
from api.auth import Principal, provide_optional_principal
from api.bucket_access import readable_bucket, writable_bucket
from api.commanding import SecuredController, reply_state
from api.context import AppContext, ctx, now
from api.errors import ApiError, bad_value
from api.http import amzmeta, objheaders
from api.http.body_digests import DeclaredDigests
from api.http.conditionals import (
    ANY,
    Verdict,
    evaluate,
    field_value,
    parse_http_date,
    write_match,
)
from api.http.content import ContentResponse
from api.http.digits import ascii_int
from api.http.signed_query import (
    Signature,
    SignedExpires,
    SignedKid,
    SignedMaxSize,
    SignedMethod,
    SignedVersion,
)
from api.http.signing import NO_VERSION
from api.limits import QuotaHold, body_past_quota, limiter, quota_reserved
from api.openapi import ANONYMOUS, BODY_IN_FLIGHT, TOO_LARGE
from api.paging import INVALID_CURSOR, decode_cursor, encode_cursor
from api.schemas import Object, ObjectPage, SignedUrl, SignObjectUrl, ok
from api.serving import content_responses, serve
from api.tus.pieces import piece_at
from bus.blobs.errors import BlobTooLarge
from bus.blobs.ingest import Ingested, ingest
from bus.blobs.sniff import SNIFF_BYTES, type_from_head
from domain import policies
from domain.buckets import BucketState
from domain.commands import DeleteFile, PutObject
from domain.files import FileState
from domain.files.keys import MAX_KEY_BYTES, object_file_id, object_key_problem, object_name
from projections.object_queries import Bound, list_objects

_OBJECTS = b"/objects/"


def object_key(request: Request[Any, Any, Any], key: str, suffix: str = "") -> str:
    """The key as the client sent it: percent-decoded from the raw path, strictly as UTF-8
    (the server's own decoding replaces invalid UTF-8), without `suffix` (which the path
    must end with, else 405), then S3's rules; 400 otherwise."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and _OBJECTS in raw:
        try:
            key = unquote_to_bytes(raw.split(_OBJECTS, 1)[1]).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_key", "an object key is valid UTF-8") from None
    else:  # no raw path (a test client): Litestar's path parameter, with its leading slash
        key = key[1:] if key.startswith("/") else key
    if suffix:
        if not key.endswith(suffix):
            raise ApiError(405, "method_not_allowed", "POST is for `<key>/signed-url` only")
        key = key[: -len(suffix)]
    problem = object_key_problem(key)
    if problem is not None:
        raise ApiError(400, "invalid_key", problem, {"max_bytes": 1024})
    return key


def _object_not_found(name: str, key: str) -> ApiError:
    return ApiError(404, "object_not_found", "no such object", {"bucket": name, "key": key[:256]})


async def load_object(c: AppContext, bucket: BucketState, key: str) -> FileState | None:
    """The live object `key` of `bucket`, by its aggregate (the authority), or None. An
    object left by the bucket's previous owner (the name deleted and created again) is not
    this bucket's."""
    st: FileState | None = await c.load("files", f"file-{object_file_id(bucket.name, key)}")
    if st is None or st.deleted or st.key != key or st.owner != bucket.owner:
        return None
    return st


def object_view(bucket: str, st: FileState) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "key": st.key,
        "id": st.id,
        "size": st.size,
        "sha256": st.sha256,
        "etag": f'"{st.sha256}"',
        "content_type": st.content_type,
        "metadata": st.metadata,
        "headers": st.headers,
        "last_modified": st.created_at.isoformat(),
    }


def _replied_view(bucket: str, key: str, st: dict[str, Any]) -> dict[str, Any] | None:
    """`object_view` of the state the actor replied with (see bus/actors/host.summarize)."""
    if st.get("key") != key or st.get("deleted") or not isinstance(st.get("sha256"), str):
        return None
    return {
        "bucket": bucket,
        "key": key,
        "id": st["id"],
        "size": st["size"],
        "sha256": st["sha256"],
        "etag": f'"{st["sha256"]}"',
        "content_type": st["content_type"],
        "metadata": st.get("metadata") or {},
        "headers": st.get("headers") or {},
        "last_modified": st["created_at"],
    }


async def _held_as_it_comes(
    source: AsyncIterator[bytes], hold: QuotaHold, most: int
) -> AsyncIterator[bytes]:
    """`source`, each read held against the owner's quota before it is taken (413
    quota_exceeded when it does not fit beside what the owner's other requests hold)."""
    size = 0
    async for data in source:
        size += len(data)
        await hold.cover(size, most)
        yield data


async def _store_body(
    c: AppContext,
    request: Request[Any, Any, Any],
    cap: int,
    limit: int,
    hold: QuotaHold,
    sized: bool,
    digests: DeclaredDigests,
) -> Ingested:
    """The PUT's body, stored: at most `cap` bytes, which is `limit` (the object size limit)
    or, for a body without a length (`sized` false), less when that is what the quota
    leaves it; such a body's bytes are held as they come (`hold`), and hashed for a
    declared MD5 (`digests`)."""
    source: AsyncIterator[bytes] = digests.hashed(request.stream())
    if not sized and hold.id is not None:
        source = _held_as_it_comes(source, hold, cap)
    try:
        return await ingest(
            c.blobs, source, piece_at=piece_at, max_bytes=cap, keep_head=SNIFF_BYTES
        )
    except BlobTooLarge:
        if cap < limit:
            raise body_past_quota(cap, quota=hold.quota) from None
        raise ApiError(413, "object_too_large", "the object is too large", {"max": limit}) from None
    except InternalServerException:
        # The client went away mid-body: no command, the old version (if any) stays.
        raise ApiError(400, "incomplete_body", "the request body ended early") from None


async def _apply_put(
    c: AppContext,
    request: Request[Any, Any, Any],
    hold: QuotaHold,
    bucket: BucketState,
    key: str,
    command: PutObject,
) -> Response[Any]:
    """Send a PUT's (or a copy's) one command; its answer, 201 created / 200 replaced."""
    result = await c.send(request, command)
    created = any(e.get("type") == "FileCreated" for e in result.events)
    # The object as this command left it (the actor's reply: no read needed).
    view = _replied_view(bucket.name, key, reply_state(result))
    if view is None:  # no state in the reply (an old actor): read it back
        st = await load_object(c, bucket, key)
        if st is None:  # deleted again in between
            raise _object_not_found(bucket.name, key)
        view = object_view(bucket.name, st)
    # It counts once the files read model has the version this put left: the reservation
    # holds until then (the row may show the old version meanwhile).
    if result.version > 0:
        hold.version = result.version
    else:  # no version in the reply (an old actor): until the file is listed
        hold.file_id = view["id"]
    return Response(view, status_code=201 if created else 200, headers={"ETag": view["etag"]})


async def _copy_object(
    c: AppContext,
    request: Request[Any, Any, Any],
    bucket: BucketState,
    key: str,
    principal: Principal,
    copy: object_copy.CopySource,
    conditions: tuple[bool, str | None],
    metadata: dict[str, str],
    content_type: str,
    headers: dict[str, str],
) -> Response[Any]:
    """S3's CopyObject into `bucket`/`key`, already found writable (api/object_copy.py)."""
    object_copy.onto_itself(copy, bucket.name, key)
    # Read as a GET reads it: another user's private bucket is not there (404).
    source = await load_object(c, await readable_bucket(c, copy.bucket, principal), copy.key)
    if source is None:
        raise _object_not_found(copy.bucket, copy.key)
    copy.check(source)
    none_match, match = conditions
    async with quota_reserved(
        c, bucket.owner, source.size, target=object_file_id(bucket.name, key)
    ) as hold:
        if none_match and await load_object(c, bucket, key) is not None:
            raise ApiError(412, "object_exists", "an object with this key exists")
        command = policies.object_from_file(
            source,
            bucket.name,
            key,
            owner=bucket.owner,
            caller=principal.user,
            admin=principal.admin,
            at=now(),
            if_none_match=none_match,
            if_match=match,
            # REPLACE: the request's metadata and stored headers (none if it sent none), and
            # its content type if it sent one; COPY: the source's (S3's CopyObject).
            content_type=(content_type or None) if copy.replace_metadata else None,
            metadata=metadata if copy.replace_metadata else None,
            headers=headers if copy.replace_metadata else None,
        )
        return await _apply_put(c, request, hold, bucket, key, command)


def _put_conditions(if_none_match: str | None, if_match: str | None) -> tuple[bool, str | None]:
    """(create only if absent, replace only if the ETag is this) from the PUT's headers."""
    none_match = False
    if if_none_match is not None:
        if if_none_match.strip() != ANY:
            raise ApiError(400, "invalid_if_none_match", "on PUT, If-None-Match can only be `*`")
        none_match = True
    return none_match, _if_match(if_match, "PUT")


def _if_match(value: str | None, method: str) -> str | None:
    """The version a write (PUT, DELETE) needs, from its If-Match: `*`, a sha256, or None."""
    if value is None:
        return None
    match = write_match(value)
    if match is None:
        raise ApiError(
            400,
            "invalid_if_match",
            f'If-Match on {method} is `*` or one strong ETag (`"<sha256>"`)',
        )
    return match


def _unmodified_since(value: str | None, current: FileState | None) -> str | None:
    """If-Unmodified-Since of a write without If-Match (RFC 9110 §13.1.4): 412 if the live
    object changed after that date; else the sha256 the command must still find, so that
    the condition holds at the write and not only now; None if it does not apply (no
    field, not an HTTP-date, no object: nothing has a modification date)."""
    if value is None or current is None or parse_http_date(value) is None:
        return None
    verdict = evaluate(
        "PUT",
        etag=current.sha256,
        last_modified=min(current.created_at, now()),  # as served (api/http/content.py)
        if_unmodified_since=value,
    )
    if verdict is not Verdict.PROCEED:
        raise ApiError(
            412, "precondition_failed", "the object was modified after If-Unmodified-Since"
        )
    return current.sha256


def encode_bound(bound: Bound) -> str:
    """The opaque cursor of where the next page starts (after a key, or past a prefix)."""
    if bound.after is not None:
        return encode_cursor({"a": bound.after})
    return encode_cursor({"s": bound.start or ""})


def decode_bound(cursor: str) -> Bound:
    key, text = decode_cursor(cursor, ("a", "s"))
    if not _list_text_ok(text):
        raise ApiError(400, "invalid_cursor", INVALID_CURSOR, {"field": "cursor"})
    return Bound(after=text) if key == "a" else Bound(start=text)


def _list_text_ok(value: str) -> bool:
    """Could this be (part of) a key? NUL and lone surrogates never are (and the database
    takes neither)."""
    try:
        return "\x00" not in value and len(value.encode()) <= 4 * MAX_KEY_BYTES
    except UnicodeEncodeError:
        return False


def _list_param(name: str, value: str | None) -> str | None:
    """A listing's text parameter (prefix, delimiter, start_after); one that no key could
    hold is 400 `invalid_query` naming it, as every listing answers a bad query value."""
    if value is not None and not _list_text_ok(value):
        raise bad_value(name, value, "holds a character no key can hold, or is too long")
    return value


# Reads (GET, HEAD, the listing) also answer anonymous callers for a public bucket, and
# GET, HEAD and PUT anyone holding a signed URL (api/bucket_access.py decides).
_READ = {"principal": Provide(provide_optional_principal)}


class ObjectsController(SecuredController):
    path = "/v1/buckets/{name:str}/objects"
    tags = ["objects"]

    @get(
        "/",
        summary="List a bucket's objects (S3 ListObjectsV2: prefix, delimiter, paging);"
        " without auth for a public bucket",
        dependencies=_READ,
        security=ANONYMOUS,
        responses=ok(200, ObjectPage, "A page of objects and common prefixes, in key order"),
    )
    async def list_bucket_objects(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        principal: NamedDependency[Principal | None],
        prefix: Annotated[str, QueryParameter(max_length=1024)] = "",
        delimiter: Annotated[str | None, QueryParameter(max_length=64)] = None,
        start_after: Annotated[str | None, QueryParameter(max_length=1024)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 1000,
        cursor: Annotated[str | None, QueryParameter(max_length=8192)] = None,
    ) -> dict[str, Any]:
        bucket = await readable_bucket(ctx(request), name, principal)
        prefix = _list_param("prefix", prefix) or ""
        delimiter = _list_param("delimiter", delimiter) or None
        start_after = _list_param("start_after", start_after)
        if cursor is not None:
            bound = decode_bound(cursor)  # the cursor wins over start_after, as on S3
        else:
            bound = Bound(after=start_after or None)
        page = await list_objects(
            ctx(request).pool,
            bucket.name,
            bucket.owner,
            prefix=prefix,
            delimiter=delimiter,
            bound=bound,
            limit=limit,
        )
        return {
            "bucket": bucket.name,
            "prefix": prefix,
            "delimiter": delimiter,
            "start_after": start_after,
            "limit": limit,
            "items": page.objects,
            "common_prefixes": page.common_prefixes,
            "key_count": len(page.objects) + len(page.common_prefixes),
            "is_truncated": page.truncated,
            "next_cursor": encode_bound(page.next) if page.truncated and page.next else None,
        }

    @put(
        "/{key:path}",
        summary="Create or replace an object: the whole body, one command (S3 PutObject);"
        " without auth with a signed PUT URL's parameters (once, within its size)",
        description="User metadata as S3 takes it: each `X-Amz-Meta-<name>: <value>` request"
        " header is the entry `<name>` (lowercased) = `<value>` (repeated names joined with"
        ' ","); printable ASCII values, at most 8 KiB of names and values, else 400'
        " `invalid_metadata` before the body is read. The new version has exactly the"
        " metadata of its PUT (none without such headers). `Cache-Control`,"
        " `Content-Disposition`, `Content-Encoding` (stored as sent: the bytes are never"
        " decoded; `aws-chunked` is 415), `Content-Language` and `Expires` are stored with"
        " the version likewise and answered by GET and HEAD; visible ASCII and spaces, at"
        " most 1024 bytes each (Content-Type: 256), else 400 `invalid_header`"
        " (`details.header`).",
        status_code=200,
        request_max_body_size=None,
        dependencies=_READ,
        security=ANONYMOUS,
        responses={
            **ok(201, Object, "The object was created"),
            **ok(200, Object, "The object's previous version was replaced"),
            403: ResponseSpec(
                None, description="A signed URL that is expired, altered, or for another method"
            ),
            412: ResponseSpec(
                None,
                description="If-None-Match: * and the key exists, If-Match, or"
                " If-Unmodified-Since; a signed PUT URL used again (the object is no longer"
                " the version it was signed for)",
            ),
            **BODY_IN_FLIGHT,
            **TOO_LARGE,
        },
    )
    async def put_object(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        key: FromPath[str],
        principal: NamedDependency[Principal | None],
        content_type: Annotated[str | None, HeaderParameter(name="Content-Type")] = None,
        if_none_match: Annotated[str | None, HeaderParameter(name="If-None-Match")] = None,
        if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
        if_unmodified_since: Annotated[
            str | None, HeaderParameter(name="If-Unmodified-Since")
        ] = None,
        content_md5: Annotated[
            str | None,
            HeaderParameter(
                name="Content-MD5",
                description="base64 of the body's MD5: a body that does not match is 400"
                " `checksum_mismatch` and makes no object",
            ),
        ] = None,
        checksum_sha256: Annotated[
            str | None,
            HeaderParameter(
                name="x-amz-checksum-sha256",
                description="base64 of the body's sha256, checked likewise (another"
                " x-amz-checksum-* algorithm is 400 `invalid_checksum`)",
            ),
        ] = None,
        copy_source: Annotated[
            str | None,
            HeaderParameter(
                name="x-amz-copy-source",
                description="S3's CopyObject: `/BUCKET/KEY` (URL-encoded) of an object the"
                " caller may read; no body. The new object shares its content;"
                " `x-amz-metadata-directive` COPY (default: its metadata and content type) or"
                " REPLACE (this request's), `x-amz-copy-source-if-match` /"
                " `-if-none-match` (412 `precondition_failed`); 400 `invalid_copy_source` for"
                " what is not supported (a version id, date conditions, a body or a digest of"
                " one)",
            ),
        ] = None,
        signed_method: SignedMethod = None,
        expires: SignedExpires = None,
        max_size: SignedMaxSize = None,
        version: SignedVersion = None,
        kid: SignedKid = None,
        signature: Signature = None,
    ) -> Response[Any]:
        c = ctx(request)
        key = object_key(request, key)
        none_match, match = _put_conditions(
            field_value(request.headers, "If-None-Match"), field_value(request.headers, "If-Match")
        )
        # S3's x-amz-meta-* headers, and a declared digest: 400 here, before the body is
        # read or quota held.
        metadata = amzmeta.from_request(request.scope["headers"])
        digests = DeclaredDigests.of(request.scope["headers"])  # 415 for aws-chunked first
        # Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires
        # (stored with the version), and the Content-Type's bound: 400 `invalid_header`.
        stored_headers = objheaders.from_request(request.scope["headers"])
        objheaders.check_content_type(request.scope["headers"])
        copy = object_copy.requested(
            request.headers,
            has_body=bool(ascii_int(request.headers.get("content-length")))
            or "transfer-encoding" in request.headers,
            signed=signature is not None,
            metadata_sent=bool(metadata) or bool(stored_headers),
            digests=digests.declared,
        )
        bucket, grant = await bucket_access.object_bucket(
            c, name, key, principal, "PUT", bucket_access.signature_params(request.query_params)
        )
        limit = c.settings.max_upload_bytes
        if grant is not None:
            # A signed PUT: within its size, once. Once = only over the version it was
            # signed for, made a condition of the command (for a new key If-None-Match,
            # atomic: exactly one use creates it), so a replay after a success is 412.
            limit = min(limit, grant.max_size or 0)
            current = await load_object(c, bucket, key)
            if bucket_access.object_version(current) != grant.version:
                raise ApiError(
                    412,
                    "object_changed",
                    "the object is not the version this URL was signed for"
                    " (a signed PUT URL works once)",
                )
            if grant.version == NO_VERSION:
                none_match = True
            elif match is None and current is not None:
                match = current.sha256
        if match is None and if_unmodified_since is not None:
            match = _unmodified_since(if_unmodified_since, await load_object(c, bucket, key))
        if copy is not None:
            assert principal is not None  # only a signed PUT is anonymous, and never copies
            return await _copy_object(
                c,
                request,
                bucket,
                key,
                principal,
                copy,
                (none_match, match),
                metadata,
                (content_type or "").strip(),
                stored_headers,
            )
        declared = ascii_int(request.headers.get("content-length"))
        if declared is not None and declared > limit:
            raise ApiError(413, "object_too_large", "the object is too large", {"max": limit})
        # The quota (api/limits.py): a declared size is reserved now; a body without one may
        # bring what is left of the quota, held as it comes (so one owner's bodies in flight
        # are judged against each other), and its size is reserved once it has ended. Only
        # what it adds to the key counts: it replaces what the key holds (`target`).
        async with quota_reserved(
            c, bucket.owner, declared or 0, target=object_file_id(bucket.name, key)
        ) as hold:
            cap = limit
            if declared is None and hold.remaining is not None:
                cap = min(limit, hold.remaining)
            if none_match and await load_object(c, bucket, key) is not None:
                # Known before reading the body; the command checks again, atomically.
                raise ApiError(412, "object_exists", "an object with this key exists")
            # A signed PUT acts for the bucket's owner, who signed it (or let an admin).
            caller = principal.user if grant is None and principal else bucket.owner
            # An in-flight slot (api/limits.py) while the body is read: 429 before a byte of
            # it when the caller, or the process, has too many bodies open.
            with limiter(request).hold(None, caller):
                body = await _store_body(
                    c, request, cap, limit, hold, declared is not None, digests
                )
            digests.check(body.sha256)
            if declared is None:
                await hold.resize(body.size)  # 413 if others took the rest meanwhile
            # The body may have taken long: a bucket deleted meanwhile (or now someone
            # else's) takes no object, as on S3 (NoSuchBucket). Else the object would
            # outlive its bucket, unseen by the delete that had just found it empty.
            await bucket_access.check_writable(c, bucket.name, bucket.owner)
            # As content_type_of decides (a declared type, else sniffed), from the bytes kept
            # on the way in: a small PUT reads nothing back from the blob store.
            stored_type = type_from_head(
                body.head, body.size, object_name(key), (content_type or "").strip()
            )
            command = policies.put_object(
                bucket=bucket.name,
                key=key,
                owner=bucket.owner,
                size=body.size,
                sha256=body.sha256,
                manifest=body.manifest,
                content_type=stored_type,
                caller=caller,
                admin=bool(grant is None and principal and principal.admin),
                at=now(),
                metadata=metadata,
                if_none_match=none_match,
                if_match=match,
                headers=stored_headers,
            )
            return await _apply_put(c, request, hold, bucket, key, command)

    @route(
        "/{key:path}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="Download an object (Range, conditionals; HEAD for the headers only);"
        " without auth for a public bucket, or with a signed URL's parameters",
        description="Each metadata entry is an `x-amz-meta-<name>` response header (200,"
        " 206; not 304); an entry that cannot be a header exactly (set through PATCH"
        " /v1/files/{id}: not ASCII, controls, a name that is not a token) is left out."
        " The stored Cache-Control, Content-Disposition (not with `?download=1`),"
        " Content-Encoding, Content-Language and Expires go out as stored on 200 and 206,"
        " replacing the defaults; Cache-Control and Expires on 304 too. Ranges and the"
        " ETag are of the stored bytes, whatever their Content-Encoding.",
        dependencies=_READ,
        security=ANONYMOUS,
        responses=content_responses("object"),
    )
    async def get_object(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        key: FromPath[str],
        principal: NamedDependency[Principal | None],
        download: FromQuery[bool] = False,
        signed_method: SignedMethod = None,
        expires: SignedExpires = None,
        max_size: SignedMaxSize = None,
        version: SignedVersion = None,
        kid: SignedKid = None,
        signature: Signature = None,
    ) -> ContentResponse:
        c = ctx(request)
        key = object_key(request, key)
        bucket, _ = await bucket_access.object_bucket(
            c,
            name,
            key,
            principal,
            request.method,
            bucket_access.signature_params(request.query_params),
        )
        st = await load_object(c, bucket, key)
        if st is None:
            raise _object_not_found(bucket.name, key)
        return await serve(
            c, request, st, download=download, described=amzmeta.to_headers(st.metadata)
        )

    @delete(
        "/{key:path}",
        status_code=204,
        summary="Delete an object (204; then GET is 404); `If-Match` makes it conditional",
        responses={
            412: ResponseSpec(
                None,
                description="If-Match: the object is not live, or not that version;"
                " If-Unmodified-Since: it was modified after that date",
            )
        },
    )
    async def delete_object(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        key: FromPath[str],
        principal: NamedDependency[Principal],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
        if_unmodified_since: Annotated[
            str | None, HeaderParameter(name="If-Unmodified-Since")
        ] = None,
    ) -> None:
        c = ctx(request)
        key = object_key(request, key)
        match = _if_match(field_value(request.headers, "If-Match"), "DELETE")
        bucket = await writable_bucket(c, name, principal)
        fid = object_file_id(bucket.name, key)
        st: FileState | None = await c.load("files", f"file-{fid}")
        if st is None or st.key != key or st.owner != bucket.owner:
            raise _object_not_found(bucket.name, key)
        if match is None:
            match = _unmodified_since(if_unmodified_since, None if st.deleted else st)
        # An object already deleted: the command is a no-op, the answer the same (a retry);
        # with If-Match it is 412. The command checks the version: atomic with the delete.
        await c.send(
            request,
            DeleteFile(
                aggregate_id=fid,
                caller=principal.user,
                admin=principal.admin,
                at=now(),
                if_match=match,
            ),
        )

    @post(
        "/{key:path}",
        status_code=200,
        summary="POST .../objects/{key}/signed-url: a URL that GETs (also HEADs), HEADs, or"
        " PUTs (once, at most max_size bytes) this object without auth until it expires",
        responses=ok(200, SignedUrl, "The signed URL and when it expires"),
    )
    async def sign_object(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        key: FromPath[str],
        data: JSONBody[SignObjectUrl],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        # Litestar matches nothing after a {key:path}: this route takes the whole path
        # and the key is what precedes its `/signed-url` (any key can be signed, even one
        # that itself ends with `/signed-url`). The OpenAPI document shows it at
        # `.../{key}/signed-url` (api/openapi.py, PATH_ENDINGS).
        c = ctx(request)
        key = object_key(request, key, suffix="/signed-url")
        bucket = await writable_bucket(c, name, principal)  # its owner, or an admin
        resource = bucket_access.object_resource(bucket.name, key, bucket.owner)
        path = bucket_access.object_path(bucket.name, key)
        if data.method != "PUT":
            if data.max_size is not None:
                raise ApiError(
                    400, "invalid_max_size", "max_size goes with PUT", {"field": "max_size"}
                )
            return signed_urls.issue(request, resource, data.method, data.expires_in, path=path)
        bound = min(c.settings.signed_put_max_bytes, c.settings.max_upload_bytes)
        size = bound if data.max_size is None else data.max_size
        if size > bound:
            raise ApiError(
                400,
                "invalid_max_size",
                f"max_size may be at most {bound} bytes (CAIRN_SIGNED_PUT_MAX_BYTES)",
                {"field": "max_size", "max": bound},
            )
        version = bucket_access.object_version(await load_object(c, bucket, key))
        return signed_urls.issue(
            request, resource, "PUT", data.expires_in, path=path, max_size=size, version=version
        )
