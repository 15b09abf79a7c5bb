"""`printable` (bus/terminal.py): what came from elsewhere is shown, never obeyed, and
can always be written to a UTF-8 terminal."""

from __future__ import annotations

import io
import json
import unicodedata

from bus.terminal import BIDI, printable

ESCAPED_AS_U = {"Zl", "Zp", "Cs"}  # line/paragraph separators, lone surrogates


def test_printable_changes_only_controls_bidi_separators_and_surrogates() -> None:
    for c in map(chr, range(0x110000)):  # every code point, surrogates included
        shown = printable(c)
        category = unicodedata.category(c)
        if category == "Cc" or c in BIDI or category in ESCAPED_AS_U:
            # An escape of printable ASCII, naming the character.
            assert shown.startswith("\\") and shown.isascii() and shown.isprintable(), repr(c)
            assert int(shown[2:], 16) == ord(c)
        else:
            assert shown == c, repr(c)
    assert BIDI == {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def test_a_name_that_would_clear_the_screen_and_reorder_it_is_shown() -> None:
    assert printable("a\x1b[2J\rb\x9b2J\u202egpj.exe") == "a\\x1b[2J\\x0db\\x9b2J\\u202egpj.exe"


def test_a_lone_surrogate_from_json_can_be_written_to_a_utf8_terminal() -> None:
    """JSON may carry a lone surrogate (`"\\ud800"`) and Python's json reads it: printed
    as it was, it raised UnicodeEncodeError on a UTF-8 stream (a traceback for a listing)."""
    name = json.loads('{"key": "a\\ud800b\\udc80\\u2028c"}')["key"]
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    out.write(printable(name))  # raised before
    out.flush()
    assert out.buffer.getvalue() == b"a\\ud800b\\udc80\\u2028c"  # type: ignore[attr-defined]
