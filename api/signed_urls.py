"""Issuing signed URLs: the bound on their expiry, the absolute URL, the answer's shape.

The signature itself is api/http/signing.py (pure); who may ask for one is
api/bucket_access.py (the owner and admins of what is signed). The URL is absolute, built
from the origin the caller reached us by (api/http/forwarded.py: the proxy's forwarded
values with CAIRN_TRUST_PROXY, else the request's own Host, checked against a strict
syntax). Echoing the caller's own Host is safe here: the answer goes only to that
authenticated caller, and a POST answer is not cached for anyone else.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Request

from api.context import ctx
from api.errors import ApiError
from api.http.forwarded import origin


def issue(
    request: Request[Any, Any, Any],
    resource: str,
    method: str,
    expires_in: int,
    *,
    path: str,
    max_size: int | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """`{url, method, expires_at}` of a URL for `path` granting `method` on `resource`
    for `expires_in` seconds (400 invalid_expires_in past CAIRN_SIGNED_URL_MAX_EXPIRY);
    a PUT's `max_size` and `version` go into the grant."""
    c = ctx(request)
    bound = c.settings.signed_url_max_expiry
    if expires_in > bound:
        raise ApiError(
            400,
            "invalid_expires_in",
            f"expires_in may be at most {bound} seconds (CAIRN_SIGNED_URL_MAX_EXPIRY)",
            {"field": "expires_in", "max": bound},
        )
    expires = int(time.time()) + expires_in
    params = c.signer.sign(method, resource, expires, max_size, version)
    root = str(request.scope.get("root_path") or "")
    # A `.` or `..` segment's dots percent-encoded too: clients drop such segments from
    # a URL's path (RFC 3986 §5.2.4) before sending it, and an object key is not a path.
    # Other dots stay as they are (`photo.jpg`), as RFC 3986 §2.3 asks of unreserved ones.
    encoded = "/".join(
        segment.replace(".", "%2E") if segment in (".", "..") else segment
        for segment in quote(path, safe="/").split("/")
    )
    target = f"{root}{encoded}?{urlencode(params)}"
    base = origin(request, c.settings.trust_proxy)
    out: dict[str, Any] = {
        "url": f"{base}{target}" if base else target,
        "method": method,
        "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
    }
    if max_size is not None:
        out["max_size"] = max_size
    return out
