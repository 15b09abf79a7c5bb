"""api/running_digests.py: which entries completion may trust (pure bookkeeping; the
end-to-end effect is in tests/api/test_uploads_running_digest.py and tests/api/tus/test_controller.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from api import running_digests as rd
from domain.uploads import UploadState, UploadStatus

T = datetime(2026, 5, 1, tzinfo=UTC)


def upload(uid: str, received: int, sha256: str | None = None) -> UploadState:
    return UploadState(
        id=uid,
        owner="alice",
        file_name="f",
        file_size=received,
        chunk_size=received,
        total_chunks=0,
        content_type="application/octet-stream",
        sha256=sha256,
        bucket="default",
        metadata={},
        status=UploadStatus.IN_PROGRESS,
        created_at=T,
        updated_at=T,
        mode="stream",
        offset=received,
    )


def test_resume_continues_only_from_the_recorded_offset() -> None:
    h = rd.resume("r1", 0)
    assert h is not None
    h.update(b"abc")
    rd.record("r1", 3, h)
    assert rd.resume("r1", 5) is None  # a gap: nothing covers [0, 5)
    again = rd.resume("r1", 3)
    assert again is not None and again is not h  # a copy
    again.update(b"de")
    rd.record("r1", 5, again)
    assert rd.take(upload("r1", 5)) == hashlib.sha256(b"abcde").hexdigest()
    assert rd.take(upload("r1", 5)) is None  # taken once


def test_the_furthest_entry_is_kept() -> None:
    h = hashlib.sha256(b"abcdef")
    rd.record("r2", 6, h)
    rd.record("r2", 2, hashlib.sha256(b"ab"))  # a replayed first chunk
    assert rd.take(upload("r2", 6)) == h.hexdigest()


def test_no_digest_short_of_the_bytes_or_with_a_declared_sha256() -> None:
    rd.record("r3", 4, hashlib.sha256(b"abcd"))
    assert rd.take(upload("r3", 8)) is None
    rd.record("r4", 4, hashlib.sha256(b"abcd"))
    assert rd.take(upload("r4", 4, sha256=hashlib.sha256(b"abcd").hexdigest())) is None
