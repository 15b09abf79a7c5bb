"""What commands print: Rich tables on a terminal, JSON with `--json` (one document on
stdout, nothing else there), messages and progress bars on stderr.

A table row is one line whatever the width: no cell is folded, so an id copied from a
terminal, or read by a script from a pipe (`cairn ls | grep ...`, where Rich would
otherwise assume 80 columns), is whole. A row wider than the terminal wraps there as
`docker ps` rows do. Times are shown to the second, in UTC; `--json` has them in full.

What the server sends (names, keys, messages, event data) is shown as it is, never read as
Rich markup (`report [draft].pdf` keeps its brackets), and its control characters are
shown as escapes, as are bidi controls (`printable`, bus/terminal.py, which says why; the
operator commands in bus/run/ use the same one). Every line printed for people goes
through `printable`; `--json` is exact."""

from __future__ import annotations

import errno
import io
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bus.terminal import printable

# Fields that hold an RFC 3339 time (shown as 2026-12-06T07:00:22Z): these and every
# `..._at`.
TIMES = frozenset({"when"})
# Rich's space between two columns of a table without a box.
GAP = 2


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Rich exits 1 here itself; raising instead lets the command end as every other
        broken pipe does (bus/client/commands.py run: quiet, exit 141)."""
        self.quiet = True
        raise BrokenPipeError


class _Closed(io.RawIOBase):
    """Standard output when the command started with it closed (`cairn ls >&-`): Python
    made sys.stdout None, so --json and `-o -` ended in an AttributeError traceback and a
    table went nowhere with exit 0. Each write now fails as a write to a closed descriptor
    does (an io_error, exit 1, as `ls >&-` says `write error`)."""

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        raise OSError(errno.EBADF, "standard output is closed")


class Output:
    def __init__(self, as_json: bool) -> None:
        if sys.stdout is None:
            sys.stdout = io.TextIOWrapper(_Closed(), write_through=True)
        self.as_json = as_json
        self.out = _Console(soft_wrap=True)
        self.err = Console(stderr=True)

    def emit(self, data: Any) -> None:
        """One JSON document (scripts) on stdout."""
        sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
        sys.stdout.flush()

    def line(self, data: Any) -> None:
        """One JSON object per line, for streams (events)."""
        self.emit(data)

    def table(
        self, rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]], *, raw: Any
    ) -> None:
        """`columns` are (key, heading); `raw` is what --json prints instead."""
        if self.as_json:
            self.emit(raw)
            return
        cells = [[_shown(key, row.get(key)) for key, _ in columns] for row in rows]
        widths = [
            max([cell_len(heading), *(cell_len(r[i]) for r in cells)])
            for i, (_, heading) in enumerate(columns)
        ]
        table = Table(box=None, header_style="bold", pad_edge=False)
        for _, heading in columns:
            table.add_column(heading, no_wrap=True)
        for r in cells:
            table.add_row(*(Text(c) for c in r))
        self._print_whole(table, sum(widths) + GAP * (len(columns) - 1))

    def _print_whole(self, table: Table, needed: int) -> None:
        """As wide as the widest row needs, so that Rich neither folds nor crops a cell.
        (Console.print's own `width` can only narrow it.)"""
        width = self.out.width
        self.out.width = max(width, needed)
        try:
            self.out.print(table)
        finally:
            self.out.width = width

    def record(self, data: dict[str, Any], fields: Sequence[tuple[str, str]] | None = None) -> None:
        if self.as_json:
            self.emit(data)
            return
        # One line per field, as a table's rows: a value folded at 80 columns (Rich's
        # width when stdout is a pipe) broke `cairn stats | grep` and cut ids in two.
        rows = [
            (label, _shown(key, data.get(key))) for key, label in fields or [(k, k) for k in data]
        ]
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(no_wrap=True)
        for label, value in rows:
            table.add_row(label, Text(value))
        labels = max((cell_len(k) for k, _ in rows), default=0)
        self._print_whole(table, labels + GAP + max((cell_len(v) for _, v in rows), default=0))

    def note(self, message: str) -> None:
        # soft_wrap: a message (a path) on one line, not folded at Rich's 80 columns
        # when stderr is a file or a pipe.
        self.err.print(printable(message), highlight=False, markup=False, soft_wrap=True)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return printable(str(value))


def _shown(key: str, value: Any) -> str:
    return to_the_second(value) if key in TIMES or key.endswith("_at") else _cell(value)


def to_the_second(value: Any) -> str:
    """An RFC 3339 time to the second, in UTC; anything else as `_cell` shows it."""
    if isinstance(value, str) and value:
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            return printable(value)
        if t.tzinfo is not None:
            return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _cell(value)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
