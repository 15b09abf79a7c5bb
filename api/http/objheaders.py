"""An object's stored HTTP headers on the wire: read from a PUT, answered on GET and HEAD.

S3 keeps `Cache-Control`, `Content-Disposition`, `Content-Encoding`, `Content-Language`
and `Expires` with an object version (domain/files/headers.py holds the rule and the
names). `from_request` takes them from a PUT's raw header list (400 `invalid_header`
naming the header, before the body is read); `check_content_type` gives the PUT's
Content-Type the same character rule and its own bound. `from_fields` and
`split_tus_metadata` take them from an upload's creation (the native API's `headers`
object, tus's Upload-Metadata) by the same rule, for the object the upload becomes. `apply` puts them on an answer
that `api/http/content.plan` made, exactly as stored:

- 200 and 206: all of them. A stored Content-Disposition replaces the one computed from the
  file name, except for `?download=1` (which asks for an attachment by that name); a
  stored Cache-Control replaces the default one. A multipart/byteranges 206 gets no
  Content-Encoding: its body is the multipart framing around ranges of the stored
  (encoded) bytes, not an encoded body a client should decode whole.
- 304: only Cache-Control and Expires (RFC 9110 §15.4.5 lets a 304 carry those two of the
  five; the others describe content a 304 has none of).
- anything else (412, 416): none.

The bytes are never touched: a `Content-Encoding: gzip` object is served, ranged and
tagged (ETag = sha256) as the bytes stored, as S3 does. `aws-chunked` is refused before
this module runs (api/http/body_digests.py: 415), as it would become the object's bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from api.errors import ApiError
from domain.files.headers import (
    CACHE_CONTROL,
    CONTENT_DISPOSITION,
    CONTENT_ENCODING,
    EXPIRES,
    MAX_CONTENT_TYPE_BYTES,
    MAX_HEADER_BYTES,
    STORED_HEADERS,
    header_value_problem,
)

# How each goes out (the names `plan` uses for the ones it may already have set).
_CANONICAL = {
    CACHE_CONTROL: "Cache-Control",
    CONTENT_DISPOSITION: "Content-Disposition",
    CONTENT_ENCODING: "Content-Encoding",
    "content-language": "Content-Language",
    EXPIRES: "Expires",
}
_NAMES = {name.encode(): name for name in STORED_HEADERS}
# Fields that are lists (RFC 9110 §5.3): sent twice, they are one value joined with ", ".
# The others (a disposition, a date) sent twice are ambiguous, and refused.
_LISTS = {CACHE_CONTROL, CONTENT_ENCODING, "content-language"}
_NOT_MODIFIED = (CACHE_CONTROL, EXPIRES)
_OWS = b" \t"


def _invalid(header: str, message: str, most: int = MAX_HEADER_BYTES) -> ApiError:
    return ApiError(400, "invalid_header", message, {"header": header, "max_bytes": most})


def _value(name: str, raw: bytes, most: int) -> str:
    """The field value without the surrounding whitespace HTTP does not count; 400 if it
    holds what cannot be stored and answered back exactly."""
    value = raw.strip(_OWS).decode("latin-1")  # one character per byte: checked below
    if (problem := header_value_problem(name, value, most)) is not None:
        raise _invalid(name, problem, most)
    return value


def from_request(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The stored headers a PUT sends, by lower-case name; an empty value is not stored."""
    found: dict[str, list[str]] = {}
    for raw_name, raw_value in raw_headers:
        name = _NAMES.get(raw_name.lower())
        if name is None:
            continue
        value = _value(name, raw_value, MAX_HEADER_BYTES)
        if name in found and name not in _LISTS:
            raise _invalid(name, f"{name} sent more than once")
        if value:
            found.setdefault(name, []).append(value)
    out = {name: ", ".join(values) for name, values in found.items()}
    for name, value in out.items():
        if len(value) > MAX_HEADER_BYTES:  # the joined value of a repeated list field
            raise _invalid(name, f"{name} is over {MAX_HEADER_BYTES} bytes")
    return out


def from_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """The stored headers an upload's creation names, by lower-case name (names are
    case-insensitive, as HTTP's): 400 `invalid_header` for a name outside the five, one
    named twice (in two cases), or a value the rule refuses; an empty value is not stored,
    as on a PUT."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for raw_name, raw_value in fields.items():
        name = raw_name.lower()
        if name not in STORED_HEADERS:
            raise _invalid(raw_name[:64], f"an object stores only {', '.join(STORED_HEADERS)}")
        if name in seen:
            raise _invalid(name, f"{name} named more than once")
        seen.add(name)
        if (problem := header_value_problem(name, raw_value)) is not None:
            raise _invalid(name, problem)
        if raw_value:
            out[name] = raw_value
    return out


def split_tus_metadata(metadata: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(stored headers, user metadata) of a tus Upload-Metadata: its keys that name one of
    the five (case-insensitively: `cache-control`, `Content-Encoding`, ...) are the object's
    stored headers, checked by `from_fields`; the others stay the upload's metadata."""
    headers = {k: v for k, v in metadata.items() if k.lower() in STORED_HEADERS}
    rest = {k: v for k, v in metadata.items() if k.lower() not in STORED_HEADERS}
    return from_fields(headers), rest


def check_content_type(raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
    """400 `invalid_header` for a PUT's Content-Type that is over MAX_CONTENT_TYPE_BYTES or
    holds a byte that is not visible ASCII or a space (it is stored and answered back)."""
    for raw_name, raw_value in raw_headers:
        if raw_name.lower() == b"content-type":
            _value("content-type", raw_value, MAX_CONTENT_TYPE_BYTES)


def apply(
    headers: dict[str, str], status: int, stored: Mapping[str, str], *, download: bool
) -> None:
    """Put `stored` on the answer `headers` of `status`, as said above (in place)."""
    if not stored:
        return
    if status == 304:
        names: Iterable[str] = _NOT_MODIFIED
    elif status in (200, 206):
        names = STORED_HEADERS
    else:
        return
    multipart = headers.get("Content-Type", "").startswith("multipart/byteranges")
    for name in names:
        value = stored.get(name)
        if value is None:
            continue
        if name == CONTENT_DISPOSITION and download:
            continue  # ?download=1: the attachment by the object's name
        if name == CONTENT_ENCODING and multipart:
            continue
        headers[_CANONICAL[name]] = value


def redirectable(stored: Mapping[str, str]) -> bool:
    """Whether S3 could answer a redirected GET as Cairn would: a presigned URL carries the
    Content-Type and Content-Disposition only (api/http/presigned.py), so an object with
    any other stored header is served by Cairn."""
    return all(name == CONTENT_DISPOSITION for name in stored)
