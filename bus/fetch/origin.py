"""Reading an origin's answer: Content-Range, Retry-After, validators, the file name, backoff.

Pure helpers for the fetch worker, kept apart so each rule is tested on its own.
"""

from __future__ import annotations

import random
import re
import ssl
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote, urlsplit

import httpx

from bus.fetch.ssrf import UnknownHost

# ASCII digits, at most 19 (int64's size; `\d` took any script's digits, and int() of
# over 4,300 of them raised ValueError, which crashed the worker's run on the answer).
_CONTENT_RANGE = re.compile(
    r"bytes\s+([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)\s*$", re.I | re.ASCII
)
_UNSATISFIED = re.compile(r"bytes\s+\*/([0-9]{1,19})\s*$", re.I | re.ASCII)
MAX_NAME = 255
# What an origin's headers may put into events, the read model and the file: a Content-Type
# as long as an upload may declare (api/schemas.py), validators far past any real one
# (S3's ETags are 34 characters, an IMF date 29). httpx lets a head reach 100 KiB; a value
# past these is taken as absent (a type detected from the bytes, no validator).
MAX_CONTENT_TYPE = 255
MAX_VALIDATOR = 512


class Retryable(Exception):
    """The attempt failed in a way another attempt may not: timeouts, resets, 5xx, 408/429."""

    # A reason's name for the failure's details when the retries run out (None: the
    # message says it all), e.g. bus/fetch/lowspeed.py's too_slow.
    code: str | None = None

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StartOver(Retryable):
    """The recorded state moved under this attempt (the origin changed, or the segment
    split was dropped): stop every stream of the fetch and begin a new attempt from what
    is recorded now."""


class Fatal(Exception):
    """The fetch cannot succeed: fail it now. `details` go into the failure event."""

    def __init__(self, code: str, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


def content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """`bytes a-b/total` -> (a, b, total or None for `*`); None if absent or malformed."""
    m = _CONTENT_RANGE.match((value or "").strip())
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def unsatisfied_length(value: str | None) -> int | None:
    """The complete length of a 416's `Content-Range: bytes */N`."""
    m = _UNSATISFIED.match((value or "").strip())
    return int(m.group(1)) if m else None


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    v = value.strip()
    if v.isascii() and v.isdigit():  # isdigit alone takes `²`, which float() refuses
        return float(v)
    try:
        when = parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff(attempt: int, base: float, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter in [half, whole] of base * 2^(attempt-1)."""
    delay: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay * random.uniform(0.5, 1.0)


def bounded(value: str | None, limit: int) -> str | None:
    """An origin's header value, or None when it is absent or longer than `limit`."""
    return value if value is not None and len(value) <= limit else None


def strong_etag(etag: str | None) -> str | None:
    """An ETag usable in If-Range (a weak one is not, RFC 9110 13.1.5)."""
    if etag and not etag.startswith("W/"):
        return etag
    return None


def another_representation(
    etag: str | None,
    last_modified: str | None,
    total: int | None,
    new_etag: str | None,
    new_last_modified: str | None,
    new_total: int | None,
) -> bool:
    """Whether a 206 answering a resume is of another representation than the bytes held.

    If-Range should make an origin whose resource changed answer 200, but some ignore it
    and serve the asked range of whatever they hold now. So every validator both sides
    carry must be equal, and the complete length too: a 206 that differs in any of them
    would join two versions of the resource."""

    def differs(old: object, new: object) -> bool:
        return old is not None and new is not None and old != new

    return (
        differs(etag, new_etag)
        or differs(last_modified, new_last_modified)
        or differs(total, new_total)
    )


def content_encoding(value: str | None) -> str | None:
    """The Content-Encoding a body was sent with, None for none or identity. The worker
    reads the raw bytes (httpx's aiter_raw) and asks for identity: an origin that encodes
    anyway has its bytes kept as sent, and this says what they are."""
    codings = [c.strip().lower() for c in (value or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    return ", ".join(codings) or None


def _clean_name(name: str) -> str | None:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if ord(c) >= 0x20 and ord(c) != 0x7F).strip()
    if not name.strip("."):
        return None
    return name[:MAX_NAME]


def file_name(response: httpx.Response, url: str) -> str:
    """From Content-Disposition (filename*, then filename), else the URL path's last
    segment, else `download`; never a path. A filename* in a charset Python cannot decode
    it with is passed over (it crashed the fetch worker, so a whole fetch failed on a name)."""
    disposition = response.headers.get("content-disposition") or ""
    m = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", disposition, re.I)
    if m:
        try:
            name = _clean_name(unquote(m.group(2).strip(), encoding=m.group(1) or "utf-8"))
        except (LookupError, ValueError):
            # A charset Python does not know (or no text one), or one that cannot decode
            # these bytes with `replace` (idna, punycode, undefined: UnicodeError): absent.
            name = None
        if name:
            return name
    m = re.search(r'filename\s*=\s*("([^"]*)"|[^;]+)', disposition, re.I)
    if m:
        name = _clean_name((m.group(2) if m.group(2) is not None else m.group(1)).strip())
        if name:
            return name
    return _clean_name(unquote(urlsplit(url).path)) or "download"


def _untrusted_certificate(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure behind a transport error (httpx wraps ssl's), if it is one."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def classify(error: BaseException) -> BaseException:
    """A transport error as Retryable (timeouts, resets, a lookup that failed for now) or
    Fatal (a refused address, which GuardedBackend raises as a ConnectError; a host name
    that does not exist, likewise; a certificate that does not verify, which the next
    attempt would find as untrusted: curl and wget give up at once too); anything else
    unchanged."""
    if isinstance(error, httpx.HTTPError):
        text = str(error) or type(error).__name__
        if text.startswith("forbidden address"):
            return Fatal("forbidden_address", f"refused: {text}")
        if text.startswith(UnknownHost.PREFIX):
            return Fatal("host_not_found", f"the origin's host does not exist: {text}")
        cert = _untrusted_certificate(error)
        if cert is not None:
            reason = cert.verify_message or cert.reason or "certificate verify failed"
            return Fatal("untrusted_certificate", f"the origin's TLS certificate: {reason}")
        return Retryable(f"{type(error).__name__}: {text}")
    if isinstance(error, OSError):
        return Retryable(f"{type(error).__name__}: {error}")
    return error
