"""Signed URLs: an HMAC-SHA256 grant for one method on one resource until one instant.

Pure (no I/O, no clock: callers pass `now`), so every rule here is unit-tested directly.
A signed URL carries its grant in the query string:

    ?method=GET&expires=1767225600[&max_size=1048576&version=…]&kid=…&signature=…

`signature` is base64url(HMAC-SHA256(key, canonical)), where `canonical` is a versioned,
domain-separated JSON array of (method, resource, expires, max_size, version). A PUT grant
also carries the largest body it allows (`max_size`) and the version of the object it may
replace (`version`: `none` for a key that must not exist yet); the route makes the write
conditional on that version, which is what makes a signed PUT usable once. The resource is the
API path of the thing granted (`/v1/files/{id}/content`, `/v1/buckets/{name}/objects/{key}`
with the key decoded) with its owner (api/bucket_access.py), rebuilt by the route from its
own parameters, so a proxy prefix or a
different percent-encoding of the same path does not matter, and a URL for one key never
verifies for another. JSON makes the encoding unambiguous whatever a key holds (`/`,
newlines, unicode), so no two grants share a canonical form.

Keys: the current key signs; it and the older keys (CAIRN_SIGNING_OLD_KEYS) verify. `kid`
names the key (a truncated hash of it, revealing nothing about it) so verification needs
one HMAC, not one per key. Changing the key without listing the old one invalidates every
URL it signed; listing it keeps them valid until they expire. Signatures are compared with
`hmac.compare_digest` (constant time), and the HMAC is checked before anything else in the
grant is trusted: an edited `expires` or `method` is "invalid", not "expired".

A URL signed for GET also answers HEAD (HEAD is GET without the body, RFC 9110 §9.3.2: what
`curl -I` and download managers ask first); one signed for HEAD answers only HEAD, one for
PUT only PUT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from api.http.digits import ascii_int

VERSION = 1
METHODS = ("GET", "HEAD", "PUT")
# The query parameters a signed URL carries (routes that accept one declare these).
PARAMS = ("method", "expires", "max_size", "version", "kid", "signature")
_DOMAIN = b"cairn signed url\x00"
_KID_DOMAIN = b"cairn signing key id\x00"
MIN_KEY_BYTES = 32
# An object version a PUT grant may replace: `none` (the key must not exist), or an opaque
# token the route derives from the current version (letters, digits, `.`, `-`, `_`, `:`).
NO_VERSION = "none"
_VERSION = re.compile(r"[A-Za-z0-9._:\-]{1,200}")


class SignatureError(Exception):
    """A signed URL that grants nothing: `code` is the error code the API answers (403)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Grant:
    """What a verified signature allows."""

    method: str
    resource: str
    expires: int
    max_size: int | None = None
    version: str | None = None


def key_id(key: str) -> str:
    return hashlib.sha256(_KID_DOMAIN + key.encode()).hexdigest()[:16]


def _canonical(
    method: str, resource: str, expires: int, max_size: int | None, version: str | None
) -> bytes:
    body = json.dumps(
        [VERSION, method, resource, expires, max_size, version], separators=(",", ":")
    )
    return _DOMAIN + body.encode("ascii")  # ensure_ascii: lone surrogates stay unambiguous


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def allows(signed: str, requested: str) -> bool:
    """Does a URL signed for `signed` answer a `requested` request?"""
    return signed == requested or (signed == "GET" and requested == "HEAD")


class Signer:
    """Signs with the current key; verifies with it and the older ones."""

    def __init__(self, key: str, old_keys: Sequence[str] = ()) -> None:
        for k in (key, *old_keys):
            if len(k.encode()) < MIN_KEY_BYTES:
                raise ValueError(
                    f"a signing key must be at least {MIN_KEY_BYTES} bytes "
                    "(CAIRN_SIGNING_KEY, CAIRN_SIGNING_OLD_KEYS)"
                )
        self.kid = key_id(key)
        self._keys: dict[str, bytes] = {key_id(k): k.encode() for k in old_keys}
        self._keys[self.kid] = key.encode()

    def sign(
        self,
        method: str,
        resource: str,
        expires: int,
        max_size: int | None = None,
        version: str | None = None,
    ) -> dict[str, str]:
        """The query parameters of a URL granting `method` on `resource` until `expires`
        (epoch seconds); a PUT's `max_size` bounds its body, its `version` names the
        version it may replace."""
        if method not in METHODS:
            raise ValueError(f"cannot sign {method!r}")
        put = method == "PUT"
        if (max_size is not None) != put or (version is not None) != put:
            raise ValueError("max_size and version go with PUT, and only with PUT")
        if version is not None and not _VERSION.fullmatch(version):
            raise ValueError(f"not a version: {version!r}")
        mac = hmac.new(
            self._keys[self.kid],
            _canonical(method, resource, expires, max_size, version),
            "sha256",
        )
        params = {"method": method, "expires": str(expires)}
        if max_size is not None:
            params["max_size"] = str(max_size)
        if version is not None:
            params["version"] = version
        params["kid"] = self.kid
        params["signature"] = _b64(mac.digest())
        return params

    def verify(
        self, method: str, resource: str, params: Mapping[str, str | None], now: float
    ) -> Grant:
        """The grant of a request `method` on `resource` carrying `params`, or
        SignatureError: signed_url_invalid (malformed, unknown key, edited, another
        resource), signed_url_expired, signed_url_wrong_method."""
        signed = params.get("method") or ""
        expires = _integer(params.get("expires"))
        max_size = _integer(params.get("max_size")) if params.get("max_size") else None
        kid = params.get("kid") or ""
        given = _unb64(params.get("signature") or "")
        if signed not in METHODS or expires is None or given is None:
            raise SignatureError("signed_url_invalid", "the signed URL is incomplete or malformed")
        version = params.get("version") or None
        if (params.get("max_size") and max_size is None) or (
            version is not None and not _VERSION.fullmatch(version)
        ):
            raise SignatureError("signed_url_invalid", "the signed URL is malformed")
        key = self._keys.get(kid)
        if key is None:
            raise SignatureError(
                "signed_url_invalid", "the URL was signed with a key this server no longer accepts"
            )
        canonical = _canonical(signed, resource, expires, max_size, version)
        want = hmac.new(key, canonical, "sha256").digest()
        if not hmac.compare_digest(want, given):
            raise SignatureError(
                "signed_url_invalid",
                "the signature does not match this URL (altered, or for another resource)",
            )
        if now >= expires:
            raise SignatureError("signed_url_expired", "the signed URL has expired")
        if not allows(signed, method):
            raise SignatureError(
                "signed_url_wrong_method", f"the URL is signed for {signed}, not {method}"
            )
        return Grant(signed, resource, expires, max_size, version)


def carries_signature(params: Mapping[str, str | None]) -> bool:
    """Does a request claim a signed URL's grant (any of its parameters present)?"""
    return any(params.get(p) is not None for p in PARAMS)


def _integer(text: str | None) -> int | None:
    """A plain decimal (no sign, no spaces, at most 15 digits), else None."""
    return ascii_int(text, 15)


def _unb64(text: str) -> bytes | None:
    if not text or len(text) > 64 or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 and _b64(raw) == text else None
