"""Content-Disposition (api/http/disposition.py): the name a browser saves under, whatever
the stored name holds: quotes, controls, separators, non-ASCII, percent signs."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from api.http.disposition import content_disposition

# type; filename="<quoted-string without escapes>"[; filename*=UTF-8''<pct-encoded>]
_VALUE = re.compile(
    r"""(inline|attachment); filename="([ !#-\[\]-~]*)"(?:; filename\*=UTF-8''([A-Za-z0-9%!#$&+.^_`|~-]+))?"""
)


@pytest.mark.parametrize(
    ("name", "saved"),
    [
        ("report.pdf", "report.pdf"),
        ('a "quoted" name.txt', 'a "quoted" name.txt'),
        ("x\r\nSet-Cookie: a=b.txt", "x\r\nSet-Cookie: a=b.txt"),
        ("a;b=c.txt", "a;b=c.txt"),
        ("dir\\evil.txt", "evil.txt"),
        ("../../etc/passwd", "passwd"),
        ("résumé ü.txt", "résumé ü.txt"),
        # RFC 6266 appendix D: some browsers decode %XX in `filename`, others do not, so a
        # literal `100%41.txt` was saved as `100A.txt` by one and as itself by the other.
        ("100%41.txt", "100%41.txt"),
        ("50%.txt", "50%.txt"),
    ],
)
def test_the_saved_name_is_the_stored_one_and_the_header_stays_one_field(
    name: str, saved: str
) -> None:
    value = content_disposition(name, attachment=True)
    m = _VALUE.fullmatch(value)
    assert m is not None, value
    fallback, extended = m.group(2), m.group(3)
    assert "%" not in fallback  # never read as an escape
    assert (unquote(extended, errors="strict") if extended else fallback) == saved
