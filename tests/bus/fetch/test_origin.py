"""Reading an origin's answer (bus/fetch/origin.py): the file name a fetch takes from
Content-Disposition, whatever the origin writes there."""

from __future__ import annotations

import httpx
import pytest

from bus.fetch.origin import content_range, file_name, retry_after, unsatisfied_length

URL = "http://example.com/dir/from-url.bin"


def _named(disposition: str) -> str:
    return file_name(httpx.Response(200, headers={"content-disposition": disposition}), URL)


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        ("attachment; filename*=UTF-8''na%C3%AFve.bin", "naïve.bin"),
        ('attachment; filename="plain.bin"', "plain.bin"),
        ("attachment; filename=../../etc/passwd", "passwd"),  # never a path
    ],
)
def test_the_name_comes_from_content_disposition(disposition: str, name: str) -> None:
    assert _named(disposition) == name


@pytest.mark.parametrize("charset", ["bogus", "rot13", "zlib"])
def test_an_unknown_charset_in_filename_star_is_passed_over(charset: str) -> None:
    # Was LookupError out of urllib's unquote: the fetch worker's run crashed on the
    # answer's headers, three times, and the fetch failed with `worker_failed`.
    assert _named(f"attachment; filename*={charset}''a%41.bin") == "from-url.bin"
    both = f"attachment; filename*={charset}''a%41.bin; filename=\"plain.bin\""
    assert _named(both) == "plain.bin"


@pytest.mark.parametrize(
    ("charset", "value"),
    [
        ("idna", "a%41.bin"),  # takes no `replace` error handler: UnicodeError
        ("undefined", "a%41.bin"),  # refuses every byte: UnicodeError
        ("punycode", "%FF.bin"),  # ASCII only, strictly: UnicodeDecodeError
    ],
)
def test_a_charset_that_cannot_decode_the_name_is_passed_over(charset: str, value: str) -> None:
    # Known charsets whose decoding raises (a ValueError, not the LookupError above) were
    # the same crash of the worker's run on the answer's headers, and `worker_failed`.
    assert _named(f"attachment; filename*={charset}''{value}") == "from-url.bin"
    both = f"attachment; filename*={charset}''{value}; filename=\"plain.bin\""
    assert _named(both) == "plain.bin"


@pytest.mark.parametrize(
    "value",
    [
        "bytes 0-1/" + "9" * 5000,  # past int()'s 4,300 digits: ValueError
        "bytes " + "1" * 5000 + "-2/3",
        "bytes 0-1/99999999999999999999",  # past any size a fetch may hold (int64)
        "bytes \u0661-\u0662/\u0663",  # Arabic-Indic digits: \d took them
    ],
)
def test_a_content_range_an_origin_garbles_is_no_range(value: str) -> None:
    # Raised out of the worker's reading of a 206 (a crash of its run: worker_failed),
    # instead of being the "another offset" that starts the fetch over.
    assert content_range(value) is None


@pytest.mark.parametrize(
    "value", ["bytes */" + "9" * 5000, "bytes */99999999999999999999", "bytes */\u0663"]
)
def test_a_416_length_an_origin_garbles_is_none(value: str) -> None:
    assert unsatisfied_length(value) is None


def test_a_content_range_is_read() -> None:
    assert content_range("bytes 5-9/10") == (5, 9, 10)
    assert content_range("bytes 5-9/*") == (5, 9, None)
    assert unsatisfied_length("bytes */10") == 10


@pytest.mark.parametrize("value", ["\u00b2", "\u00b9\u00b2", "\u0663"])
def test_a_retry_after_of_digits_that_are_no_number_is_absent(value: str) -> None:
    # `isdigit` is true for superscripts (a byte 0xB2 decoded as Latin-1), whose float()
    # is a ValueError: it crashed the worker's run on a 503 instead of being retried.
    assert retry_after(value) is None
    assert retry_after("7") == 7.0
