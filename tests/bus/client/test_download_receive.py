"""`_receive`, the download's read / write / hash pipeline, without a server: every byte
lands in order at its offset, the hash covers exactly them, the progress counts them, and
a failed write reaches the caller (with no lane left running)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bus.client.download import _receive
from bus.client.transfer import PIECE, Transfer, progress_bars


class _Body:
    """What `_receive` reads of an httpx response: pieces of uneven sizes."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def iter_bytes(self) -> Iterator[bytes]:
        yield from self.pieces


def _pieces(total: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    out, left = [], total
    while left:
        n = min(left, rnd.choice((1, 4096, 65_536, 100_000, PIECE + 7)))
        out.append(os.urandom(n))
        left -= n
    return out


def _transfer(total: int) -> tuple[Transfer, Any]:
    progress = progress_bars(Console(file=io.StringIO()))
    transfer = Transfer(progress, total, None)
    return transfer, transfer.add("f", total=total)


@pytest.mark.parametrize("prefix", [0, 12_345])
def test_every_byte_lands_in_order_after_the_prefix_and_is_hashed(
    tmp_path: Path, prefix: int
) -> None:
    pieces = _pieces(5 * PIECE + 321, seed=prefix)
    body = b"".join(pieces)
    kept = os.urandom(prefix)
    part = tmp_path / "f.part"
    part.write_bytes(kept + b"tail of an older part that the resume truncates")
    h = hashlib.sha256(kept)
    transfer, task = _transfer(prefix + len(body))
    with part.open("ab") as f:
        f.truncate(prefix)
        _receive(_Body(pieces), f, prefix, h, transfer, task)  # type: ignore[arg-type]
    assert part.read_bytes() == kept + body
    assert h.hexdigest() == hashlib.sha256(kept + body).hexdigest()
    assert transfer.progress.tasks[task].completed == len(body)


class _FillsUp:
    """A part file on a disk that fills up at the second batch."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.batches = 0

    def writelines(self, batch: list[bytes]) -> None:
        self.batches += 1
        if self.batches == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self.fd


def test_a_failed_write_reaches_the_caller_and_stops_the_download(tmp_path: Path) -> None:
    pieces = _pieces(6 * PIECE, seed=1)
    transfer, task = _transfer(6 * PIECE)
    with (tmp_path / "f.part").open("wb") as real:
        f = _FillsUp(real.fileno())
        with pytest.raises(OSError) as e:
            _receive(_Body(pieces), f, 0, hashlib.sha256(), transfer, task)  # type: ignore[arg-type]
    assert e.value.errno == errno.ENOSPC
    # Batch 3 is handed over only once batch 2's write is known to have succeeded.
    assert f.batches == 2
