"""How a tus upload's bytes are cut into pieces, and so how big an upload can be.

An upload holds at most MAX_PIECES pieces (its manifest travels in single bus messages),
so pieces grow with the offset where they start: CAIRN_TUS_PIECE_BYTES (8 MiB by default,
at least 1 MiB) until offset / PIECE_GROWTH is larger, up to MAX_PIECE (64 MiB, reached at
128 GiB). At most about 25,000 pieces then reach 1 TiB, leaving room for the short tail
piece each PATCH may end with, and Tus-Max-Size is CAIRN_MAX_UPLOAD_BYTES (1 TiB by
default). A piece is held in memory while it fills (at most two per PATCH: one filling,
one being stored). The piece size trades that memory against fsyncs: every piece costs a
file and a directory fsync (bus/blobs/local.py), so 1 MiB pieces made a 1 GiB upload wait
for about 2,000 fsyncs, 8 MiB pieces for about 250.
"""

from __future__ import annotations

import functools

from api.completion import MAX_MANIFEST_ENTRIES
from api.errors import ApiError
from bus.config.settings import Settings

# Pieces: made durable as soon as they are full; their size grows with the offset (above).
PIECE = 1024 * 1024
MAX_PIECE = 64 * PIECE
PIECE_GROWTH = 2000

# A file's manifest travels whole in single bus messages (UploadCompleted, CreateFile,
# FileCreated, and a final upload's InitiateUpload), which must stay under the producer's
# request size limit (4 MiB, about 45k pieces of ~90 bytes): past it a command fails and an
# event would stall the relay. So an upload holds at most this many pieces.
# Read as `pieces.MAX_PIECES` where it is checked (appender, controller): one binding rules.
MAX_PIECES = MAX_MANIFEST_ENTRIES


def piece_at(offset: int, base: int = PIECE) -> int:
    """The size of a piece that starts at `offset` into its upload: at least `base`
    (CAIRN_TUS_PIECE_BYTES), growing with the offset, at most MAX_PIECE."""
    grown = -(-(offset // PIECE_GROWTH) // PIECE) * PIECE  # offset / PIECE_GROWTH, in MiB
    return min(max(base, grown), MAX_PIECE)


def pieces_between(start: int, end: int, base: int = PIECE) -> int:
    """How many full-size pieces cover bytes [start, end) of an upload (the last may be
    short)."""
    n = 0
    while start < end:
        start += piece_at(start, base)
        n += 1
    return n


@functools.cache
def reach(max_pieces: int, base: int = PIECE) -> int:
    """The most bytes a tus upload can hold: three quarters of its pieces full-size (about
    1.4 TiB), the rest left for the short tail piece each PATCH may end with."""
    position = 0
    for _ in range(max_pieces * 3 // 4):
        position += piece_at(position, base)
    return position


def max_size(settings: Settings) -> int:
    """The largest tus upload: CAIRN_MAX_UPLOAD_BYTES, within the manifest's limit (which
    the default 1 TiB is well within)."""
    return min(settings.max_upload_bytes, reach(MAX_PIECES, settings.tus_piece_bytes))


def too_many_pieces() -> ApiError:
    return ApiError(
        413,
        "too_many_pieces",
        f"an upload holds at most {MAX_PIECES} pieces: send bigger PATCHes",
        {"max_pieces": MAX_PIECES, "max_piece_bytes": MAX_PIECE},
    )
