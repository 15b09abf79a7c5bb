"""x-amz-meta-* headers to metadata and back (api/http/amzmeta.py), including what no
HTTP client sends (control bytes, names that are not tokens): the server's parser may let
them through one day, and they are refused, never stored or echoed."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.http.amzmeta import from_request, to_headers


def meta(*pairs: tuple[bytes, bytes]) -> dict[str, str]:
    return from_request([(b"content-type", b"text/plain"), *pairs])


def test_names_lowercased_values_trimmed_repeats_joined() -> None:
    got = meta(
        (b"X-Amz-Meta-Color", b"blue"),
        (b"x-amz-meta-tag", b"a"),
        (b"X-AMZ-META-TAG", b" b\t"),
        (b"x-amz-meta-empty", b""),
        (b"x-amz-metadata", b"not ours"),  # no `-` after meta: not a metadata header
    )
    assert got == {"color": "blue", "tag": "a,b", "empty": ""}
    assert meta() == {}


@pytest.mark.parametrize(
    "pair",
    [
        (b"x-amz-meta-", b"v"),
        (b"x-amz-meta-a b", b"v"),
        (b"x-amz-meta-a:b", b"v"),
        (b"x-amz-meta-\xc3\xbc", b"v"),
        (b"x-amz-meta-k", b"a\x01b"),
        (b"x-amz-meta-k", b"a\nb"),
        (b"x-amz-meta-k", b"a\x7fb"),
        (b"x-amz-meta-k", "caf\u00e9".encode()),
        (b"x-amz-meta-k", b"v" * 8192),
        (b"x-amz-meta-" + b"n" * 256, b"v"),
    ],
)
def test_bad_metadata_is_invalid_metadata(pair: tuple[bytes, bytes]) -> None:
    with pytest.raises(ApiError) as e:
        meta(pair)
    assert e.value.status == 400 and e.value.code == "invalid_metadata"


def test_the_limit_counts_names_and_values_together() -> None:
    assert meta((b"x-amz-meta-k", b"v" * 8191)) == {"k": "v" * 8191}
    with pytest.raises(ApiError):
        meta((b"x-amz-meta-k", b"v" * 4000), (b"x-amz-meta-l", b"v" * 4200))


def test_only_what_reads_back_exactly_is_sent() -> None:
    assert to_headers(
        {
            "fine": "a b\tc",
            "Upper": "x",
            "empty": "",
            "unicode": "\u00fc",
            "ctl": "a\r\nX-Evil: 1",
            "padded": " x",
            "sp ace": "x",
            "\u212a": "kelvin sign, lowercases to k",
            "Twice": "1",
            "twice": "2",
        }
    ) == {
        "x-amz-meta-fine": "a b\tc",
        "x-amz-meta-upper": "x",
        "x-amz-meta-empty": "",
    }
