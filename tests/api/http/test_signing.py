"""The signed-URL rules of api/http/signing.py, directly: what verifies, and why what does
not is refused (invalid, expired, wrong method), including key rotation."""

from __future__ import annotations

import pytest

from api.http.signing import NO_VERSION, SignatureError, Signer, allows, key_id

KEY = "k" * 40
OLD = "o" * 40
RES = "/v1/files/7a0b7a6e-7bb0-4c4b-9c4e-3c3e1b5f2a10/content"
NOW = 1_800_000_000


def refused(signer: Signer, method: str, resource: str, params: dict, now: float = NOW) -> str:
    with pytest.raises(SignatureError) as e:
        signer.verify(method, resource, params, now)
    return e.value.code


def test_a_signature_verifies_for_its_method_resource_and_time() -> None:
    s = Signer(KEY)
    params = s.sign("GET", RES, NOW + 60)
    assert set(params) == {"method", "expires", "kid", "signature"}
    grant = s.verify("GET", RES, params, NOW)
    assert (grant.method, grant.resource, grant.expires, grant.max_size) == (
        "GET",
        RES,
        NOW + 60,
        None,
    )
    # A GET URL answers HEAD too; a HEAD URL only HEAD; PUT only PUT.
    assert s.verify("HEAD", RES, params, NOW).method == "GET"
    head = s.sign("HEAD", RES, NOW + 60)
    assert refused(s, "GET", RES, head) == "signed_url_wrong_method"
    assert refused(s, "PUT", RES, params) == "signed_url_wrong_method"
    assert (allows("PUT", "PUT"), allows("PUT", "GET"), allows("HEAD", "HEAD")) == (
        True,
        False,
        True,
    )


def test_expiry_is_exclusive_and_checked_after_the_mac() -> None:
    s = Signer(KEY)
    params = s.sign("GET", RES, NOW + 60)
    assert s.verify("GET", RES, params, NOW + 59.9)
    assert refused(s, "GET", RES, params, now=NOW + 60) == "signed_url_expired"
    # Pushing `expires` forward is tampering, not a longer life.
    assert refused(s, "GET", RES, {**params, "expires": str(NOW + 10**6)}) == "signed_url_invalid"


@pytest.mark.parametrize(
    "change",
    [
        {"signature": "A" * 43},
        {"method": "HEAD"},
        {"expires": "1"},
        {"kid": "0" * 16},
        {"signature": None},
        {"expires": None},
        {"method": None},
        {"expires": "-5"},
        {"expires": " 1800000060"},
        {"expires": "1e9"},
        {"signature": "not base64 !"},
        {"signature": "A" * 200},
        {"max_size": "12"},
        {"max_size": "x"},
        {"version": "none"},
        {"method": "DELETE"},
    ],
)
def test_any_change_to_the_url_is_invalid(change: dict) -> None:
    s = Signer(KEY)
    params = {**s.sign("GET", RES, NOW + 60), **change}
    assert refused(s, "GET", RES, params) == "signed_url_invalid"


def test_a_url_for_one_resource_never_verifies_for_another() -> None:
    s = Signer(KEY)
    obj = "/v1/buckets/b1/objects/a/b c\n\u00e9"
    params = s.sign("GET", obj, NOW + 60)
    assert s.verify("GET", obj, params, NOW)
    for other in ("/v1/buckets/b1/objects/a/b c\n\u00e8", "/v1/buckets/b1/objects/a", RES):
        assert refused(s, "GET", other, params) == "signed_url_invalid"


def test_a_put_grant_carries_its_size_limit_and_the_version_it_replaces() -> None:
    s = Signer(KEY)
    params = s.sign("PUT", RES, NOW + 60, max_size=1024, version=NO_VERSION)
    assert (params["max_size"], params["version"]) == ("1024", "none")
    grant = s.verify("PUT", RES, params, NOW)
    assert (grant.max_size, grant.version) == (1024, "none")
    assert refused(s, "PUT", RES, {**params, "max_size": "1025"}) == "signed_url_invalid"
    assert refused(s, "PUT", RES, {**params, "max_size": None}) == "signed_url_invalid"
    assert refused(s, "PUT", RES, {**params, "version": "abc"}) == "signed_url_invalid"
    assert refused(s, "PUT", RES, {**params, "version": None}) == "signed_url_invalid"
    assert refused(s, "PUT", RES, {**params, "version": "a b"}) == "signed_url_invalid"
    v = "ab" * 32 + ":1767225600123456"
    assert s.verify("PUT", RES, s.sign("PUT", RES, NOW + 60, 5, v), NOW).version == v
    for bad in ({}, {"max_size": 5}, {"version": "none"}):
        with pytest.raises(ValueError):
            s.sign("PUT", RES, NOW + 60, **bad)  # a PUT needs both
    with pytest.raises(ValueError):
        s.sign("GET", RES, NOW + 60, max_size=5)
    with pytest.raises(ValueError):
        s.sign("PUT", RES, NOW + 60, max_size=5, version="a\nb")


def test_rotation_keeps_listed_old_keys_and_drops_the_rest() -> None:
    old = Signer(OLD)
    params = old.sign("GET", RES, NOW + 60)
    assert params["kid"] == key_id(OLD) != key_id(KEY)
    # The key changed, the old one listed: its URLs stay valid until they expire.
    rotated = Signer(KEY, old_keys=[OLD])
    assert rotated.verify("GET", RES, params, NOW)
    assert rotated.sign("GET", RES, NOW + 60)["kid"] == key_id(KEY)
    # The key changed, the old one not listed: every URL it signed is refused.
    assert refused(Signer(KEY), "GET", RES, params) == "signed_url_invalid"
    # Another server key with the same kid string cannot verify (kid is only a lookup).
    forged = {**Signer("x" * 40).sign("GET", RES, NOW + 60), "kid": key_id(KEY)}
    assert refused(Signer(KEY), "GET", RES, forged) == "signed_url_invalid"


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Signer("short")
    with pytest.raises(ValueError):
        Signer(KEY, old_keys=["short"])
