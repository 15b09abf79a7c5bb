"""Where the client reached us: scheme and host for the absolute URLs the API hands out.

Behind a reverse proxy the request's own scheme and Host are the proxy's view; the client's
are in RFC 7239 `Forwarded` or `X-Forwarded-Proto` / `X-Forwarded-Host`. Those headers are
believed only with CAIRN_TRUST_PROXY (anyone can send them otherwise). Hosts are checked
against a strict syntax, so a header can never smuggle a path, userinfo or a newline into a
URL. Used by tus `Location`s and signed URLs.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

HOST = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def forwarded(request: Request[Any, Any, Any]) -> tuple[str | None, str | None]:
    """(proto, host) the client used, as the (trusted) proxy reports them.

    RFC 7239 `Forwarded` wins over `X-Forwarded-Proto` / `X-Forwarded-Host`; with several
    proxies the first element is the one facing the client."""
    proto = host = None
    fwd = request.headers.get("forwarded")
    if fwd:
        first = fwd.split(",", 1)[0]
        for pair in first.split(";"):
            name, _, val = pair.strip().partition("=")
            val = val.strip().strip('"')
            if name.lower() == "proto":
                proto = val
            elif name.lower() == "host":
                host = val
    proto = proto or (request.headers.get("x-forwarded-proto") or "").split(",", 1)[0].strip()
    host = host or (request.headers.get("x-forwarded-host") or "").split(",", 1)[0].strip()
    proto = proto.lower() if proto and proto.lower() in ("http", "https") else None
    host = host if host and HOST.fullmatch(host) else None
    return proto, host


def origin(request: Request[Any, Any, Any], trust_proxy: bool) -> str | None:
    """`scheme://host` the client reached us by, or None if no valid host is known: the
    proxy's forwarded values when trusted, else the request's own scheme and Host."""
    proto = host = None
    if trust_proxy:
        proto, host = forwarded(request)
    host = host or request.headers.get("host")
    if not host or not HOST.fullmatch(host):
        return None
    return f"{proto or request.scope.get('scheme', 'http')}://{host}"
