"""Media type detection from the first bytes and the name (for files uploaded without one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.blobs.local import LocalBlobStore
from bus.blobs.sniff import GENERIC, SNIFF_BYTES, content_type_of, detect, type_from_head

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
ZIP = b"PK\x03\x04" + b"\x00" * 40

CASES = [
    (PNG, "photo", "image/png"),  # content wins without an extension
    (PNG, "photo.txt", "image/png"),  # ... and over a misleading one
    (PDF, "doc", "application/pdf"),
    (ZIP, "a.zip", "application/zip"),
    (b"<!DOCTYPE html><html><body>x</body></html>", "page", "text/html"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "a.svg", "image/svg+xml"),
    (b"hello", "a.html", "text/html"),  # unknown content: the name decides
    (b"body{}", "a.css", "text/css"),
    (b"plain words\n", "notes", "text/plain; charset=utf-8"),
    ("grüße\n".encode(), "notes", "text/plain; charset=utf-8"),
    ("é".encode()[:1], "x", GENERIC),  # not UTF-8 (a lone lead byte is not a character)
    (b"\x00\x01\x02\x03", "blob", GENERIC),
    (b"", "empty", GENERIC),
    (b"", "empty.json", "application/json"),
]


@pytest.mark.parametrize(("head", "name", "want"), CASES)
def test_detect(head: bytes, name: str, want: str) -> None:
    assert detect(head, name) == want


def test_utf8_cut_mid_character_is_still_text() -> None:
    head = ("a" * 10 + "€").encode()[:-1]  # the sample ends inside a 3-byte character
    assert detect(head, "x", truncated=True) == "text/plain; charset=utf-8"
    assert detect(head, "x") == GENERIC  # the whole file: an incomplete character


@pytest.mark.asyncio
async def test_declared_types_are_kept_and_generic_ones_detected(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)

    async def one(data: bytes) -> list[tuple[str, int]]:
        async def body():  # type: ignore[no-untyped-def]
            yield data

        sha, size = await store.put_stream(body())
        return [(sha, size)]

    # The first chunk is only 4 bytes: detection reads across chunk boundaries.
    manifest = await one(PNG[:4]) + await one(PNG[4:])
    assert await content_type_of(store, manifest, "x", "image/jpeg") == "image/jpeg"
    assert await content_type_of(store, manifest, "x", GENERIC) == "image/png"
    assert await content_type_of(store, manifest, "x", "") == "image/png"
    # Bytes that cannot be read: judged by the name alone, never an error.
    missing = [("f" * 64, 10)]
    assert await content_type_of(store, missing, "a.png", GENERIC) == "image/png"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "name", "declared"),
    [
        (PNG, "x", ""),
        (PNG, "x", GENERIC),
        (PNG, "x", "image/jpeg"),
        (b"plain words\n" * 2000, "notes", ""),  # longer than the sample: truncated
        (("a" * 8191 + "€").encode(), "x", ""),  # the sample ends inside a character
        (b"\x00\x01binary", "a.bin", ""),
    ],
)
async def test_a_kept_head_gives_the_type_reading_back_gives(
    tmp_path: Path, data: bytes, name: str, declared: str
) -> None:
    """A body's first SNIFF_BYTES kept on the way in (tus creation-with-upload, object PUT)
    type the file exactly as reading it back from the store does."""
    store = LocalBlobStore(tmp_path)

    async def body():  # type: ignore[no-untyped-def]
        yield data

    sha, size = await store.put_stream(body())
    read_back = await content_type_of(store, [(sha, size)], name, declared)
    assert type_from_head(data[:SNIFF_BYTES], size, name, declared) == read_back
    assert type_from_head(data, size, name, declared) == read_back  # more kept: the same
