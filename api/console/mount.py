"""Serves the web console's committed static files at `/console`, under a strict
Content-Security-Policy.

Why a policy this strict: the console holds the caller's credential (in sessionStorage), so
no script may run that is not one of our own files — no inline script or style, no eval, no
third-party origin. Everything the console reaches is this same origin; blob: URLs carry
previews the console itself made from bytes it downloaded, shown in sandboxed frames.
There is no build step at install or start: the files (including the vendored Uppy bundle,
made by vendor-src/build.sh during development) are in the repository.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from api.http.staticfiles import StaticFileSystem

STATIC = Path(__file__).parent / "static"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",  # Uppy's thumbnails and image previews are blob:/data:
        "connect-src 'self'",
        "frame-src blob:",  # text and PDF previews, always in a sandboxed iframe
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def _secure(response: Response) -> Response:  # type: ignore[type-arg]
    response.headers.update(HEADERS)
    return response


def console_router() -> Router:
    """`GET /console` (and `/console/`) answers index.html; other files by their path."""
    return create_static_files_router(
        path="/console",
        directories=[str(STATIC)],
        html_mode=True,
        name="console",
        after_request=_secure,
        # Revalidated every time: a new release's files are picked up on the next load.
        cache_control=CacheControlHeader(no_cache=True),
        include_in_schema=False,
        file_system=StaticFileSystem(),
    )
