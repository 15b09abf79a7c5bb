"""archive(): a synchronous writer in a thread gets every member's bytes in order (small ones
read whole in bounded batches, larger ones streamed), its output reaches the loop in
gathered pieces, a failure on either side is raised on the loop, and a consumer that stops
early ends the thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime

import pytest

from domain.files import FileState
from handlers.tasks import archive_thread
from handlers.tasks.archive_thread import OUT_BYTES, SMALL_BATCH_BYTES, SMALL_MEMBER, Entry, archive
from handlers.tasks.threads import QUEUE_DEPTH

pytestmark = pytest.mark.asyncio(loop_scope="session")

AT = datetime(2026, 1, 2, tzinfo=UTC)


def state(i: int, size: int) -> FileState:
    return FileState(
        id=f"f{i}",
        owner="o",
        name=f"m{i}",
        size=size,
        content_type="application/octet-stream",
        sha256="0" * 64,
        manifest=(("0" * 64, size),),
        bucket="default",
        created_at=AT,
        updated_at=AT,
    )


def body(st: FileState) -> bytes:
    return bytes([int(st.id[1:]) % 251]) * st.size


class Reads:
    """read_member: a member's bytes in 16 KiB pieces, recording what was read when."""

    def __init__(self) -> None:
        self.bytes = 0
        self.calls: list[str] = []

    async def __call__(self, st: FileState) -> AsyncIterator[bytes]:
        self.calls.append(st.id)
        data = body(st)
        for i in range(0, len(data), 16384):
            self.bytes += len(data[i : i + 16384])
            yield data[i : i + 16384]


def tagged(entries: Iterator[Entry], write: Callable[[bytes], None]) -> None:
    """A writer that emits each member as name, NUL, bytes, NUL, a piece per chunk."""
    for name, _st, chunks in entries:
        write(name.encode() + b"\0")
        for chunk in chunks:
            write(chunk)
        write(b"\0")


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [piece async for piece in stream]


async def test_every_member_in_order_small_and_large_and_empty() -> None:
    sizes = [10, 0, SMALL_MEMBER, SMALL_MEMBER + 1, 3 * SMALL_MEMBER, 5, 7] + [100] * 2000
    members = [(f"n{i}", state(i, size)) for i, size in enumerate(sizes)]
    reads = Reads()
    pieces = await collect(archive(tagged, members, reads))
    expected = b"".join(name.encode() + b"\0" + body(st) + b"\0" for name, st in members)
    assert b"".join(pieces) == expected
    assert reads.calls == [st.id for _, st in members]
    # Gathered: every piece but the last is at least OUT_BYTES (the writer wrote thousands
    # of small pieces), so the loop got a handful of hand-offs, not one per write.
    assert all(len(p) >= OUT_BYTES for p in pieces[:-1])
    assert len(pieces) <= len(expected) // OUT_BYTES + 1


async def test_small_members_are_fetched_in_batches_not_one_round_trip_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hops = 0
    real = asyncio.run_coroutine_threadsafe

    def counting(coro, loop):  # type: ignore[no-untyped-def]
        nonlocal hops
        hops += 1
        return real(coro, loop)

    monkeypatch.setattr(archive_thread.asyncio, "run_coroutine_threadsafe", counting)
    members = [(f"n{i}", state(i, 20)) for i in range(5000)]
    await collect(archive(tagged, members, Reads()))
    # 5,000 members of 20 bytes: ten batches of 512 members and a few hand-offs of output
    # (the control: stream-zip's own async bridge made several round trips per member).
    assert hops < 30, hops


async def test_read_ahead_is_bounded() -> None:
    members = [(f"n{i}", state(i, SMALL_MEMBER)) for i in range(200)]
    reads = Reads()
    stream = archive(tagged, members, reads)
    first = await anext(stream)
    assert first
    # The writer holds at most one batch ahead of its output, and the queue QUEUE_DEPTH pieces.
    bound = 2 * SMALL_BATCH_BYTES + (QUEUE_DEPTH + 2) * OUT_BYTES
    assert reads.bytes <= bound < 200 * SMALL_MEMBER
    await stream.aclose()


async def test_a_failed_read_is_raised_on_the_loop() -> None:
    class Gone(Exception):
        pass

    async def failing(st: FileState) -> AsyncIterator[bytes]:
        if st.id == "f3":
            raise Gone(st.id)
        yield body(st)

    for size in (10, 3 * SMALL_MEMBER):  # read whole by the loop; streamed by the thread
        members = [(f"n{i}", state(i, size)) for i in range(6)]
        with pytest.raises(Gone):
            await collect(archive(tagged, members, failing))


async def test_a_failing_writer_is_raised_on_the_loop() -> None:
    def broken(entries: Iterator[Entry], write: Callable[[bytes], None]) -> None:
        next(entries)
        raise ValueError("bad archive")

    with pytest.raises(ValueError, match="bad archive"):
        await collect(archive(broken, [("a", state(1, 10))], Reads()))


async def test_a_consumer_that_stops_early_ends_the_thread() -> None:
    members = [(f"n{i}", state(i, SMALL_MEMBER)) for i in range(2000)]
    reads = Reads()
    ended = threading.Event()

    def writer(entries: Iterator[Entry], write: Callable[[bytes], None]) -> None:
        try:
            tagged(entries, write)
        finally:
            ended.set()

    stream = archive(writer, members, reads)
    await anext(stream)
    assert not ended.is_set()  # blocked on the full queue, far from the end
    await stream.aclose()
    # aclose returned once the writer's thread had: its next hand-off failed.
    assert ended.is_set()
    assert reads.bytes < 2000 * SMALL_MEMBER
