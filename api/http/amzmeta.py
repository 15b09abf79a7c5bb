"""S3 user metadata as HTTP headers: `x-amz-meta-<name>: <value>`.

On a PUT (`from_request`), every request header whose name starts with `x-amz-meta-`
(any case) is one entry: its name is what follows the prefix, lowercased (S3 stores
names lowercased), its value the field value without the surrounding whitespace HTTP
does not count as part of it. The same name twice (or in two cases) is one entry, the
values joined with "," in the order sent, as S3 and MinIO combine them (RFC 9110 §5.3).
Refused with 400 `invalid_metadata` (the caller decides this before reading the body):
an empty name, a name that is not an HTTP token, a value with a byte that is not
printable ASCII (a control character, or anything past 0x7E: header bytes carry no
charset, so UTF-8 and latin-1 cannot be told apart; encode such values, e.g. RFC 2047
or percent-encoding, and they are stored as sent), and what `metadata_problem` refuses
(over 8 KiB of names and values, a name over 255 characters).

On GET and HEAD (`to_headers`), each entry goes out as `x-amz-meta-<name lowercased>`
only if it can be sent and read back exactly: metadata set through PATCH /v1/files may
be any string (non-ASCII, control characters, spaces in names). An entry that cannot is
left out of the headers, never altered; so are two names that are one header name once
lowercased. The JSON views (the PUT's answer, GET /v1/files/{id}) have them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from api.errors import ApiError
from domain.values import MAX_METADATA_BYTES, metadata_problem

PREFIX = "x-amz-meta-"
_PREFIX_BYTES = PREFIX.encode()
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Printable ASCII and HTAB inside; no whitespace at either end (a parser would drop it).
_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")
_OWS = b" \t"


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_metadata", message, {"max_bytes": MAX_METADATA_BYTES})


def from_request(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The metadata of a PUT, from its raw (ASGI) header list; 400 `invalid_metadata`."""
    found: dict[str, list[str]] = {}
    for raw_name, raw_value in raw_headers:
        if not raw_name.lower().startswith(_PREFIX_BYTES):
            continue
        name = raw_name[len(_PREFIX_BYTES) :].decode("latin-1").lower()
        if not name:
            raise _invalid("an x-amz-meta- header needs a name after its prefix")
        if not _TOKEN.fullmatch(name):
            raise _invalid("a metadata name is an HTTP token (letters, digits, -, _, ...)")
        value = raw_value.strip(_OWS)
        if any((b < 0x20 and b != 0x09) or b > 0x7E for b in value):
            raise _invalid(
                f"the value of x-amz-meta-{name[:64]} is not printable ASCII: encode it"
                " (e.g. RFC 2047 or percent-encoding)"
            )
        found.setdefault(name, []).append(value.decode("ascii"))
    metadata = {name: ",".join(values) for name, values in found.items()}
    problem = metadata_problem(metadata)
    if problem is not None:
        raise _invalid(problem)
    return metadata


def sendable(name: str, value: str) -> bool:
    """Whether `name: value` goes out as a header and reads back exactly."""
    return bool(_TOKEN.fullmatch(name)) and bool(_VALUE.fullmatch(value))


def to_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """The response headers for `metadata`: the entries that can be sent exactly."""
    names: dict[str, int] = {}
    for name in metadata:
        if _TOKEN.fullmatch(name):
            names[name.lower()] = names.get(name.lower(), 0) + 1
    return {
        PREFIX + name.lower(): value
        for name, value in metadata.items()
        if sendable(name, value) and names[name.lower()] == 1
    }
