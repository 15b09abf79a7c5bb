"""PieceFeed: `fed` comes once the piece's size is known and its bytes are all hashed,
whichever comes last, with the running digest as it was at the piece's end."""

from __future__ import annotations

import asyncio
import hashlib

from api.tus.piece_feed import PieceFeed


async def test_fed_waits_for_the_size_and_every_byte_whichever_comes_last() -> None:
    running = hashlib.sha256()
    bytes_last = PieceFeed(None, running)
    bytes_last.update(b"abc")
    bytes_last.end(5)
    await asyncio.sleep(0)
    assert not bytes_last.fed.done()  # two bytes still to come
    bytes_last.update(b"de")
    state = await asyncio.wait_for(bytes_last.fed, 1)
    assert state.hexdigest() == hashlib.sha256(b"abcde").hexdigest()

    size_last = PieceFeed(None, running)
    size_last.update(b"fg")
    await asyncio.sleep(0)
    assert not size_last.fed.done()  # the size is not known yet
    size_last.end(2)
    state = await asyncio.wait_for(size_last.fed, 1)
    assert state.hexdigest() == hashlib.sha256(b"abcdefg").hexdigest()


async def test_the_state_is_a_copy_taken_at_the_pieces_end() -> None:
    checksum, running = hashlib.md5(), hashlib.sha256()
    feed = PieceFeed(checksum, running)
    feed.end(4)
    # From a thread, as the blob store feeds it.
    await asyncio.to_thread(feed.update, b"wxyz")
    state = await asyncio.wait_for(feed.fed, 1)
    running.update(b"the next piece")  # the next piece goes into the same running digest
    assert state.hexdigest() == hashlib.sha256(b"wxyz").hexdigest()
    assert checksum.hexdigest() == hashlib.md5(b"wxyz").hexdigest()


async def test_without_hashes_fed_comes_at_once_and_a_gone_request_is_harmless() -> None:
    feed = PieceFeed(None, None)
    assert not feed.feeds  # nothing to hash: the store is not given it
    assert await asyncio.wait_for(feed.fed, 1) is None  # and the next piece may start
    gone = PieceFeed(None, hashlib.sha256())
    gone.fed.cancel()  # the request went away before its piece was stored
    gone.update(b"y")
    gone.end(1)
    await asyncio.sleep(0)  # the resolution finds the future cancelled and leaves it
    assert gone.fed.cancelled()
