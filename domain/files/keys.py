"""Object keys: S3's rules, and the one file id an object key maps to.

An object is a file with a key: the file aggregate whose stream id is derived from
(bucket, key), so every writer of one key (a PUT, an upload naming a key, a fetch, a task)
addresses the same aggregate, and the actor host's one-writer-per-aggregate makes each
overwrite atomic and each race have exactly one winner per step. Keys are opaque strings:
`..` or `/` are ordinary characters, stored and served under exactly that key; a key never
becomes a filesystem path (bytes live in the content-addressed blob store).
"""

from __future__ import annotations

import hashlib
import uuid

MAX_KEY_BYTES = 1024
"""S3's limit: a key is at most 1024 bytes of UTF-8."""

# Namespace of object file ids (see object_file_id). Never change it: ids are stored.
_OBJECT_IDS = uuid.UUID("0b6a8f4e-3c1d-4e7a-9f25-7d8c2b1a6e43")


def object_key_problem(key: object) -> str | None:
    """Why S3 would refuse `key` as an object key, or None if it is valid."""
    if not isinstance(key, str) or not key:
        return "an object key is a non-empty string"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates: not valid UTF-8
        return "an object key is valid UTF-8"
    if size > MAX_KEY_BYTES:
        return f"an object key is at most {MAX_KEY_BYTES} bytes of UTF-8"
    if "\x00" in key:
        return "an object key holds no NUL character"
    if not key.strip("/"):
        # `/v1/buckets/b/objects//` is routed as the listing (trailing slashes do not
        # count in a route), so such a key could be made (a move, an upload) but never
        # read, replaced or deleted by its key.
        return "an object key is not only slashes"
    return None


def object_file_id(bucket: str, key: str) -> str:
    """The file id (aggregate id; stream `file-<id>`) of the object `key` in `bucket`.

    Derived, not stored anywhere: a bucket name never holds `/`, so `bucket/key` is
    unambiguous. Exactly `uuid5(namespace, "bucket/key")`; total even for a key that is not
    valid UTF-8 (lone surrogates), which `decide` then refuses."""
    name = f"{bucket}/{key}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha1(_OBJECT_IDS.bytes + name, usedforsecurity=False).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def object_name(key: str) -> str:
    """The file name an object is served under (Content-Disposition): the key's last
    segment, or the key itself when that is empty (a key ending in `/`)."""
    last = key.rstrip("/").rsplit("/", 1)[-1]
    return last or key
