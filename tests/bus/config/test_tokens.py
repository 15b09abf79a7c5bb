"""Tokens name their signing secret (`kid`), so a token for another data dir is explained."""

from __future__ import annotations

import jwt

from bus.config.tokens import KID_PREFIX, bad_signature_message, key_id, mint


def test_key_id_names_the_secret_stably_without_containing_it() -> None:
    assert key_id("s3cret-one-0123456789abcdef0123456789abcdef") == key_id(
        "s3cret-one-0123456789abcdef0123456789abcdef"
    )
    assert key_id("s3cret-one-0123456789abcdef0123456789abcdef") != key_id(
        "s3cret-two-0123456789abcdef0123456789abcdef"
    )
    assert key_id("s3cret-one-0123456789abcdef0123456789abcdef").startswith(KID_PREFIX)
    assert "s3cret" not in key_id("s3cret-one-0123456789abcdef0123456789abcdef")


def test_minted_tokens_carry_the_kid_and_verify() -> None:
    token = mint("secret-a-0123456789abcdef0123456789abcdef", "alice", admin=True, ttl=60)
    assert jwt.get_unverified_header(token)["kid"] == key_id(
        "secret-a-0123456789abcdef0123456789abcdef"
    )
    claims = jwt.decode(token, "secret-a-0123456789abcdef0123456789abcdef", algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["roles"] == ["admin"]
    assert claims["exp"] - claims["iat"] == 60


def test_message_names_another_secret_when_the_kid_differs() -> None:
    token = mint("secret-a-0123456789abcdef0123456789abcdef", "alice", ttl=60)
    message = bad_signature_message(token, "secret-b-0123456789abcdef0123456789abcdef")
    assert "signed with another secret" in message
    assert (
        key_id("secret-a-0123456789abcdef0123456789abcdef") in message
        and key_id("secret-b-0123456789abcdef0123456789abcdef") in message
    )
    assert "CAIRN_DATA_DIR" in message


def test_message_without_a_kid_says_only_what_is_known() -> None:
    token = jwt.encode(
        {"sub": "alice"}, "secret-a-0123456789abcdef0123456789abcdef", algorithm="HS256"
    )
    assert "another secret" not in bad_signature_message(
        token, "secret-b-0123456789abcdef0123456789abcdef"
    )
    assert (
        bad_signature_message("not a jwt", "secret-b-0123456789abcdef0123456789abcdef")
        == "the token is not valid"
    )
