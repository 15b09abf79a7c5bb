"""`printable` (bus/terminal.py): what came from elsewhere is shown, never obeyed."""

from __future__ import annotations

import unicodedata

from bus.terminal import BIDI, printable


def test_printable_changes_only_controls_and_bidi() -> None:
    for c in map(chr, range(0x3000)):
        shown = printable(c)
        if unicodedata.category(c) == "Cc" or c in BIDI:
            # An escape of printable ASCII, naming the character.
            assert shown.startswith("\\") and shown.isascii() and shown.isprintable(), repr(c)
            assert int(shown[2:], 16) == ord(c)
        else:
            assert shown == c, repr(c)
    assert BIDI == {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def test_a_name_that_would_clear_the_screen_and_reorder_it_is_shown() -> None:
    assert printable("a\x1b[2J\rb\x9b2J\u202egpj.exe") == "a\\x1b[2J\\x0db\\x9b2J\\u202egpj.exe"
