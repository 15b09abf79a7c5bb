"""What uploads and downloads share: Rich progress bars (per file and in total: bytes,
speed, ETA), an optional rate limit, Ctrl-C as a flag the workers check, and sha256 of
files read in pieces (never whole in memory)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from bus.client.errors import Interrupted
from bus.terminal import printable

PIECE = 1 << 20  # read and send 1 MiB at a time


def progress_bars(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        # Bars only on a terminal; scripts get the summary (or --json) at the end.
        disable=not console.is_terminal,
    )


class Transfer:
    """Shared by the worker threads of one command: the bars, the stop flag, the rate."""

    def __init__(
        self,
        progress: Progress,
        total: int | None,
        limit_rate: int | None,
        description: str = "total",
    ) -> None:
        """`total` None: a length known only at the end (stdin, bus/client/pipe.py), whose
        one bar is the total's, under `description`."""
        self.progress = progress
        self.stop = threading.Event()
        # `cairn upload - --name NAME`: a name that came from a script, shown, never obeyed.
        self.total_task = progress.add_task(printable(description), total=total)
        self.limit_rate = limit_rate
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._moved = 0

    def add(self, description: str, total: int | None, completed: int = 0) -> TaskID:
        # A file's name may be the server's (a download): shown, never obeyed.
        return self.progress.add_task(printable(description), total=total, completed=completed)

    def advance(self, task: TaskID, n: int) -> None:
        self.progress.advance(task, n)
        self.count(n)

    def count(self, n: int) -> None:
        """`n` bytes moved: in the total, and under the rate limit."""
        self.progress.advance(self.total_task, n)
        if self.limit_rate:
            self._throttle(n)

    def skip(self, n: int) -> None:
        """Bytes already on the other side (a resume): counted in the total bar at once."""
        self.progress.advance(self.total_task, n)

    def check(self) -> None:
        if self.stop.is_set():
            raise Interrupted()

    def _throttle(self, n: int) -> None:
        # One rate for the whole command (all workers): wait until the bytes moved so far
        # fit under it. The wait watches the stop flag, so Ctrl-C is not delayed.
        assert self.limit_rate
        with self._lock:
            self._moved += n
            due = self._started + self._moved / self.limit_rate
        delay = due - time.monotonic()
        if delay > 0 and self.stop.wait(delay):
            raise Interrupted()


def read_pieces(
    f: BinaryIO, length: int, transfer: Transfer, task: TaskID, piece: int = PIECE
) -> Iterator[bytes]:
    """`length` bytes of `f` from where it stands, as an HTTP body, counting progress."""
    left = length
    while left > 0:
        transfer.check()
        data = f.read(min(piece, left))
        if not data:
            raise OSError("the file got shorter while being read")
        left -= len(data)
        yield data
        transfer.advance(task, len(data))


def sha256_file(path: Path, upto: int | None = None, stop: threading.Event | None = None) -> str:
    return sha256_prefix(path, upto, stop).hexdigest()


def sha256_prefix(
    path: Path, upto: int | None = None, stop: threading.Event | None = None
) -> hashlib._Hash:
    h = hashlib.sha256()
    with path.open("rb") as f:
        left = upto
        while left is None or left > 0:
            if stop is not None and stop.is_set():
                raise Interrupted()
            data = f.read(PIECE if left is None else min(PIECE, left))
            if not data:
                break
            h.update(data)
            if left is not None:
                left -= len(data)
    return h
