"""Reading an origin's answer (bus/fetch/origin.py): the file name a fetch takes from
Content-Disposition, whatever the origin writes there."""

from __future__ import annotations

import httpx
import pytest

from bus.fetch.origin import file_name

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
