"""Content-Disposition per RFC 6266 with RFC 8187 `filename*` for non-ASCII names.

The plain `filename` is an ASCII fallback with quotes, backslashes and controls replaced,
so a hostile name can neither break the header nor smuggle a path; `%` too, which some
browsers read there as an escape and others do not (RFC 6266 appendix D): a name that had
to be changed goes out whole in `filename*`.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote


def _ascii_fallback(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        if ch in '"\\/%' or ord(ch) < 32 or ord(ch) == 127:
            out.append("_")
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("_")
    fallback = "".join(out).strip() or "download"
    return fallback


def content_disposition(name: str, attachment: bool) -> str:
    kind = "attachment" if attachment else "inline"
    base = name.replace("\\", "/").rsplit("/", 1)[-1] or "download"
    fallback = _ascii_fallback(base)
    value = f'{kind}; filename="{fallback}"'
    if fallback != base:
        value += f"; filename*=UTF-8''{quote(base, safe='')}"
    return value
