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
reorders). Line and paragraph separators (U+2028, U+2029) are written as escapes too: a
terminal may break the line there, so one row would read as two. So are lone surrogates
(`\\ud800`): JSON can carry one (`"\\ud800"`), Python's json module reads it into a str,
and writing that str to a UTF-8 terminal raised UnicodeEncodeError, a traceback in place
of the listing. Every other character, non-ASCII text included, is kept."""

from __future__ import annotations

import unicodedata

# Bidi embeddings, overrides and isolates (the "Trojan Source" set, the same as the web
# console's: api/console/static/js/util.js): not controls (Unicode category Cf), but they
# reorder what follows them on screen.
BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
# Shown as `\u....` escapes: bidi controls, line and paragraph separators (Zl, Zp) and
# lone surrogates (Cs), which no UTF-8 stream can encode.
_U_ESCAPED = frozenset({"Zl", "Zp", "Cs"})


def _escape(c: str) -> str:
    if unicodedata.category(c) == "Cc":
        return f"\\x{ord(c):02x}"
    if c in BIDI or unicodedata.category(c) in _U_ESCAPED:
        return f"\\u{ord(c):04x}"
    return c


def printable(text: str) -> str:
    """`text` with each control character (C0, DEL, C1: ESC, CR, backspace...) written as
    an escape (`\\x1b`), and each bidi control, line or paragraph separator and lone
    surrogate as one (`\\u202e`), so that what came from elsewhere is shown, never obeyed,
    and can always be written to a UTF-8 terminal."""
    return "".join(map(_escape, text))
