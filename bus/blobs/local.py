"""Blob store adapters: content-addressed chunk storage on the local filesystem.

Every byte a user uploads or the URL cache fetches lands here as a chunk named by its
sha256; events only ever carry (sha256, size). So the store must be fast (it sits on the
upload path), durable when `put_stream` returns (the caller appends an event right after,
and a 2xx means durable), and must never expose a partial blob. Manifests (a file as an
ordered list of chunks) are read and hashed in bus/blobs/manifests.py, for every store.

Layout under the root: `chunks/<sha[0:2]>/<sha[2:4]>/<sha>` for blobs, `tmp/` for puts in
flight (same filesystem, so the final rename is atomic). All blocking I/O and hashing runs
in the default thread pool; the event loop only shuffles buffer references.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bus.aio import BoundedLRU
from bus.blobs import direct
from bus.blobs.batching import HashingBatcher, run_cleanup
from bus.blobs.errors import (
    BlobCorrupt,
    BlobNotFound,
    BlobStoreFull,
    BlobStoreUnavailable,
    BlobTooLarge,
    is_disk_full,
)
from bus.blobs.open_blobs import OpenBlobs
from bus.blobs.writeback import start_writeback
from bus.config import metrics

T = TypeVar("T")

# Incoming pieces (typically 16-64 KiB from an HTTP body) are gathered into buffers of
# this size before thread hops hash and write them: big enough that the per-hop
# overhead (~50 us) and per-call costs vanish and that hashlib/os.write release the GIL,
# small enough that a put holds at most ~2 buffers (8 MiB) of memory.
WRITE_BUFFER = 4 * 1024 * 1024
# A stream that ends within this many bytes is stored by one thread hop (open, hash, write,
# fsync, rename, directory fsync) instead of three: for small files the hops, not the
# bytes, are the cost (each wakes a pool thread and makes the loop wait for the GIL back).
SMALL_PUT = 256 * 1024
# Drop-behind: once a blob bigger than SMALL_PUT is durable, its pages leave the page
# cache (POSIX_FADV_DONTNEED on the clean pages), so an upload's next piece is written into
# pages just freed instead of pages the kernel must find. On this project's VM that made
# writing a new 4 MiB batch 2.5x faster (17 ms -> 7 ms, hashing included) and a sequential
# client's 8 MiB chunk PUT of new bytes 67-80 -> 38-58 ms: memory the guest never touched costs a
# hypervisor fault per page on first use, and on a host whose memory is full of cache the
# kernel must reclaim instead. It is how storage servers keep bulk writes from flushing what
# readers use (MinIO writes big objects with O_DIRECT). The price: the first read of a blob
# just uploaded comes from the disk. Small blobs stay cached (CAIRN_BLOB_DROP_BEHIND=false
# keeps everything).
_FADVISE = getattr(os, "posix_fadvise", None)
# Pieces yielded by `open_range`: one thread hop per MiB.
READ_PIECE = 1024 * 1024
# Blobs remembered as read whole and verified (open_range): about 100 bytes each.
VERIFIED_MAX = 65_536
# A small range whose pages are all in the page cache is read on the loop itself
# (preadv with RWF_NOWAIT, which fails instead of waiting for the disk), not in a pool
# thread: under 200 readers of 4 KiB ranges the thread hop's wake-ups and context switches
# were a quarter of the API's CPU. Requests/s went from about 1,430 to 1,480-1,670 and the
# p50 from 70-86 ms to 40-45 ms (download.range_4k's load, alternating runs). The cap keeps
# a copy on the loop short; a range with any page not cached goes to a thread as before,
# so the loop never waits for the disk on a read.
RESIDENT_READ_MAX = 64 * 1024
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
# Reads for the local `hash_manifest` fast path; the whole loop runs in one thread.
HASH_READ = 4 * 1024 * 1024

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def is_sha256(s: str) -> bool:
    """A well-formed digest as this store names blobs: 64 lowercase hex digits."""
    return _SHA256_RE.fullmatch(s) is not None


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# Buffers per os.writev call: Linux's IOV_MAX.
_IOV_MAX = 1024


def _writev_all(fd: int, buffers: list[bytes]) -> None:
    """Write `buffers` in order, all of them, with as few system calls as the kernel allows
    (no joined copy: see bus/blobs/batching.py)."""
    views = [memoryview(b) for b in buffers if b]
    i = 0
    while i < len(views):
        n = os.writev(fd, views[i : i + _IOV_MAX])
        if n == 0:
            raise OSError(f"writev wrote nothing to fd {fd}")
        # A short write: skip what was written, resume inside the buffer it stopped in.
        while n > 0:
            if n >= len(views[i]):
                n -= len(views[i])
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0


class _WriteBehind:
    """The local store's vectored write for one put: each batch is written, then queued
    for writeback at once (bus/blobs/writeback.py), so the final fsync finds little left
    to flush. Called by one lane at a time, in stream order (bus/blobs/batching.py)."""

    def __init__(self, fd: int, *, early: bool = True) -> None:
        self.fd = fd
        self.offset = 0
        self.early = early

    def __call__(self, buffers: list[bytes]) -> None:
        _writev_all(self.fd, buffers)
        n = sum(len(b) for b in buffers)
        if self.early:
            start_writeback(self.fd, self.offset, n)
        self.offset += n


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_leaf(leaf: Path) -> None:
    """Make sure the fan-out directory `leaf` (and its parent) exists, owner-only like the
    root; one mkdir when it does (Path.mkdir's `parents` would ignore the mode)."""
    try:
        leaf.mkdir(mode=0o700, exist_ok=True)
    except FileNotFoundError:
        leaf.parent.mkdir(mode=0o700, exist_ok=True)
        leaf.mkdir(mode=0o700, exist_ok=True)


def _subdirectories(path: Path) -> list[str]:
    with os.scandir(path) as entries:
        return [e.name for e in entries if e.is_dir(follow_symlinks=False)]


def check_range(sha256: str, size: int, offset: int, length: int | None) -> int:
    """Validate [offset, offset+length) against a chunk of `size` bytes; return the length.

    A range past the end is rejected, not clamped: the manifest math upstream knows every
    size exactly, so a short read would only hide an off-by-one (HTTP Range clamping is the
    API's job, against the file's size)."""
    if offset < 0 or (length is not None and length < 0):
        raise ValueError(f"negative offset/length for blob {sha256}")
    if offset > size:
        raise ValueError(f"offset {offset} past the end of blob {sha256} ({size} bytes)")
    if length is None:
        return size - offset
    if offset + length > size:
        raise ValueError(
            f"range [{offset}, {offset + length}) past the end of blob {sha256} ({size} bytes)"
        )
    return length


class LocalBlobStore:
    """Blobs as files under `root`, named by sha256. Implements domain.ports.BlobStore."""

    def __init__(
        self,
        root: Path,
        *,
        drop_behind: bool = True,
        early_writeback: bool = True,
        direct_io: bool = True,
    ) -> None:
        self.root = root
        self._direct_io = direct_io
        self._drop_behind = drop_behind
        self._early_writeback = early_writeback
        self._chunks = root / "chunks"
        self._tmp = root / "tmp"
        # Runs once at startup, before the loop serves anything: blocking is fine here.
        # Owner-only (as restic's repositories, and the S3 store's spool files): the bytes
        # are every user's uploads, no other account on the machine may list or read them.
        for d in (root, self._chunks, self._tmp):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Fan-out directories whose entry in their parent is known to be on disk (see
        # _commit): leaves by their four hex digits, tops by their two. Only ever grow;
        # set.add is atomic under the GIL, and a race only costs a redundant fsync.
        self._durable_dirs: set[str] = set()
        self._durable_tops: set[str] = set()
        # Blobs a pool thread has opened lately: only their small ranges are tried from the
        # page cache on the loop (see RESIDENT_READ_MAX), so the loop never opens a blob
        # whose directory entries may still be on the disk alone.
        self._opened: BoundedLRU[str, bool] = BoundedLRU(4096)
        # Their descriptors, for the next small read on the loop (bus/blobs/open_blobs.py).
        self._open_blobs = OpenBlobs()
        # Blobs this process read whole and found to hash to their name, with the file as it
        # was then (inode, mtime, size): see open_range.
        self._verified: BoundedLRU[str, tuple[int, int, int]] = BoundedLRU(VERIFIED_MAX)
        self._adopt_fan_out()

    def _adopt_fan_out(self) -> None:
        """Count the fan-out directories already on disk as durable, having made them so.

        A directory found here may be in the page cache only (its creator died before its
        fsync), so each parent is fsynced after its leaves are listed, and chunks/ after
        its parents: then every directory listed is on disk, and a put into one after a
        restart needs two fsyncs (its file and its leaf) instead of four until the process
        has met every leaf again. Clean directories fsync in microseconds (256 in about
        13 ms on the bench VM); runs once at startup, so blocking is fine."""
        tops = _subdirectories(self._chunks)
        if not tops:
            return
        leaves: list[str] = []
        for top in tops:
            path = self._chunks / top
            leaves += [top + leaf for leaf in _subdirectories(path)]
            _fsync_dir(path)
        _fsync_dir(self._chunks)
        self._durable_dirs.update(leaves)
        self._durable_tops.update(tops)

    # -- naming --------------------------------------------------------------------

    def path_of(self, sha256: str) -> Path:
        """Where the blob lives (whether or not it exists), e.g. to sendfile it.

        Raises ValueError for anything that is not a digest, so a digest taken from a URL
        can never walk out of the store."""
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self._chunks / sha256[0:2] / sha256[2:4] / sha256

    # -- writing -------------------------------------------------------------------

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int | None = None,
        also_hash: Any = None,
    ) -> tuple[str, int]:
        """Store the stream; return (sha256 hex, size) once it is durable on disk.

        Pipelined: while threads hash and write buffer N (bus/blobs/batching.py, each
        buffer queued for writeback as soon as it is written, bus/blobs/writeback.py), the
        loop gathers buffer N+1. Buffers are handed over strictly one at a time, because
        the hash states and the file offset are sequential. If anything fails (the source
        raising on a client disconnect, BlobTooLarge, disk full, cancellation) the temp
        file is removed and the error re-raised: no partial blob, no litter in tmp/.
        (Cancelled during the final commit, the complete blob may stay: harmless, and
        deleting it could pull it from under a concurrent put of the same bytes that
        already returned.)

        A stream of at most SMALL_PUT bytes is gathered first and stored in one thread hop
        (`_put_small`), which removes its own temp file if it fails. A full disk is
        BlobStoreFull (the temp file removed as for any failure)."""
        try:
            return await self._put(chunks, max_bytes, also_hash)
        except OSError as e:
            if is_disk_full(e):
                raise BlobStoreFull(
                    f"no space left for blobs under {self.root}: {e.strerror}", retry_after=30
                ) from e
            raise

    async def _put(
        self, chunks: AsyncIterator[bytes], max_bytes: int | None, also_hash: Any
    ) -> tuple[str, int]:
        source = aiter(chunks)
        head: list[bytes] = []
        size = 0
        while size <= SMALL_PUT:
            try:
                piece = await anext(source)
            except StopAsyncIteration:
                # Shielded: a cancellation reaches the caller, the thread finishes on its
                # own (a complete blob left behind is harmless, see above).
                stored = asyncio.get_running_loop().run_in_executor(
                    None, self._put_small, head, also_hash
                )
                digest = await asyncio.shield(stored)
                metrics.BLOB_WRITTEN_BYTES.inc(size)
                return digest, size
            if piece:
                head.append(piece)
                size += len(piece)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(max_bytes)
        return await self._put_large(chained(head, source), max_bytes, also_hash)

    def _put_small(self, pieces: list[bytes], also_hash: Any) -> str:
        hasher = hashlib.sha256()
        for piece in pieces:
            hasher.update(piece)
            if also_hash is not None:
                also_hash.update(piece)
        digest = hasher.hexdigest()
        fd, tmp = self._open_tmp()
        try:
            _writev_all(fd, pieces)
        except BaseException:
            _remove_tmp(fd, tmp)
            raise
        try:
            self._commit(fd, tmp, digest)  # closes fd, whatever happens
        except BaseException:
            _remove_tmp(-1, tmp)
            raise
        return digest

    async def _put_large(
        self, chunks: AsyncIterator[bytes], max_bytes: int | None, also_hash: Any
    ) -> tuple[str, int]:
        opening = asyncio.get_running_loop().run_in_executor(None, self._open_tmp)
        try:
            fd, tmp = await asyncio.shield(opening)
        except BaseException:
            # Cancelled while the file was being created: remove it once it exists.
            await run_cleanup(_remove_opened(opening))
            raise
        # Past the page cache where the filesystem allows it (bus/blobs/direct.py), else
        # through it, each batch queued for writeback at once. Only with drop-behind on:
        # a blob written directly is never cached, and drop-behind off asks for the cache.
        direct_writer = (
            direct.DirectWriter(fd, WRITE_BUFFER)
            if self._direct_io and self._drop_behind and direct.enable(fd)
            else None
        )
        writev = direct_writer or _WriteBehind(fd, early=self._early_writeback)
        # Shielded waits and one write in flight: see bus/blobs/batching.py.
        batcher = HashingBatcher(
            functools.partial(direct.write_all, fd),
            buffer=WRITE_BUFFER,
            max_bytes=max_bytes,
            also_hash=also_hash,
            writev=writev,
        )
        commit: asyncio.Future[None] | None = None
        try:
            await batcher.absorb(chunks)
            total = batcher.size
            digest = batcher.hasher.hexdigest()
            # The commit closes fd itself; from here on a failure must not close it again.
            closer, fd = fd, -1
            commit = asyncio.get_running_loop().run_in_executor(
                None,
                self._commit,
                closer,
                tmp,
                digest,
                self._drop_behind,
                direct_writer.finish if direct_writer is not None else None,
            )
            await asyncio.shield(commit)
            metrics.BLOB_WRITTEN_BYTES.inc(total)
            if direct_writer is not None:
                # Only on success: after a failure a thread may still write from it.
                direct_writer.release()
            return digest, total
        except BaseException:
            # Whichever thread may still be using fd or tmp: the commit once started,
            # else the batcher's last write.
            await _discard(commit if commit is not None else batcher.inflight, fd, tmp)
            raise

    def _open_tmp(self) -> tuple[int, Path]:
        # A fresh random name per put: concurrent puts, even of the same bytes, never share
        # a temp file. O_EXCL makes a (practically impossible) name collision loud.
        path = self._tmp / f"{secrets.token_hex(12)}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        return fd, path

    def _commit(
        self,
        fd: int,
        tmp: Path,
        digest: str,
        drop: bool = False,
        finish: Callable[[], None] | None = None,
    ) -> None:
        """Make the temp file the blob, durably, after `finish` (the last bytes a direct
        writer held back). Ordering matters:

        1. fsync the data before the rename, so the name never points at unwritten bytes;
        2. rename over any existing copy: the same digest means the same bytes, so one
           file remains (dedup). Renaming even when the blob exists, instead of dropping
           ours, closes two races: a concurrent put that renamed but has not yet fsynced
           the directory (we fsync it ourselves below) and a concurrent delete between an
           exists-check and our return;
        3. fsync the directory holding the new entry, and once per fan-out directory the
           parents holding it, so the name itself survives a crash."""
        try:
            if finish is not None:
                finish()
            os.fsync(fd)
            if drop and _FADVISE is not None:
                # Clean now, so the kernel can free them (see _FADVISE).
                _FADVISE(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        final = self.path_of(digest)
        leaf = final.parent
        _make_leaf(leaf)
        os.rename(tmp, final)
        _fsync_dir(leaf)
        key = digest[0:4]
        if key not in self._durable_dirs:
            # The leaf (and its parent) may have just been created, by us or by a
            # concurrent put that has not fsynced yet: make both entries durable. The
            # parent's entry in chunks/ needs it only once per parent (256 of them), not
            # once per leaf (65,536): in a young store nearly every small put is the first
            # in its leaf, and that fsync was a quarter of its fsyncs.
            _fsync_dir(leaf.parent)
            top = digest[0:2]
            if top not in self._durable_tops:
                _fsync_dir(self._chunks)
                self._durable_tops.add(top)
            self._durable_dirs.add(key)

    def sweep_tmp(self, older_than: float = 24 * 3600) -> int:
        """Remove temp files a crashed process left behind; return how many.

        Only files older than `older_than` seconds: other processes may share the root and
        have puts in flight. A blob the collector had renamed away when it died (see
        `_collect`) is put back under its name whatever its age, unless a put stored it
        again since: the collector judges it again on its next pass, where deleting it
        here could lose a blob a put had just rewritten. Blocking: call it at startup or
        from a thread."""
        cutoff = time.time() - older_than
        removed = 0
        for p in self._tmp.iterdir():
            if p.name.startswith("gc-"):
                self._restore(p)
                continue
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:  # a put finished or another sweeper got there first
                pass
        return removed

    def _restore(self, trash: Path) -> None:
        """Put a collector's renamed-away blob back; a link, not a rename, so that a copy a
        put stored since (fresh, and maybe not yet referenced) is never replaced by this
        one's old mtime. A collector still judging it finds it gone and keeps the blob."""
        sha = trash.name[3:67]
        if not is_sha256(sha):
            return
        path = self.path_of(sha)
        try:
            _make_leaf(path.parent)
            os.link(trash, path)
            _fsync_dir(path.parent)
        except FileExistsError:  # stored again since: that copy stays
            pass
        except FileNotFoundError:  # its collector finished with it meanwhile
            return
        with contextlib.suppress(FileNotFoundError):
            trash.unlink()

    # -- reading and the rest -------------------------------------------------------

    async def size(self, sha256: str) -> int | None:
        if not is_sha256(sha256):
            return None
        return await _in_thread(self._size_sync, sha256)

    def _size_sync(self, sha256: str) -> int | None:
        try:
            return self.path_of(sha256).stat().st_size
        except FileNotFoundError:
            return None

    async def exists(self, sha256: str) -> bool:
        return await self.size(sha256) is not None

    async def delete(self, sha256: str) -> None:
        """Remove the blob; a missing (or malformed) digest is fine.

        Not fsynced: a delete undone by a crash only leaves garbage for the next GC pass.
        Callers must make sure nothing references the blob, or is uploading it, anymore."""
        if is_sha256(sha256):
            self._open_blobs.forget(sha256)
            await _in_thread(self._delete_sync, sha256)

    def _delete_sync(self, sha256: str) -> None:
        try:
            self.path_of(sha256).unlink()
        except FileNotFoundError:
            pass

    async def delete_many(self, shas: Sequence[str], *, stored_before: float) -> dict[str, int]:
        """Delete those of `shas` last written before `stored_before` (epoch seconds);
        return {sha256: size} of what was deleted. One thread hop for the whole batch."""
        for sha in shas:
            self._open_blobs.forget(sha)
        return await _in_thread(self._delete_many_sync, list(shas), stored_before)

    def _delete_many_sync(self, shas: list[str], stored_before: float) -> dict[str, int]:
        freed: dict[str, int] = {}
        for sha in shas:
            if is_sha256(sha):
                size = self._collect(sha, stored_before)
                if size is not None:
                    freed[sha] = size
        return freed

    def _collect(self, sha: str, stored_before: float) -> int | None:
        """Checking the mtime and then unlinking would race with a put of the same bytes
        that renames a fresh copy over the blob in between (its StoreChunk would then point
        at nothing). So the blob is first renamed away atomically; what was moved is then
        judged: an old file is deleted, a fresh one (a put won the race) is put back. A put
        renaming after our rename is untouched. The way back is fsynced so that it
        survives a crash."""
        path = self.path_of(sha)
        trash = self._tmp / f"gc-{sha}-{secrets.token_hex(6)}.part"
        try:
            os.rename(path, trash)
        except FileNotFoundError:  # gone already (another store user, or a previous run)
            return None
        try:
            st = os.stat(trash)
            if st.st_mtime >= stored_before:
                os.rename(trash, path)
                _fsync_dir(path.parent)
                return None
            os.unlink(trash)
        except FileNotFoundError:
            # A sweep put it back meanwhile (`_restore`): kept, judged again next pass.
            return None
        return st.st_size

    async def sweep(self, older_than: float = 24 * 3600) -> int:
        """Remove what failed puts of crashed processes left behind (see sweep_tmp)."""
        return await _in_thread(self.sweep_tmp, older_than)

    async def close(self) -> None:
        """Close the descriptors kept for small reads; every other operation opens and
        closes its own files."""
        self._open_blobs.close()

    async def iter_blobs(self) -> AsyncIterator[tuple[str, int, float]]:
        """Every stored blob as (sha256, size, mtime in epoch seconds), in no fixed order.

        For the garbage collector, which needs to list what exists to find what nothing
        references. Scans one top-level fan-out directory (1/256 of the store) per thread
        hop, so memory stays bounded and the loop is never blocked. Blobs added or removed
        while iterating may or may not appear; names that are not digests are skipped."""
        try:
            tops = sorted(await _in_thread(os.listdir, self._chunks))
        except FileNotFoundError:
            return
        for top in tops:
            for entry in await _in_thread(self._scan_top, self._chunks / top):
                yield entry

    @staticmethod
    def _scan_top(top: Path) -> list[tuple[str, int, float]]:
        out: list[tuple[str, int, float]] = []
        try:
            leaves = list(os.scandir(top))
        except (FileNotFoundError, NotADirectoryError):
            return out
        for leaf in leaves:
            try:
                entries = list(os.scandir(leaf.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                if not is_sha256(e.name):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:  # deleted since the listing
                    continue
                out.append((e.name, st.st_size, st.st_mtime))
        return out

    async def ping(self) -> None:
        """Raise BlobStoreUnavailable (BlobStoreFull for a full disk) unless a file can be
        created and removed in the store: the start logs it in one line naming the
        directory, and /ready names the fault, instead of a bare OSError's traceback."""
        try:
            await _in_thread(self._ping_sync)
        except OSError as e:
            unavailable = BlobStoreFull if is_disk_full(e) else BlobStoreUnavailable
            raise unavailable(
                f"cannot write a file under {self.root} (CAIRN_BLOB_STORE, CAIRN_DATA_DIR): {e}"
            ) from e

    def _ping_sync(self) -> None:
        fd, path = self._open_tmp()
        try:
            direct.write_all(fd, b"ping")
        finally:
            os.close(fd)
            path.unlink()

    async def open_range(
        self, sha256: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream bytes [offset, offset+length) of one blob in ~1 MiB pieces.

        Lazy like any async generator: BlobNotFound / ValueError (bad range) surface on
        the first iteration. The file stays open while iterating, so a concurrent delete
        does not cut a read short. A whole-blob read is verified against the name (the first
        one of this file in this process, see below): rotten bytes raise BlobCorrupt before
        the last piece is yielded, so an answer made of them is cut short instead of
        completed."""
        if not is_sha256(sha256):
            raise BlobNotFound(sha256)
        if length is not None and 0 < length <= READ_PIECE:
            # A small range (a 4 KiB ranged GET): from the page cache on the loop, else
            # open, read and close in one thread hop instead of three; under hundreds of
            # concurrent readers the hops dominate.
            data = self._read_resident(sha256, offset, length) if sha256 in self._opened else None
            if data is None:
                data = await _in_thread(self._read_small, sha256, offset, length)
                self._opened[sha256] = True
            metrics.BLOB_READ_BYTES.inc(len(data))
            yield data
            return
        fd, st = await _in_thread(self._open_stat, sha256)
        size = st.st_size
        try:
            remaining = check_range(sha256, size, offset, length)
            # A whole read is hashed, unless this process already read this very file
            # whole and found it right (same inode, mtime and size: a blob rewritten,
            # truncated or put back from a backup since is hashed again). Hashing every
            # read took 40 % of a download's speed (download.single 0.32x nginx against
            # 0.56x); a file read many times is checked the first time, as a verifying
            # cache would.
            whole = offset == 0 and remaining == size
            seen = (st.st_ino, st.st_mtime_ns, size)
            check = whole and self._verified.get(sha256) != seen
            hasher = hashlib.sha256() if check else None
            pos = offset
            while remaining > 0:
                data = await _in_thread(_pread_hashing, fd, min(READ_PIECE, remaining), pos, hasher)
                if not data:
                    raise OSError(f"blob {sha256} shrank while being read")
                pos += len(data)
                remaining -= len(data)
                if remaining == 0 and hasher is not None:
                    _verify(sha256, hasher)
                    self._verified[sha256] = seen
                metrics.BLOB_READ_BYTES.inc(len(data))
                yield data
        finally:
            # Closing a regular file does not block. A pread still running in a thread
            # after a cancellation only reads into a result nobody will look at.
            os.close(fd)

    def _read_resident(self, sha256: str, offset: int, length: int) -> bytes | None:
        """The range, read on the calling thread (the loop) if every byte of it is in the
        page cache; None if not, or if the range is too big to read on the loop (see
        RESIDENT_READ_MAX)."""
        if _NOWAIT is None or length > RESIDENT_READ_MAX:
            return None
        fd, size = self._open_blobs.get(sha256, self._open_read)
        check_range(sha256, size, offset, length)
        buf = bytearray(length)
        try:
            n = os.preadv(fd, [buf], offset, _NOWAIT)
        except BlockingIOError:
            return None
        if n != length:
            return None
        if offset == 0 and length == size:  # at most RESIDENT_READ_MAX: microseconds
            _verify(sha256, hashlib.sha256(buf))
        return bytes(buf)

    def _read_small(self, sha256: str, offset: int, length: int) -> bytes:
        fd, size = self._open_read(sha256)
        try:
            check_range(sha256, size, offset, length)
            data = os.pread(fd, length, offset)
            while len(data) < length:  # pread may return less (rare on regular files)
                more = os.pread(fd, length - len(data), offset + len(data))
                if not more:
                    raise OSError(f"blob {sha256} shrank while being read")
                data += more
            if offset == 0 and length == size:
                _verify(sha256, hashlib.sha256(data))
            return data
        finally:
            os.close(fd)

    def _open_read(self, sha256: str) -> tuple[int, int]:
        fd, st = self._open_stat(sha256)
        return fd, st.st_size

    def _open_stat(self, sha256: str) -> tuple[int, os.stat_result]:
        try:
            fd = os.open(self.path_of(sha256), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None
        try:
            return fd, os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise

    def hash_into(self, hasher: Any, sha256: str, size: int) -> None:
        """Feed exactly `size` bytes of one blob to `hasher`, all in the calling thread."""
        try:
            fd = os.open(self.path_of(sha256), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None
        with open(fd, "rb", buffering=0, closefd=True) as f:
            buf = bytearray(min(HASH_READ, max(size, 1)))
            view = memoryview(buf)
            remaining = size
            while remaining > 0:
                n = f.readinto(view[: min(len(buf), remaining)])
                if not n:
                    raise ValueError(f"blob {sha256} is shorter than its manifest size {size}")
                hasher.update(view[:n])
                remaining -= n
            if f.read(1):
                raise ValueError(f"blob {sha256} is longer than its manifest size {size}")


def _pread_hashing(fd: int, n: int, pos: int, hasher: Any) -> bytes:
    """Up to `n` bytes at `pos`, fed to `hasher` too (if any) in the same thread hop."""
    data = os.pread(fd, n, pos)
    if hasher is not None:
        hasher.update(data)
    return data


def _verify(sha256: str, hasher: Any) -> None:
    """Raise BlobCorrupt unless the whole blob just read hashed to its name."""
    if hasher.hexdigest() != sha256:
        raise BlobCorrupt(sha256, hasher.hexdigest())


async def chained(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The pieces gathered so far, then the rest of the stream."""
    for piece in head:
        yield piece
    async for piece in rest:
        yield piece


async def _discard(inflight: asyncio.Future[None] | None, fd: int, tmp: Path) -> None:
    """Remove a failed put's temp file, after its in-flight write has finished.

    The write thread cannot be interrupted, and closing or unlinking under it could let it
    write into a reused descriptor: so the cleanup waits for it first."""

    async def cleanup() -> None:
        if inflight is not None:
            try:
                await inflight
            except BaseException:  # the put already failed; this error adds nothing
                pass
        await _in_thread(_remove_tmp, fd, tmp)

    await run_cleanup(cleanup())


async def _remove_opened(opening: asyncio.Future[tuple[int, Path]]) -> None:
    try:
        fd, tmp = await opening
    except BaseException:  # nothing was created
        return
    await _in_thread(_remove_tmp, fd, tmp)


def _remove_tmp(fd: int, tmp: Path) -> None:
    if fd >= 0:
        os.close(fd)
    try:
        tmp.unlink()
    except FileNotFoundError:  # the failure came after the rename: nothing to remove
        pass
