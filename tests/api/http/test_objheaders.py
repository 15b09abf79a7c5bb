"""Unit tests of api/http/objheaders.py: which of a PUT's headers are stored and how, the
400s naming the header, and which stored headers go on which answer."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.http import objheaders
from api.http.content import CACHE_CONTROL


def raw(*pairs: tuple[str, bytes]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v) for n, v in pairs]


def test_the_five_are_read_by_lower_case_name_and_nothing_else() -> None:
    got = objheaders.from_request(
        raw(
            ("Cache-Control", b" max-age=3600 "),
            ("CONTENT-ENCODING", b"gzip"),
            ("Content-Language", b"en"),
            ("content-language", b"de"),  # a list field sent twice: one value
            ("Content-Disposition", b'attachment; filename="a b.txt"'),
            ("Expires", b"Wed, 21 Oct 2037 07:28:00 GMT"),
            ("Content-Type", b"text/css"),
            ("X-Amz-Meta-A", b"1"),
            ("Pragma", b"no-cache"),
        )
    )
    assert got == {
        "cache-control": "max-age=3600",
        "content-encoding": "gzip",
        "content-language": "en, de",
        "content-disposition": 'attachment; filename="a b.txt"',
        "expires": "Wed, 21 Oct 2037 07:28:00 GMT",
    }
    assert objheaders.from_request(raw(("Cache-Control", b"  "))) == {}  # empty: not stored


@pytest.mark.parametrize(
    ("pairs", "header", "most"),
    [
        ((("Cache-Control", b"a\r\nb"),), "cache-control", 1024),
        ((("Content-Encoding", b"gz\nip"),), "content-encoding", 1024),
        ((("Expires", b"a\x00b"),), "expires", 1024),
        ((("Content-Language", b"en\x01"),), "content-language", 1024),
        ((("Content-Disposition", "inline; filename=ü".encode()),), "content-disposition", 1024),
        ((("Cache-Control", b"x" * 1025),), "cache-control", 1024),
        ((("Cache-Control", b"x" * 600), ("Cache-Control", b"y" * 600)), "cache-control", 1024),
        ((("Expires", b"a"), ("Expires", b"b")), "expires", 1024),  # not a list: ambiguous
    ],
)
def test_bad_values_are_400_naming_the_header(
    pairs: tuple[tuple[str, bytes], ...], header: str, most: int
) -> None:
    with pytest.raises(ApiError) as e:
        objheaders.from_request(raw(*pairs))
    assert (e.value.status, e.value.code) == (400, "invalid_header")
    assert e.value.details == {"header": header, "max_bytes": most}


def test_content_type_has_its_own_bound() -> None:
    objheaders.check_content_type(raw(("Content-Type", b"t/" + b"x" * 254)))
    for bad in (b"t/" + b"x" * 255, b"text/plain\x7f"):
        with pytest.raises(ApiError) as e:
            objheaders.check_content_type(raw(("Content-Type", bad)))
        assert e.value.details == {"header": "content-type", "max_bytes": 256}


STORED = {
    "cache-control": "public, max-age=60",
    "content-disposition": "inline",
    "content-encoding": "gzip",
    "content-language": "en",
    "expires": "Wed, 21 Oct 2037 07:28:00 GMT",
}


def answer(content_type: str = "text/css") -> dict[str, str]:
    return {
        "Cache-Control": CACHE_CONTROL,
        "Content-Type": content_type,
        "Content-Disposition": 'inline; filename="a.css"',
    }


def test_200_and_206_get_them_all_replacing_the_defaults() -> None:
    for status in (200, 206):
        h = answer()
        objheaders.apply(h, status, STORED, download=False)
        assert h == {
            "Cache-Control": "public, max-age=60",
            "Content-Type": "text/css",
            "Content-Disposition": "inline",
            "Content-Encoding": "gzip",
            "Content-Language": "en",
            "Expires": "Wed, 21 Oct 2037 07:28:00 GMT",
        }


def test_download_keeps_the_computed_disposition() -> None:
    h = answer()
    objheaders.apply(h, 200, STORED, download=True)
    assert h["Content-Disposition"] == 'inline; filename="a.css"'  # what plan() computed
    assert h["Content-Encoding"] == "gzip"


def test_304_gets_cache_control_and_expires_only_and_errors_none() -> None:
    h = {"Cache-Control": CACHE_CONTROL}
    objheaders.apply(h, 304, STORED, download=False)
    assert h == {"Cache-Control": "public, max-age=60", "Expires": STORED["expires"]}
    for status in (412, 416):
        h = {"Cache-Control": CACHE_CONTROL}
        objheaders.apply(h, status, STORED, download=False)
        assert h == {"Cache-Control": CACHE_CONTROL}


def test_a_multipart_answer_has_no_content_encoding() -> None:
    h = answer("multipart/byteranges; boundary=x")
    objheaders.apply(h, 206, STORED, download=False)
    assert "Content-Encoding" not in h and h["Content-Language"] == "en"


def test_only_a_disposition_can_travel_with_a_redirect() -> None:
    assert objheaders.redirectable({})
    assert objheaders.redirectable({"content-disposition": "inline"})
    assert not objheaders.redirectable({"content-encoding": "gzip"})
    assert not objheaders.redirectable({"cache-control": "max-age=1"})


def test_an_uploads_fields_are_read_by_the_same_rule() -> None:
    """POST /v1/uploads `headers`: names in any case, lower-case stored, empty not stored."""
    got = objheaders.from_fields(
        {"Cache-Control": "max-age=60", "EXPIRES": "0", "content-language": ""}
    )
    assert got == {"cache-control": "max-age=60", "expires": "0"}
    for fields, at_fault in (
        ({"Pragma": "no-cache"}, "Pragma"),  # not one an object keeps
        ({"Cache-Control": "a", "cache-control": "b"}, "cache-control"),  # named twice
        ({"Content-Encoding": "gzip\r\nX: 1"}, "content-encoding"),
    ):
        with pytest.raises(ApiError) as e:
            objheaders.from_fields(fields)
        assert e.value.status == 400 and e.value.code == "invalid_header"
        assert e.value.details == {"header": at_fault, "max_bytes": objheaders.MAX_HEADER_BYTES}


def test_tus_metadata_keys_naming_the_five_are_stored_headers_not_metadata() -> None:
    headers, rest = objheaders.split_tus_metadata(
        {"filename": "a.js", "key": "k", "Cache-Control": "no-cache", "content-encoding": "br"}
    )
    assert headers == {"cache-control": "no-cache", "content-encoding": "br"}
    assert rest == {"filename": "a.js", "key": "k"}
    assert objheaders.split_tus_metadata({"filename": "a"}) == ({}, {"filename": "a"})
