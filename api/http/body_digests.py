"""The digest an object PUT's client declares for its body (S3's `Content-MD5` and
`x-amz-checksum-sha256`), checked against the bytes received before the object is made.

S3 refuses a body whose digest is not the one declared (BadDigest), and a client that
sends one relies on that: it is how it learns that its bytes were damaged on the way. So
a declared digest that is malformed, sent twice, of an algorithm Cairn does not compute
(`x-amz-checksum-crc32`, ...), or announced for a trailer (`x-amz-trailer`) is refused
before the body is read (400 `invalid_checksum`), never ignored; a body that does not
match is refused once it has been read (400 `checksum_mismatch`), before any command: its
pieces, stored on the way in, are left unreferenced to the blob collector, and the key
keeps what it held. A body in S3's `aws-chunked` content coding (the framing of SigV4
streaming and of trailing checksums) is refused too, 415 `unsupported_media_type`: Cairn
does not decode it, and storing it would make the framing part of the object's bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from api.errors import ApiError

CONTENT_MD5 = "content-md5"
AMZ_SHA256 = "x-amz-checksum-sha256"
_AMZ_CHECKSUM = "x-amz-checksum-"
_LENGTHS = {CONTENT_MD5: 16, AMZ_SHA256: 32}
_THREADED_BYTES = 256 * 1024
# S3's header naming a checksum that follows the body, in an aws-chunked trailer (the
# only trailers S3 defines are checksums): one Cairn would not check.
_AMZ_TRAILER = "x-amz-trailer"
# S3's names for the headers that say how a checksum travels, not what it is.
_NOT_A_CHECKSUM = {"x-amz-checksum-algorithm", "x-amz-checksum-type"}


_AWS_CHUNKED = "aws-chunked"


def _codings(raw_value: bytes) -> list[str]:
    """A Content-Encoding field's codings, lowercased (RFC 9110 §8.4: case-insensitive)."""
    return [c.strip().lower() for c in raw_value.decode("latin-1").split(",")]


def _invalid(header: str, message: str) -> ApiError:
    return ApiError(400, "invalid_checksum", f"{header}: {message}", {"header": header})


@dataclass
class DeclaredDigests:
    """The digests a PUT declared (raw bytes), and the MD5 of its body as it is read."""

    md5: bytes | None = None
    sha256: bytes | None = None
    _md5: Any = field(default=None, repr=False)

    @classmethod
    def of(cls, raw_headers: Iterable[tuple[bytes, bytes]]) -> DeclaredDigests:
        """From the request's raw header lines; 400 `invalid_checksum` as said above."""
        found: dict[str, bytes] = {}
        for raw_name, raw_value in raw_headers:
            name = raw_name.decode("latin-1").lower()
            if name == "content-encoding" and _AWS_CHUNKED in _codings(raw_value):
                raise ApiError(
                    415,
                    "unsupported_media_type",
                    "Content-Encoding: aws-chunked is not decoded: send the body as it is",
                    {"header": name},
                )
            if name == _AMZ_TRAILER:
                raise _invalid(
                    name,
                    "a digest in a trailer is not checked (nor is aws-chunked framing read):"
                    " send Content-MD5 or x-amz-checksum-sha256 as a header",
                )
            if name != CONTENT_MD5 and not name.startswith(_AMZ_CHECKSUM):
                continue
            if name in _NOT_A_CHECKSUM:
                continue
            if name not in _LENGTHS:
                raise _invalid(
                    name,
                    "Cairn checks Content-MD5 and x-amz-checksum-sha256 only; a checksum it"
                    " cannot check is refused rather than ignored",
                )
            if name in found:
                raise _invalid(name, "sent more than once")
            try:
                digest = base64.b64decode(raw_value.strip(), validate=True)
            except (binascii.Error, ValueError):
                digest = b""
            if len(digest) != _LENGTHS[name]:
                raise _invalid(name, f"not the base64 of a {_LENGTHS[name]}-byte digest")
            found[name] = digest
        return cls(md5=found.get(CONTENT_MD5), sha256=found.get(AMZ_SHA256))

    @property
    def declared(self) -> list[str]:
        """The headers that declared a digest (a copy, which has no body, refuses them)."""
        return [
            name
            for name, digest in ((CONTENT_MD5, self.md5), (AMZ_SHA256, self.sha256))
            if digest is not None
        ]

    def hashed(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`source`, its bytes also hashed with MD5 when an MD5 was declared (the whole-body
        sha256 is computed anyway, by the store's ingest)."""
        if self.md5 is None:
            return source
        self._md5 = hashlib.md5(usedforsecurity=False)
        return self._md5_of(source)

    async def _md5_of(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        # A large read is hashed in a worker thread (hashlib lets go of the GIL) while the
        # store takes it, each after the one before (MD5 is one sequence); a small one at
        # once, on the loop, where a thread's hop would cost more than the hash.
        pending: asyncio.Future[None] | None = None
        async for data in source:
            if pending is not None:
                await pending
                pending = None
            if len(data) < _THREADED_BYTES:
                self._md5.update(data)
            else:
                pending = asyncio.ensure_future(asyncio.to_thread(self._md5.update, data))
            yield data
        if pending is not None:
            await pending

    def check(self, sha256_hex: str) -> None:
        """400 `checksum_mismatch` if the body read (its sha256, and the MD5 hashed on the
        way) is not what was declared."""
        for header, declared, actual in (
            (AMZ_SHA256, self.sha256, bytes.fromhex(sha256_hex)),
            (CONTENT_MD5, self.md5, self._md5.digest() if self._md5 is not None else None),
        ):
            if declared is not None and declared != actual:
                raise ApiError(
                    400,
                    "checksum_mismatch",
                    f"the body does not match {header}",
                    {
                        "header": header,
                        "declared": base64.b64encode(declared).decode(),
                        "actual": base64.b64encode(actual or b"").decode(),
                    },
                )
