"""An object's stored HTTP headers: S3's "system metadata" a PUT sets and GET/HEAD answer.

S3 keeps five representation headers with an object version besides its Content-Type
(`Cache-Control`, `Content-Disposition`, `Content-Encoding`, `Content-Language`,
`Expires`): `aws s3 cp --content-encoding gzip --cache-control max-age=3600`, a static
site of pre-gzipped files. They are stored with lower-case names, exactly as sent (never
parsed: a `Content-Encoding: gzip` object is served as its stored bytes, which Cairn
never decodes), and must go out as a header unchanged, so the rule is S3's shape bounded:
visible ASCII and spaces only (no CR, LF, NUL, tab or other control), at most
`MAX_HEADER_BYTES` each. The rule lives here, not only in the API, because every
PutObject goes through `decide` (a handler or a task could build one too).
"""

from __future__ import annotations

from collections.abc import Mapping

from domain.errors import InvalidInput

CACHE_CONTROL = "cache-control"
CONTENT_DISPOSITION = "content-disposition"
CONTENT_ENCODING = "content-encoding"
CONTENT_LANGUAGE = "content-language"
EXPIRES = "expires"

STORED_HEADERS: tuple[str, ...] = (
    CACHE_CONTROL,
    CONTENT_DISPOSITION,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    EXPIRES,
)
"""The headers an object keeps, by lower-case name, in the order they are answered."""

MAX_HEADER_BYTES = 1024
"""The most bytes of one stored header's value."""

MAX_CONTENT_TYPE_BYTES = 256
"""The most bytes of an object PUT's Content-Type (the same character rule)."""


def header_value_problem(name: str, value: object, most: int = MAX_HEADER_BYTES) -> str | None:
    """Why `value` cannot be the stored value of header `name`, or None if it can."""
    if not isinstance(value, str):
        return f"{name} must be a string"
    if not all(" " <= ch <= "~" for ch in value):
        return f"{name} may hold visible ASCII and spaces only (no CR, LF, NUL, tab or control)"
    if len(value) > most:  # ASCII: characters are bytes
        return f"{name} is over {most} bytes"
    return None


def headers_problem(headers: object) -> tuple[str, str] | None:
    """(the header at fault, why) if `headers` is not an acceptable set of stored headers:
    a mapping of the names in STORED_HEADERS (lower-case) to acceptable values."""
    if not isinstance(headers, Mapping):
        return "headers", "headers must be an object of strings"
    for name, value in headers.items():
        if name not in STORED_HEADERS:
            return str(name)[:64], f"an object stores only {', '.join(STORED_HEADERS)}"
        if (problem := header_value_problem(name, value)) is not None:
            return name, problem
    return None


def check_headers(headers: object) -> None:
    """Refuse what `headers_problem` finds, as every command carrying stored headers does
    (PutObject, InitiateUpload): 400 `invalid_header` with `{header, max_bytes}`."""
    if (bad := headers_problem(headers)) is not None:
        raise InvalidInput(
            "invalid_header", bad[1], {"header": bad[0], "max_bytes": MAX_HEADER_BYTES}
        )
