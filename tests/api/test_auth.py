"""Credentials (api/auth.py): a token is verified once per process and remembered, and a
remembered token still expires on time and never stands in for a different string; a
request carrying both an API key and a bearer token is 400 `ambiguous_credentials`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import api.auth as auth
from api.errors import ApiError
from bus.config.settings import ApiKey, Settings
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.system import System, isolated_system

SECRET = "auth-test-secret-" + "y" * 32


def authenticator(tmp_path: Path) -> auth.Authenticator:
    return auth.Authenticator(Settings(data_dir=tmp_path, jwt_secret=SECRET))


def bearer(claims: dict[str, Any], secret: str = SECRET) -> dict[str, str]:
    return {"authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


def counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    decoded: list[str] = []
    real = jwt.decode

    def decode(token: str, *args: Any, **kw: Any) -> Any:
        decoded.append(token)
        return real(token, *args, **kw)

    monkeypatch.setattr(auth.jwt, "decode", decode)
    return decoded


def test_a_token_is_verified_once_and_then_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = authenticator(tmp_path)
    decoded = counting_decodes(monkeypatch)
    exp = int(time.time()) + 600
    headers = bearer({"sub": "ann", "roles": ["admin"], "exp": exp})
    first = a.authenticate(headers)
    assert first == auth.Principal("ann", True, float(exp))
    assert a.authenticate(headers) == first
    assert len(decoded) == 1
    # Another user's token is its own entry.
    assert a.authenticate(bearer({"sub": "bob", "exp": exp})).user == "bob"
    assert len(decoded) == 2


def test_a_remembered_token_is_not_served_past_its_expiry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = authenticator(tmp_path)
    decoded = counting_decodes(monkeypatch)
    exp = int(time.time()) + 60
    headers = bearer({"sub": "ann", "exp": exp})
    assert a.authenticate(headers).user == "ann"
    assert a.authenticate(headers).user == "ann"
    assert len(decoded) == 1
    # Past `exp` by this module's clock, the remembered answer is dropped and the token
    # verified again, which says it expired (by this clock: PyJWT's own allows for skew).
    monkeypatch.setattr(auth.time, "time", lambda: exp + 1.0)
    with pytest.raises(ApiError) as e:
        a.authenticate(headers)
    assert e.value.code == "token_expired"
    assert len(decoded) == 2


def test_a_forged_token_is_refused_even_beside_a_remembered_one(tmp_path: Path) -> None:
    a = authenticator(tmp_path)
    claims = {"sub": "ann", "exp": int(time.time()) + 600}
    assert a.authenticate(bearer(claims)).user == "ann"
    for _ in range(2):  # refused every time: a failure is never remembered
        with pytest.raises(ApiError) as e:
            a.authenticate(bearer(claims, secret="another-secret-" + "z" * 32))
        assert (e.value.status, e.value.code) == (401, "invalid_token")


def test_what_it_remembers_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_TOKENS", 3)
    a = authenticator(tmp_path)
    decoded = counting_decodes(monkeypatch)
    exp = int(time.time()) + 600
    tokens = [bearer({"sub": f"u{i}", "exp": exp}) for i in range(5)]
    for headers in tokens:
        a.authenticate(headers)
    a.authenticate(tokens[0])  # the oldest was forgotten: verified again
    assert len(decoded) == 6


def test_credentials_sent_twice_are_refused(tmp_path: Path) -> None:
    # Which of two would count is a guess (the first used to win): a proxy or a log may
    # take the other one, so neither is taken.
    from litestar.datastructures import Headers

    a = authenticator(tmp_path)
    exp = int(time.time()) + 600
    ann, bob = bearer({"sub": "ann", "exp": exp}), bearer({"sub": "bob", "exp": exp})
    assert (
        a.authenticate(Headers([(b"authorization", ann["authorization"].encode())])).user == "ann"
    )
    for twice in (
        [
            (b"authorization", ann["authorization"].encode()),
            (b"authorization", bob["authorization"].encode()),
        ],
        [(b"authorization", ann["authorization"].encode())] * 2,
        [(b"x-api-key", b"k1"), (b"x-api-key", b"k2")],
    ):
        with pytest.raises(ApiError) as e:
            a.authenticate(Headers(twice))
        assert e.value.status == 401 and "more than once" in e.value.message


@pytest.mark.parametrize("sub", ["x" * (auth.MAX_SUBJECT + 1), "ann\x00", "ann\nroot", "\x1b[31m"])
def test_a_subject_that_is_no_user_name_is_refused(tmp_path: Path, sub: str) -> None:
    # The subject is the owner on every event of the user: bounded, no control characters
    # (a NUL could not even be stored).
    a = authenticator(tmp_path)
    with pytest.raises(ApiError) as e:
        a.authenticate(bearer({"sub": sub, "exp": int(time.time()) + 600}))
    assert e.value.status == 401 and e.value.code == "invalid_token"
    longest = "x" * auth.MAX_SUBJECT
    assert a.authenticate(bearer({"sub": longest, "exp": int(time.time()) + 600})).user == longest


def test_an_exp_too_large_for_a_clock_is_401_not_500(tmp_path: Path) -> None:
    # PyJWT takes any integer `exp`; 10**400 then overflowed float() here: a 500 for a
    # signed token (an issuer's "never expires"). Now a plain invalid_token.
    a = authenticator(tmp_path)
    with pytest.raises(ApiError) as e:
        a.authenticate(bearer({"sub": "ann", "exp": 10**400}))
    assert (e.value.status, e.value.code) == (401, "invalid_token")


def test_a_token_for_an_audience_is_taken_only_where_that_audience_is_configured(
    tmp_path: Path,
) -> None:
    # An identity provider's tokens name the service they are for (`aud`). Every such
    # token was refused with a bare "the token is not valid" (PyJWT refuses an `aud` when
    # given none to expect), so RS256 with a real IdP could not work; and accepting any
    # would take a token the same IdP issued to another application.
    exp = int(time.time()) + 600
    for_cairn = bearer({"sub": "ann", "exp": exp, "aud": "cairn"})
    with pytest.raises(ApiError) as e:
        authenticator(tmp_path).authenticate(for_cairn)
    assert (e.value.status, e.value.code) == (401, "invalid_token")
    assert "CAIRN_JWT_AUDIENCE" in e.value.message
    a = auth.Authenticator(Settings(data_dir=tmp_path, jwt_secret=SECRET, jwt_audience="cairn"))
    assert a.authenticate(for_cairn).user == "ann"
    assert a.authenticate(bearer({"sub": "ann", "exp": exp, "aud": ["x", "cairn"]})).user == "ann"
    for other in (
        bearer({"sub": "ann", "exp": exp, "aud": "another-app"}),
        bearer({"sub": "ann", "exp": exp}),  # names no audience at all
    ):
        with pytest.raises(ApiError) as e:
            a.authenticate(other)
        assert (e.value.status, e.value.code) == (401, "invalid_token")
        assert "aud" in e.value.message


def test_cairn_token_names_the_configured_audience(tmp_path: Path) -> None:
    from bus.run.cli import make_token

    s = Settings(data_dir=tmp_path, jwt_secret=SECRET, jwt_audience="cairn")
    token = make_token(s, "ann", ttl=60)
    assert auth.Authenticator(s).authenticate({"authorization": f"Bearer {token}"}).user == "ann"


def test_an_issuers_clock_a_little_ahead_is_tolerated_but_exp_stays_exact(
    tmp_path: Path,
) -> None:
    # PyJWT refuses a token whose `iat` (or `nbf`) is even a second ahead of this clock: a
    # token fresh from an IdP (or `cairn token` on another machine) whose clock runs a
    # little ahead was refused as "not valid" at random. A minute of skew is taken now.
    a = authenticator(tmp_path)
    now = int(time.time())
    for skewed in ({"iat": now + 5}, {"nbf": now + 5}):
        assert a.authenticate(bearer({"sub": "ann", "exp": now + 600, **skewed})).user == "ann"
    with pytest.raises(ApiError) as e:
        a.authenticate(bearer({"sub": "ann", "exp": now + 600, "nbf": now + 600}))
    assert (e.value.status, e.value.code) == (401, "invalid_token")
    assert "not valid yet" in e.value.message
    # `exp` is not stretched: live streams end at it, so requests must too.
    with pytest.raises(ApiError) as e:
        a.authenticate(bearer({"sub": "ann", "exp": now - 5}))
    assert (e.value.status, e.value.code) == (401, "token_expired")


def keyed_authenticator(tmp_path: Path) -> auth.Authenticator:
    keys = (ApiKey("k-ann", "ann"), ApiKey("k-root", "root", admin=True))
    return auth.Authenticator(Settings(data_dir=tmp_path, jwt_secret=SECRET, api_keys=keys))


@pytest.mark.parametrize(
    ("key", "sub"),
    [
        ("k-ann", "bob"),  # two different users: the key's used to win, silently
        ("k-ann", "ann"),  # the same user: still two credentials, one would be ignored
        ("k-root", "ann"),  # an admin key beside a user's token
        ("no-such-key", "ann"),  # an invalid key beside a valid token
        ("k-ann", None),  # a valid key beside a forged token
        ("", "ann"),  # an empty key header is still a key header
    ],
)
def test_an_api_key_and_a_bearer_token_together_are_400_ambiguous(
    tmp_path: Path, key: str, sub: str | None
) -> None:
    # A request with both X-API-Key and Authorization authenticated as the key's user
    # whatever the token said: a client (or a proxy adding one) never learnt that one of
    # its credentials was ignored, wrong or someone else's. Neither is taken now.
    a = keyed_authenticator(tmp_path)
    exp = int(time.time()) + 600
    token = bearer({"sub": sub, "exp": exp}) if sub else bearer({"sub": "ann"}, "forged" * 6)
    with pytest.raises(ApiError) as e:
        a.authenticate({"x-api-key": key, **token})
    assert (e.value.status, e.value.code) == (400, "ambiguous_credentials")
    assert e.value.details == {"headers": ["Authorization", "X-API-Key"]}
    assert "WWW-Authenticate" not in (e.value.headers or {})
    # Each alone is what it always was.
    assert a.authenticate({"x-api-key": "k-ann"}).user == "ann"
    assert a.authenticate(bearer({"sub": "bob", "exp": exp})).user == "bob"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def keyed_system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, api_keys=(ApiKey("k-ann", "ann"),)
    ) as s:
        yield s


@pytest.mark.asyncio(loop_scope="session")
async def test_both_credentials_on_a_request_are_400_in_the_one_error_shape(
    keyed_system: System,
) -> None:
    s = keyed_system
    both = {"X-API-Key": "k-ann", "Authorization": f"Bearer {s.token('bob')}"}
    async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
        for method, path in (
            ("GET", "/v1/uploads"),
            ("POST", "/v1/buckets"),
            ("GET", "/v1/events"),
        ):
            r = await c.request(method, path, headers=both, json={"name": "amb-x"})
            assert r.status_code == 400, (path, r.text)
            body = r.json()
            assert set(body) == {"error", "request_id"}
            assert body["error"]["code"] == "ambiguous_credentials"
            assert body["error"]["details"] == {"headers": ["Authorization", "X-API-Key"]}
        # Nothing was done on anyone's behalf: no bucket for ann nor bob.
        for who in ({"X-API-Key": "k-ann"}, {"Authorization": both["Authorization"]}):
            r = await c.get("/v1/buckets/amb-x", headers=who)
            assert r.status_code == 404, r.text
        # Each credential alone works as before.
        assert (await c.get("/v1/uploads", headers={"X-API-Key": "k-ann"})).status_code == 200
        r = await c.get("/v1/uploads", headers={"Authorization": both["Authorization"]})
        assert r.status_code == 200


@pytest.mark.asyncio(loop_scope="session")
async def test_signed_and_public_reads_without_credentials_are_not_affected(
    keyed_system: System,
) -> None:
    # Signed URLs need no credentials and the rule is about credentials sent: a signed GET
    # (which the console and the CLI send without any) still works.
    s = keyed_system
    async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
        key = {"X-API-Key": "k-ann"}
        name = "amb-signed"
        assert (await c.post("/v1/buckets", json={"name": name}, headers=key)).status_code == 201
        path = f"/v1/buckets/{name}/objects/a.txt"
        assert (await c.put(path, content=b"signed", headers=key)).status_code == 201
        r = await c.post(
            f"{path}/signed-url", json={"method": "GET", "expires_in": 300}, headers=key
        )
        assert r.status_code == 200, r.text
        signed = urlsplit(r.json()["url"])
        got = await c.get(f"{signed.path}?{signed.query}")
        assert got.status_code == 200 and got.content == b"signed"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_websocket_auth_message_with_both_credentials_is_refused(
    keyed_system: System,
) -> None:
    # The first-message auth took the token and ignored an api_key beside it.
    url = keyed_system.url.replace("http://", "ws://") + "/v1/events/ws"
    async with connect(url) as ws:
        auth_msg = {"type": "auth", "token": keyed_system.token("bob"), "api_key": "k-ann"}
        await ws.send(json.dumps(auth_msg))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert closed.value.rcvd.reason.startswith("ambiguous_credentials")
