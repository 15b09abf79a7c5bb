"""A file's media type from its first bytes and its name, for files whose client gave none.

Used where a completed upload becomes a file (the API's completion and the files handler,
which must agree: both send the same CreateFile command, and the actor applies whichever
arrives first). So detection is deterministic: puremagic's signature database (pure
Python, versioned in uv.lock, matched through the index of bus/blobs/signatures.py) on
the first `SNIFF_BYTES`, then Python's built-in extension table (not the machine's
/etc/mime.types, which differs between hosts), then "valid UTF-8 without NULs" as
text/plain. Served types are never trusted anyway: see
api/http/media.py for how active content is sandboxed.
"""

from __future__ import annotations

import codecs
import mimetypes
from collections.abc import Sequence

from bus.blobs.errors import BlobCorrupt, BlobNotFound
from bus.blobs.manifests import read_manifest
from bus.blobs.signatures import matches
from domain.ports import BlobStore

GENERIC = "application/octet-stream"
SNIFF_BYTES = 8192
# puremagic's confidence is about the signature's length (a 4-byte "%PDF" is 0.4); below
# 3 bytes matches are too easily accidental, and its 0.1 guesses come from the extension
# alone, which the extension table below judges instead.
_MIN_CONFIDENCE = 0.3

# Built-in table only: MimeTypes() does not read the host's mime.types files.
_BY_EXTENSION = mimetypes.MimeTypes()


def detect(head: bytes, name: str, *, truncated: bool = False) -> str:
    """The media type of content starting with `head` (all of it unless `truncated`)
    and called `name`."""
    for m in matches(head, name):
        if m.mime_type and m.confidence >= _MIN_CONFIDENCE:
            return str(m.mime_type)
    by_name, _ = _BY_EXTENSION.guess_type(name, strict=False)
    if by_name:
        return by_name
    if head and b"\x00" not in head and _is_utf8(head, truncated):
        return "text/plain; charset=utf-8"
    return GENERIC


def _is_utf8(head: bytes, truncated: bool) -> bool:
    # A sample cut from a longer file may end inside a character: that is not an error.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=not truncated)
    except UnicodeDecodeError:
        return False
    return True


async def content_type_of(
    store: BlobStore, manifest: Sequence[tuple[str, int]], name: str, declared: str
) -> str:
    """`declared` unless it is empty or the generic octet-stream, else the detected type."""
    if declared and declared.strip().lower() != GENERIC:
        return declared
    total = sum(size for _, size in manifest)
    try:
        head = b"".join(
            [p async for p in read_manifest(store, manifest, 0, min(total, SNIFF_BYTES))]
        )
    except (BlobNotFound, BlobCorrupt, ValueError, OSError):
        head = b""  # bytes that cannot be read cannot be served either: judge by the name
    return type_from_head(head, total, name, declared)


def type_from_head(head: bytes, total: int, name: str, declared: str) -> str:
    """What `content_type_of` answers, from the file's first bytes already at hand (kept on
    the way in: at least its first min(total, SNIFF_BYTES) bytes), reading nothing back."""
    if declared and declared.strip().lower() != GENERIC:
        return declared
    return detect(head[:SNIFF_BYTES], name, truncated=total > SNIFF_BYTES)
