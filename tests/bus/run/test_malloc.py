"""The heap thresholds of the processes that move bytes: set where libc is glibc, and
what they change (freed heap stays with the process instead of going back at once)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from bus.run import malloc

GLIBC = platform.libc_ver()[0] == "glibc"
REPO = Path(__file__).resolve().parents[3]

# In a fresh interpreter (the test process's heap is not ours to tune): allocate 8 MiB,
# touch it, free it, and print how much resident memory the free gave back (KiB).
_PROBE = """
import sys
from bus.run import malloc
if sys.argv[1] == "tuned":
    assert malloc.tune("api")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4
block = bytearray(8 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
held = rss()
del block
print(held - rss())
"""


def test_only_the_kinds_that_move_bytes_are_tuned() -> None:
    assert malloc.BYTE_KINDS == {"api"}
    assert malloc.tune("actors") is False
    assert malloc.tune("fetcher") is False
    assert malloc.tune("projector") is False


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_freed_heap_stays_with_a_tuned_process() -> None:
    def given_back(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, mode],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        return int(out.stdout)

    # glibc's default: a block that big is its own mapping, unmapped when freed.
    assert given_back("default") >= 7 * 1024
    # Tuned: it came from the heap, and the heap keeps it for the next one.
    assert given_back("tuned") < 1024
