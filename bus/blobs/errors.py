"""The failures every blob store reports the same way, whatever the backend.

Callers (the API, the handlers, the collector) catch these and nothing backend-specific,
so the error mapping in api/errors.py holds for the local store and for S3 alike.
"""

from __future__ import annotations

import errno


class BlobNotFound(Exception):
    """No blob with this digest is stored."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"blob {sha256} not found")
        self.sha256 = sha256


class BlobTooLarge(Exception):
    """The stream went past `max_bytes`; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"blob larger than the limit of {limit} bytes")
        self.limit = limit


class BlobCorrupt(Exception):
    """A blob read back whole did not hash to its name: its bytes must not be served."""

    def __init__(self, sha256: str, actual: str, detail: str | None = None) -> None:
        super().__init__(detail or f"blob {sha256} read back with sha256 {actual}")
        self.sha256 = sha256
        self.actual = actual


class BlobStoreUnavailable(Exception):
    """The store cannot be reached or refused us (down, wrong endpoint, bucket, credentials).

    Nothing was kept by the failed operation; the message names the setting to check.
    `retry_after` is a hint in seconds for HTTP clients (503 + Retry-After). `reason`, if
    given, is the cause in a few words naming the setting but no value (no endpoint,
    bucket or path): what the public /ready may say; the message is for the log."""

    def __init__(self, message: str, retry_after: int = 2, reason: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


class BlobStoreFull(BlobStoreUnavailable):
    """The disk the store writes to is full (ENOSPC, EDQUOT): nothing was kept, and the
    same put succeeds once space is freed (the collector, an operator). Unavailable like
    any other store fault for the handlers, which retry; the API answers 507, as MinIO
    does, so a client is told the server is out of space instead of a bare 500."""


def is_disk_full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, errno.EDQUOT)
