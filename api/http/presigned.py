"""The optional redirect of a full download to a presigned S3 URL (`CAIRN_S3_REDIRECT`).

A file is a manifest of content-addressed chunks, each one S3 object. S3 cannot serve a
concatenation of objects, so only a file that IS one object can be handed to S3: its
manifest has exactly one chunk, as long as the file (a file uploaded in one chunk; most
large files have many chunks and keep streaming through Cairn). Only a plain full GET is
redirected (status 200 after the conditionals, no Range), and only of passive content
(what Cairn serves without its sandbox): ranges, HEAD, 304/412/416 and active content are
answered by Cairn as always, so RFC 9110 behaviour does not depend on the setting. Below
`CAIRN_S3_REDIRECT_MIN_BYTES` streaming is cheaper than the client's second request.

The answer is 307 Temporary Redirect (the method stays GET) to a URL valid for
`CAIRN_S3_REDIRECT_EXPIRES` seconds, with S3 told to answer with the file's own
Content-Type and Content-Disposition; `Cache-Control: no-store`, as the URL expires (an
object with another stored header, Content-Encoding say, is never handed over:
api/http/objheaders.redirectable). What
the client then gets was verified by S3 against the chunk's sha256 when it was stored,
but Cairn's read-side hash check (a corrupt body fails the response) is not applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from bus.config.settings import Settings


@runtime_checkable
class Presigns(Protocol):
    """A blob store that can hand out a direct, time-limited URL to one blob (S3)."""

    async def presigned_get(
        self,
        sha256: str,
        *,
        expires: int,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str | None:
        """The URL, or None when the blob is not in the bucket (a small blob kept in
        PostgreSQL, bus/blobs/inline.py): Cairn serves it. A blob stored nowhere is
        BlobNotFound (never a URL to S3's 404), an unreachable S3 BlobStoreUnavailable."""
        ...


def single_object(manifest: Sequence[tuple[str, int]], size: int) -> str | None:
    """The sha256 of the one blob that holds the whole file, or None."""
    if len(manifest) == 1 and manifest[0][1] == size:
        return manifest[0][0]
    return None


async def redirect_location(
    settings: Settings,
    blobs: object,
    manifest: Sequence[tuple[str, int]],
    size: int,
    headers: dict[str, str],
    *,
    granted_for: int | None = None,
) -> str | None:
    """Where to redirect a full GET of the file, or None to serve it here.

    `granted_for`: the seconds left of the signed URL this GET was let in by (None: not a
    signed request). The S3 URL lasts no longer, so a link that is about to expire cannot
    be swapped for one that outlives it; with less than a second left, Cairn serves."""
    if not settings.s3_redirect or size < max(settings.s3_redirect_min_bytes, 1):
        return None
    expires = settings.s3_redirect_expires
    if granted_for is not None:
        expires = min(expires, granted_for)
        if expires < 1:
            return None
    if not isinstance(blobs, Presigns):
        return None
    if "Content-Security-Policy" in headers:
        # Active content (HTML, SVG, ...: api/http/media.py) is served inline only inside
        # Cairn's sandbox, which S3 cannot send (nor nosniff): from the S3 endpoint's origin
        # (Cairn's own, behind one proxy) it would run as a page. Cairn serves it.
        return None
    sha256 = single_object(manifest, size)
    if sha256 is None:
        return None
    return await blobs.presigned_get(
        sha256,
        expires=expires,
        content_type=headers.get("Content-Type"),
        content_disposition=headers.get("Content-Disposition"),
    )
