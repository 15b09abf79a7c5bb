"""DeclaredDigests alone: which header lines declare a digest, what each must look like,
and the MD5 hashed on the way in (the whole system: tests/api/routes/test_objects_digests)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from api.errors import ApiError
from api.http.body_digests import DeclaredDigests


def lines(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def test_only_the_two_digests_are_read_and_in_any_case() -> None:
    md5, sha = hashlib.md5(b"x").digest(), hashlib.sha256(b"x").digest()
    got = DeclaredDigests.of(
        lines(
            ("CONTENT-MD5", base64.b64encode(md5).decode()),
            ("X-Amz-Checksum-SHA256", " " + base64.b64encode(sha).decode()),
            ("x-amz-checksum-algorithm", "SHA256"),
            ("content-type", "text/plain"),
        )
    )
    assert (got.md5, got.sha256) == (md5, sha)
    assert DeclaredDigests.of(lines(("x-amz-meta-md5", "abc"))) == DeclaredDigests()


@pytest.mark.parametrize(
    "pairs",
    [
        (("content-md5", "===="),),
        (("content-md5", base64.b64encode(b"\0" * 15).decode()),),
        (("x-amz-checksum-sha256", base64.b64encode(b"\0" * 31).decode()),),
        (("x-amz-checksum-crc64nvme", "AAAAAAAAAAA="),),
        (("content-md5", "AAAAAAAAAAAAAAAAAAAAAA=="), ("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==")),
        # A digest that would come in an aws-chunked trailer: never checked, so refused.
        (("X-Amz-Trailer", "x-amz-checksum-sha256"),),
        (("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==="),),  # one `=` too many
        (("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg"),),  # no padding
        (("content-md5", "1B2M2Y8Asg TpgAmY7PhCfg=="),),  # a space inside
        (("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="[:-2] + "-_"),),  # base64url
        (("x-amz-checksum-sha256", ""),),
        (("x-amz-checksum-", "AAAA"),),
    ],
)
def test_what_cannot_be_checked_is_refused(pairs: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(ApiError) as e:
        DeclaredDigests.of(lines(*pairs))
    assert (e.value.status, e.value.code) == (400, "invalid_checksum")
    assert e.value.details["header"] == pairs[0][0].lower()


@pytest.mark.parametrize("value", ["aws-chunked", "AWS-Chunked", "gzip, aws-chunked"])
def test_an_aws_chunked_body_is_415(value: str) -> None:
    with pytest.raises(ApiError) as e:
        DeclaredDigests.of(lines(("Content-Encoding", value)))
    assert (e.value.status, e.value.code) == (415, "unsupported_media_type")
    assert e.value.details == {"header": "content-encoding"}
    # Another coding is the client's business: its bytes are stored as sent.
    assert DeclaredDigests.of(lines(("content-encoding", "gzip"))) == DeclaredDigests()


async def test_the_md5_is_hashed_on_the_way_and_checked() -> None:
    body = [b"abc", b"", os.urandom(300_000), os.urandom(400_000), b"def" * 1000]  # both paths
    whole = b"".join(body)

    async def source() -> AsyncIterator[bytes]:
        for part in body:
            yield part

    declared = DeclaredDigests(md5=hashlib.md5(whole).digest())
    assert [p async for p in declared.hashed(source())] == body
    declared.check(hashlib.sha256(whole).hexdigest())  # no error
    wrong = DeclaredDigests(md5=hashlib.md5(b"other").digest())
    assert [p async for p in wrong.hashed(source())] == body
    with pytest.raises(ApiError) as e:
        wrong.check(hashlib.sha256(whole).hexdigest())
    assert e.value.code == "checksum_mismatch"
    assert e.value.details["actual"] == base64.b64encode(hashlib.md5(whole).digest()).decode()
    # Without a declared MD5 the body passes untouched, and only the sha256 counts.
    plain = source()
    assert DeclaredDigests().hashed(plain) is plain
    with pytest.raises(ApiError):
        DeclaredDigests(sha256=b"\0" * 32).check(hashlib.sha256(whole).hexdigest())
