"""Who is calling: JWT bearer tokens (HS256 or RS256) or API keys.

Every aggregate has an owner; handlers pass the principal's user id into commands and
queries, and the domain answers "not found" for other users' ids (never 403: no leaks).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

import jwt
from litestar import Request

from api.errors import ApiError
from bus.aio import BoundedLRU
from bus.config.settings import Settings
from bus.config.tokens import bad_signature_message
from domain.values import has_control_characters

# How many verified tokens an API process remembers (see Authenticator).
VERIFIED_TOKENS = 4096
# The longest user name (a token's `sub`) accepted.
MAX_SUBJECT = 255
# Seconds an issuer's clock may run ahead of ours: PyJWT refuses a token whose `iat` or
# `nbf` is even a second in the future, so a token fresh from an IdP (or `cairn token` on
# another machine) was refused at random. `exp` is not stretched (see Authenticator).
CLOCK_SKEW = 60


@dataclass(frozen=True)
class Principal:
    user: str
    admin: bool = False
    expires_at: float | None = None  # the token's `exp` (epoch seconds): live streams end there


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.keys: list[tuple[bytes, Principal]] = [
            (k.key.encode(), Principal(k.user, k.admin)) for k in settings.api_keys
        ]
        if settings.jwt_public_key:
            key = settings.jwt_public_key
            if not key.lstrip().startswith("-----"):
                with open(key) as f:  # a path to a PEM file
                    key = f.read()
            self.jwt_key: Any = key
            self.algorithms = ["RS256"]
        else:
            self.jwt_key = settings.resolved_jwt_secret()
            self.algorithms = ["HS256"]
        # A token without `exp` would be valid forever: refused unless the operator says so.
        self.required_claims = ["sub"] if settings.jwt_allow_no_exp else ["sub", "exp"]
        # An identity provider's tokens name the service they are for (`aud`). With
        # CAIRN_JWT_AUDIENCE only tokens for Cairn are taken, not one the same IdP issued
        # to another application; without it a token naming an audience is refused, and
        # the message says which setting would take it.
        self.audience = settings.jwt_audience
        if self.audience:
            self.required_claims.append("aud")
        # Tokens this process verified, and who they name: a client sends the same token
        # with every request, and verifying it (base64, JSON, HMAC or RSA) again each time
        # was a few percent of a small upload's CPU. Only the exact string that passed is
        # remembered, and its expiry is checked on every use; the key never changes while
        # the process runs, so nothing else can make a verified token invalid.
        self._verified: BoundedLRU[str, Principal] = BoundedLRU(VERIFIED_TOKENS)

    def authenticate(self, headers: Any) -> Principal:
        getall = getattr(headers, "getall", None)
        if getall is not None and any(len(getall(h, [])) > 1 for h in _CREDENTIALS):
            # Which one would count is a guess (a proxy may pick the other): refused.
            raise ApiError(
                401, "unauthorized", "credentials sent more than once", headers=_challenge()
            )
        api_key = headers.get("x-api-key")
        if api_key is not None and headers.get("authorization") is not None:
            raise ambiguous_credentials()
        if api_key:
            given = api_key.encode()
            found = None
            for key, principal in self.keys:
                # compare against every key in constant time, so timing reveals nothing
                if hmac.compare_digest(key, given):
                    found = principal
            if found is None:
                raise ApiError(401, "unauthorized", "invalid API key", headers=_challenge())
            return found
        auth = headers.get("authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "authentication required", headers=_challenge())
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at is None or time.time() < known.expires_at:
                return known
            self._verified.pop(token)  # expired: decoded again below, which says so
        principal = self._verify(token)
        self._verified[token] = principal
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token.strip(),
                self.jwt_key,
                algorithms=self.algorithms,
                audience=self.audience,
                leeway=CLOCK_SKEW,
                options={"require": self.required_claims},
            )
        except jwt.ExpiredSignatureError as e:
            raise ApiError(
                401, "token_expired", "the token has expired", headers=_challenge()
            ) from e
        except jwt.ImmatureSignatureError as e:
            raise ApiError(
                401,
                "invalid_token",
                "the token is not valid yet (its `nbf` or `iat` is in the future)",
                headers=_challenge(),
            ) from e
        except jwt.MissingRequiredClaimError as e:
            raise ApiError(
                401,
                "invalid_token",
                f"the token has no `{e.claim}` claim",
                {"missing_claim": e.claim},
                headers=_challenge(),
            ) from e
        except jwt.InvalidAudienceError as e:
            message = (
                "the token is not for this server: its `aud` does not name CAIRN_JWT_AUDIENCE"
                if self.audience
                else "the token names an audience (`aud`) and this server expects none:"
                " set CAIRN_JWT_AUDIENCE to the audience its tokens name"
            )
            raise ApiError(401, "invalid_token", message, headers=_challenge()) from e
        except jwt.InvalidSignatureError as e:
            message = "the token's signature does not match"
            if isinstance(self.jwt_key, str) and self.algorithms == ["HS256"]:
                message = bad_signature_message(token.strip(), self.jwt_key)
            raise ApiError(401, "invalid_token", message, headers=_challenge()) from e
        except jwt.PyJWTError as e:
            raise ApiError(
                401, "invalid_token", "the token is not valid", headers=_challenge()
            ) from e
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise ApiError(401, "invalid_token", "the token has no subject", headers=_challenge())
        if len(sub) > MAX_SUBJECT or has_control_characters(sub):
            # The subject is the owner recorded on every event and row of this user: a
            # name, not a blob (and no NUL, which nothing could store).
            raise ApiError(
                401,
                "invalid_token",
                f"the token's subject must be 1 to {MAX_SUBJECT} characters, none of them"
                " control characters",
                headers=_challenge(),
            )
        roles = claims.get("roles") or []
        exp = claims.get("exp")
        try:
            expires_at = float(exp) if isinstance(exp, int | float) else None
        except OverflowError:  # PyJWT takes any integer; a clock cannot (10**400)
            raise ApiError(
                401, "invalid_token", "the token's `exp` is out of range", headers=_challenge()
            ) from None
        if expires_at is not None and expires_at <= time.time():
            # The leeway above is for `iat` and `nbf`: live streams end at `exp` itself, and
            # a remembered token is served only before it, so every request agrees.
            raise ApiError(401, "token_expired", "the token has expired", headers=_challenge())
        return Principal(sub, isinstance(roles, list) and "admin" in roles, expires_at)


# Headers that carry credentials: at most one of each per request.
_CREDENTIALS = ("authorization", "x-api-key")


def ambiguous_credentials() -> ApiError:
    """An API key and a bearer token on one request. The key used to win silently, whoever
    the token named: a client never learnt that one of its credentials was ignored, wrong or
    another user's. Neither is checked (saying which one is valid would help a guesser), and
    it is 400, not 401: no credential is missing, the request is malformed."""
    return ApiError(
        400,
        "ambiguous_credentials",
        "send either an API key (X-API-Key) or a bearer token (Authorization), not both",
        {"headers": ["Authorization", "X-API-Key"]},
    )


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="cairn"'}


def authentication_required() -> ApiError:
    """The answer to an anonymous request for something that is not public (whether or not
    it exists: an anonymous caller learns nothing more than "authenticate")."""
    return ApiError(401, "unauthorized", "authentication required", headers=_challenge())


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return request.app.state.cairn.auth.authenticate(request.headers)  # type: ignore[no-any-return]


async def provide_optional_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """For routes that also answer anonymous callers (public buckets, signed URLs): None
    when the request carries no credentials; credentials that are there must be valid."""
    if request.headers.get("x-api-key") is None and request.headers.get("authorization") is None:
        return None
    return await provide_principal(request)


def require_admin(p: Principal) -> None:
    if not p.admin:
        raise ApiError(403, "forbidden", "the admin role is required")
