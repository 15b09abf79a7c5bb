"""S3's CopyObject: an object PUT with `x-amz-copy-source: /BUCKET/KEY` and no body.

The new object is made from the source's stored content (its chunks are shared, no byte
moves), in one PutObject command like any PUT: the destination's conditions (If-None-Match,
If-Match) and quota apply as to a PUT of the source's size. The source is read as a GET
would read it (its bucket readable by the caller: theirs, an admin's reach, or public;
else 404), at the version found now: `x-amz-copy-source-if-match` /
`-if-none-match` (an ETag) make that version a condition (412 `precondition_failed`).

What S3 has and Cairn does not is refused rather than ignored (400 `invalid_copy_source`):
a version id (Cairn keeps no versions, so any `?` in the source), the date conditions, a
body beside the copy or a digest of one (Content-MD5, x-amz-checksum-sha256: there is no
body for it to check), a signed PUT URL (it grants the upload of a body), and a copy of an
object onto itself that changes nothing. `x-amz-metadata-directive` is COPY (the default,
when the header is absent: the source's metadata and content type) or REPLACE (the
request's `x-amz-meta-*`, Content-Type and stored headers: Cache-Control,
Content-Disposition, Content-Encoding, Content-Language, Expires), in any case; anything
else, an empty value too, is 400; metadata or stored headers with COPY would be dropped
silently by S3, and are 400 here.

The source is percent-decoded as the object's own path is (to bytes, then strictly UTF-8),
so `..`, `%2e%2e` and `//` are ordinary characters of a key (`/b/../c/k` is the key
`../c/k` of bucket `b`, never bucket `c`), and a key sent as raw UTF-8 is the key meant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from api.errors import ApiError
from api.http.conditionals import ANY, field_value, write_match
from api.http.strict import refuse_repeated
from domain.buckets.names import is_bucket_name
from domain.files import FileState
from domain.files.keys import object_key_problem

COPY_SOURCE = "x-amz-copy-source"
DIRECTIVE = "x-amz-metadata-directive"
IF_MATCH = "x-amz-copy-source-if-match"
IF_NONE_MATCH = "x-amz-copy-source-if-none-match"
_UNSUPPORTED = ("x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since")


def _invalid(message: str, **details: Any) -> ApiError:
    return ApiError(400, "invalid_copy_source", message, details)


@dataclass(frozen=True)
class CopySource:
    """What a copying PUT asks: the source object, and how."""

    bucket: str
    key: str
    replace_metadata: bool
    if_match: str | None = None  # a sha256, or `*`
    if_none_match: str | None = None

    def check(self, source: FileState) -> None:
        """412 `precondition_failed` if the source's version is not the one asked for."""
        if self.if_match not in (None, ANY, source.sha256) or self.if_none_match in (
            ANY,
            source.sha256,
        ):
            raise ApiError(
                412,
                "precondition_failed",
                "the source object is not the version the copy's conditions name",
                {"bucket": self.bucket, "key": self.key[:256], "etag": f'"{source.sha256}"'},
            )


def _decoded(path: str) -> str:
    """The copy source's path as the object path is read (api/routes/objects.object_key):
    percent-decoded to bytes, then strictly UTF-8; "" if it is not. The header arrives as
    latin-1 text (one character per byte): a key sent as raw UTF-8 (`ü` as two bytes) was
    read as two other characters, and another key copied or 404."""
    try:
        return unquote_to_bytes(path.encode("latin-1")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return ""  # not UTF-8 once decoded: no key of any bucket


def requested(
    headers: Any, has_body: bool, signed: bool, metadata_sent: bool, digests: Sequence[str] = ()
) -> CopySource | None:
    """The copy a PUT asks for, None if it asks none (a plain PUT); 400 as said above.
    `digests`: the body digest headers the PUT declared (api/http/body_digests.py)."""
    value = field_value(headers, COPY_SOURCE)
    if value is None:
        for name in (DIRECTIVE, IF_MATCH, IF_NONE_MATCH, *_UNSUPPORTED):
            if headers.get(name) is not None:
                raise _invalid(f"{name} without {COPY_SOURCE}", header=name)
        return None
    for name in (COPY_SOURCE, DIRECTIVE, IF_MATCH, IF_NONE_MATCH):
        refuse_repeated(headers, name, "invalid_copy_source")
    for name in _UNSUPPORTED:
        if headers.get(name) is not None:
            raise _invalid(f"{name} is not supported: name the version by its ETag", header=name)
    if signed:
        raise _invalid("a signed PUT URL uploads a body; it does not copy")
    if has_body:
        raise _invalid("a copy takes no body", header=COPY_SOURCE)
    if digests:
        raise _invalid(
            f"a copy has no body for {digests[0]} to check: its content is the source's",
            header=digests[0],
        )
    path, asks, _ = value.strip().partition("?")
    if asks:
        # Even an empty query: `/b/k?` read as `/b/k` would copy k for a client that did
        # not encode the `?` of the key `k?` (%3F).
        raise _invalid("Cairn keeps no object versions: a copy reads the live one (`?` is %3F)")
    bucket, _, key = _decoded(path).lstrip("/").partition("/")
    if not is_bucket_name(bucket) or not key or object_key_problem(key) is not None:
        raise _invalid(f"{COPY_SOURCE} is /BUCKET/KEY, URL-encoded", value=value[:300])
    raw_directive = headers.get(DIRECTIVE)
    directive = "COPY" if raw_directive is None else raw_directive.strip().upper()
    if directive not in ("COPY", "REPLACE"):
        raise _invalid(f"{DIRECTIVE} is COPY or REPLACE", header=DIRECTIVE)
    if metadata_sent and directive == "COPY":
        raise _invalid(
            f"x-amz-meta-* (or Cache-Control, Content-Disposition, Content-Encoding,"
            f" Content-Language, Expires) headers with {DIRECTIVE} COPY would be ignored:"
            " send REPLACE",
            header=DIRECTIVE,
        )
    conditions = []
    for name in (IF_MATCH, IF_NONE_MATCH):
        raw = headers.get(name)
        tag = None if raw is None else write_match(raw)
        if raw is not None and tag is None:
            raise _invalid(f"{name} is `*` or one strong ETag", header=name)
        conditions.append(tag)
    return CopySource(bucket, key, directive == "REPLACE", conditions[0], conditions[1])


def onto_itself(copy: CopySource, bucket: str, key: str) -> None:
    """400 for a copy of an object onto its own key that would change nothing (S3's
    rule: such a copy must REPLACE the metadata)."""
    if (copy.bucket, copy.key) == (bucket, key) and not copy.replace_metadata:
        raise _invalid(
            f"a copy onto the same key changes nothing: send {DIRECTIVE} REPLACE",
            header=DIRECTIVE,
        )
