"""Text that came from elsewhere (a server, the database, a file name, an environment
variable), made safe to write to a terminal: `printable`.

Its own module, under bus/ with no dependencies, so that the HTTP client's printers
(bus/client/output.py) and the operator commands (bus/run/cli.py, the supervisor's banner)
escape with the one function, and an operator command need not import Rich for it.

Control characters (C0, DEL, C1: ESC, CR, backspace, the one-byte CSI \\x9b) are written
as escapes (`\\x1b`): a key another user chose, holding ESC, could otherwise retitle the
terminal, recolour it or rewrite what is on screen. Bidi embedding, override and isolate
characters are written as escapes too (`\\u202e`), as the web console shows them
(`invoice` + U+202E + `gpj.exe` must not read as `invoiceexe.jpg` in a terminal that
reorders). Every other character, non-ASCII text included, is kept."""

from __future__ import annotations

import unicodedata

# Bidi embeddings, overrides and isolates (the "Trojan Source" set, the same as the web
# console's: api/console/static/js/util.js): not controls (Unicode category Cf), but they
# reorder what follows them on screen.
BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def _escape(c: str) -> str:
    if unicodedata.category(c) == "Cc":
        return f"\\x{ord(c):02x}"
    if c in BIDI:
        return f"\\u{ord(c):04x}"
    return c


def printable(text: str) -> str:
    """`text` with each control character (C0, DEL, C1: ESC, CR, backspace...) written as
    an escape (`\\x1b`), and each bidi control as one (`\\u202e`), so that what came from
    elsewhere is shown, never obeyed."""
    return "".join(map(_escape, text))
