"""api/object_copy.requested alone: how an `x-amz-copy-source` and its companions are read,
from the raw header lines a server hands over (latin-1, one character per byte), and what
is refused (the whole system: tests/api/routes/test_objects_copy.py)."""

from __future__ import annotations

import pytest
from litestar.datastructures import Headers

from api.errors import ApiError
from api.object_copy import CopySource, onto_itself, requested


def asked(*lines: tuple[str, bytes | str], digests: tuple[str, ...] = ()) -> CopySource | None:
    raw = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in lines]
    return requested(
        Headers(raw), has_body=False, signed=False, metadata_sent=False, digests=digests
    )


def refused(*lines: tuple[str, bytes | str], digests: tuple[str, ...] = ()) -> ApiError:
    with pytest.raises(ApiError) as e:
        asked(*lines, digests=digests)
    assert (e.value.status, e.value.code) == (400, "invalid_copy_source")
    return e.value


@pytest.mark.parametrize(
    ("value", "bucket", "key"),
    [
        ("/b-1/k", "b-1", "k"),
        ("b-1/k", "b-1", "k"),  # S3 takes it without the leading slash too
        # `..` and `/` are ordinary characters of a key: never another bucket's object.
        ("/b-1/../victim/k", "b-1", "../victim/k"),
        ("/b-1/%2e%2e/k", "b-1", "../k"),
        ("/b-1/%2E%2E%2Fvictim%2Fk", "b-1", "../victim/k"),
        ("/b-1//k", "b-1", "/k"),  # the key `/k`, not `k`
        ("/b-1/a%3Fb", "b-1", "a?b"),
        ("/b-1/%C3%BC", "b-1", "ü"),
        # Raw UTF-8 (not percent-encoded) is the key meant, not its bytes read as latin-1.
        (b"/b-1/\xc3\xbc dir/\xe2\x82\xac", "b-1", "ü dir/€"),
    ],
)
def test_the_source_is_decoded_as_an_object_path_is(
    value: bytes | str, bucket: str, key: str
) -> None:
    copy = asked(("x-amz-copy-source", value))
    assert copy is not None and (copy.bucket, copy.key) == (bucket, key)


@pytest.mark.parametrize(
    "value",
    [
        "/b-1/k?versionId=3",
        "/b-1/k?",  # an unencoded `?` of the key `k?`: not a copy of `k`
        "/%2e%2e/k",  # `..` is no bucket
        "/../b-1/k",
        "/b-1",
        "/b-1/",
        "",
        "/b-1/%FF",  # not UTF-8 once decoded
        b"/b-1/\xff",  # not UTF-8 as sent
        "/b-1/%00",  # no key holds NUL
        "/b-1/" + "k" * 1025,  # longer than a key may be
    ],
)
def test_a_source_that_names_no_live_object_is_refused(value: bytes | str) -> None:
    err = refused(("x-amz-copy-source", value))
    if isinstance(value, str) and len(value) > 300:
        assert len(err.details["value"]) == 300  # a huge header is not echoed whole


def test_the_metadata_directive_is_copy_or_replace_in_any_case() -> None:
    source = ("x-amz-copy-source", "/b-1/k")
    plain = asked(source)
    assert plain is not None and not plain.replace_metadata
    for value in ("REPLACE", "replace", " Replace "):
        copy = asked(source, ("x-amz-metadata-directive", value))
        assert copy is not None and copy.replace_metadata
    for value in ("", " ", "MERGE", "COPY,REPLACE", "x" * 20_000):
        err = refused(source, ("x-amz-metadata-directive", value))
        assert err.details == {"header": "x-amz-metadata-directive"}


def test_a_declared_body_digest_is_refused_on_a_copy() -> None:
    for names in (("content-md5",), ("x-amz-checksum-sha256",)):
        err = refused(("x-amz-copy-source", "/b-1/k"), digests=names)
        assert err.details == {"header": names[0]}
    # Without a source a digest is the body's, checked elsewhere: not this module's.
    assert asked(digests=("content-md5",)) is None


def test_onto_itself_is_judged_on_the_decoded_key() -> None:
    """`/b-1/%6B` is the key `k`: a copy of k onto k that changes nothing, however spelled."""
    for spelled in ("/b-1/k", "/b-1/%6B", "b-1/k"):
        copy = asked(("x-amz-copy-source", spelled))
        assert copy is not None
        with pytest.raises(ApiError) as e:
            onto_itself(copy, "b-1", "k")
        assert e.value.code == "invalid_copy_source"
        onto_itself(copy, "b-1", "/k")  # another key: a copy like any
        onto_itself(copy, "b-2", "k")
    replace = asked(("x-amz-copy-source", "/b-1/%6B"), ("x-amz-metadata-directive", "REPLACE"))
    assert replace is not None
    onto_itself(replace, "b-1", "k")  # REPLACE changes the metadata: allowed
