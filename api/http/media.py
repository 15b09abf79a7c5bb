"""Which Content-Type a stored file is served with, and whether a browser would run it.

Users choose their files' types (or Cairn detected them: bus/blobs/sniff.py), so the type
is untrusted: a value that is not a media type is served as application/octet-stream, and
anything a browser could execute in Cairn's origin (HTML, SVG, XML, JavaScript, and any
type not known to be passive) is served with `Content-Security-Policy: sandbox`, which puts
it in an opaque origin with scripts, forms and plugins off. `X-Content-Type-Options:
nosniff` goes on every answer, so a browser never promotes a passive type to an active one.
"""

from __future__ import annotations

import re

OCTET_STREAM = "application/octet-stream"

# type "/" subtype *( OWS ";" OWS parameter ), parameter values as token or quoted-string
# (RFC 9110 §5.6.4: qdtext and quoted-pair are HTAB, SP and visible ASCII; obs-text is left
# out). Anything else in the header is refused by the server (a CR) or cannot be encoded
# (beyond Latin-1): the answer was a dropped connection or a 500.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_MEDIA_TYPE_RE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*")

# Passive: rendered without running anything from the file. Everything else is treated as
# active (deny by default): a type nobody listed here might be one a browser executes.
_PASSIVE_FAMILIES = ("image/", "audio/", "video/", "font/")
_PASSIVE_TYPES = frozenset(
    {
        OCTET_STREAM,
        "text/plain",
        "text/csv",
        "text/markdown",
        "application/json",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/x-bzip2",
        "application/x-xz",
        "application/x-7z-compressed",
        "application/zstd",
        "application/vnd.rar",
        "application/wasm",
    }
)

# Active content gets no scripts, no plugins, no network beyond itself, in an opaque origin.
SANDBOX_CSP = (
    "sandbox; default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'"
)


def served_type(stored: str) -> str:
    """The Content-Type to send for a stored type: itself if well-formed, else octet-stream."""
    value = stored.strip(" \t")
    return value if _MEDIA_TYPE_RE.fullmatch(value) else OCTET_STREAM


def essence(media_type: str) -> str:
    """`type/subtype` in lower case, without parameters."""
    return media_type.split(";", 1)[0].strip(" \t").lower()


def is_active(media_type: str) -> bool:
    """Whether a browser might execute content of this type (SVG and any XML included)."""
    e = essence(media_type)
    if "xml" in e or "svg" in e or "script" in e or "html" in e:
        return True
    if e in _PASSIVE_TYPES:
        return False
    return not e.startswith(_PASSIVE_FAMILIES)
