"""bus/blobs/signatures.py gives puremagic's own answer, for every signature in its table."""

from __future__ import annotations

import random
from collections.abc import Iterator

import puremagic
from puremagic import main as pm

from bus.blobs import signatures


def _slow(data: bytes, name: str) -> list[puremagic.PureMagicWithConfidence]:
    try:
        return puremagic.magic_string(data, filename=name)
    except (puremagic.PureError, ValueError):
        return []


def _place(size: int, parts: list[tuple[int, bytes]], fill: bytes) -> bytes:
    buf = bytearray(fill[:size].ljust(size, b"\0"))
    for offset, data in parts:
        if offset < 0:
            buf[len(buf) + offset : len(buf) + offset + len(data) or None] = data
        else:
            buf[offset : offset + len(data)] = data
    return bytes(buf)


def _samples() -> Iterator[tuple[bytes, str]]:
    rng = random.Random(7)
    noise = rng.randbytes(70_000)
    names = ["", "file.bin", "archive.tar.gz"]
    for row in pm.magic_header_array:
        size = max(64, row.offset + len(row.byte_match) + 16)
        for fill in (b"", noise):
            data = _place(size, [(row.offset, row.byte_match)], fill)
            for name in [*names, f"x{row.extension}"]:
                yield data, name
    for row in pm.magic_footer_array:
        yield _place(256, [(row.offset, row.byte_match)], noise), f"y{row.extension}"
    for key, parts in pm.multi_part_dict.items():
        bases = [r for r in pm.magic_header_array if r.byte_match == key] or [
            pm.PureMagic(key, 0, "", "", "")
        ]
        for base in bases:
            for part in parts:
                size = max(4096, base.offset + len(key) + max(part.offset, 0) + 64)
                data = _place(size, [(base.offset, key), (part.offset, part.byte_match)], b"")
                yield data, f"z{part.extension}"
    yield b"plain words, nothing magic\n" * 40, "notes.txt"
    yield noise[:4096], "random"


def test_the_same_matches_ranked_the_same_for_every_signature() -> None:
    checked = 0
    for data, name in _samples():
        fast, slow = signatures.matches(data, name), _slow(data, name)
        # Equal matches tie: puremagic orders its multi-part ones by a set, so compare the
        # ranking keys in order and the matches as sets.
        assert [(m.confidence, len(m.byte_match)) for m in fast] == [
            (m.confidence, len(m.byte_match)) for m in slow
        ], name
        assert sorted(fast) == sorted(slow), name
        checked += 1
    assert checked > 5_000


def test_extensions_are_read_as_puremagic_reads_them() -> None:
    for name in ["a.TAR.GZ", "b.tar.bz2", "noext", "c.JPG", ".hidden", "d.x.y", "e.abc.zip"]:
        assert signatures.extension_of(name) == pm.ext_from_filename(name)


def test_nothing_for_empty_data() -> None:
    assert signatures.matches(b"", "a.png") == []
