"""HS256 tokens that say which secret signed them, so a mismatch is explained, not guessed.

`cairn token` mints with the data dir's generated secret (or CAIRN_JWT_SECRET). Run with
another data dir than the server's, it silently signs with another secret, and a bare
"invalid token" leaves the user guessing. So every token carries a `kid` header derived
from the secret (a truncated sha256 over a domain-separated input: it names the secret
without revealing anything a signed token does not already expose), and the API, on a bad
signature, compares it with its own and says which case it is.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt

KID_PREFIX = "cairn-hs256-"


def key_id(secret: str) -> str:
    """A short, stable name for an HS256 secret (the `kid` header of the tokens it signs)."""
    digest = hashlib.sha256(b"cairn jwt key id\x00" + secret.encode()).hexdigest()
    return KID_PREFIX + digest[:12]


def mint(
    secret: str, subject: str, *, admin: bool = False, ttl: int, audience: str | None = None
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": ["admin"] if admin else [],
        "iat": now,
        "exp": now + ttl,
    }
    if audience:  # CAIRN_JWT_AUDIENCE: the server takes only tokens that name it
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": key_id(secret)})


def bad_signature_message(token: str, secret: str) -> str:
    """Why a token's signature does not verify with `secret`, as precisely as the token says."""
    try:
        header: dict[str, Any] = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return "the token is not valid"
    kid = header.get("kid")
    ours = key_id(secret)
    if isinstance(kid, str) and kid.startswith(KID_PREFIX) and kid != ours:
        return (
            f"the token was signed with another secret (key id {kid}; this server's is "
            f"{ours}): it was minted for another data dir or CAIRN_JWT_SECRET. Mint it where "
            "the server runs, with the server's CAIRN_DATA_DIR (`just token SUBJECT` in the "
            "checkout that ran `just up`)"
        )
    return "the token's signature does not match this server's secret"
