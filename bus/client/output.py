"""What commands print: Rich tables on a terminal, JSON with `--json` (one document on
stdout, nothing else there), messages and progress bars on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.out = Console(soft_wrap=True)
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
        table = Table(box=None, header_style="bold", pad_edge=False)
        for _, heading in columns:
            table.add_column(heading, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(key)) for key, _ in columns))
        self.out.print(table)

    def record(self, data: dict[str, Any], fields: Sequence[tuple[str, str]] | None = None) -> None:
        if self.as_json:
            self.emit(data)
            return
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, label in fields or [(k, k) for k in data]:
            table.add_row(label, _cell(data.get(key)))
        self.out.print(table)

    def note(self, message: str) -> None:
        self.err.print(message, highlight=False, markup=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
