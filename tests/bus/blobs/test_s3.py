"""What only the S3 store must show (the shared contract is test_blobstore_contract.py):
durable only once S3 verified our sha256, botocore's CRC defaults off, ranged reads in
bounded pieces, body read timeouts resumed, corrupt bodies caught by the chunk hash, and
clear errors naming the setting when the endpoint, bucket or credentials are wrong.

Against the local S3 server (tests/s3server.py: moto plus checksum checks and faults);
the fault tests use a server of their own so that stopping it disturbs nobody."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import stat
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bus.blobs.errors import BlobCorrupt, BlobNotFound, BlobStoreUnavailable
from bus.blobs.manifests import hash_manifest
from bus.blobs.s3 import READ_PIECE, SPOOL_SUFFIX, S3BlobStore, S3Options
from tests.ports import free_port
from tests.s3server import REJECTED_KEY, S3Server

MiB = 1024 * 1024
DATA = os.urandom(5 * MiB + 321)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def feed(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


@pytest.fixture(scope="module")
def faulty() -> Iterator[S3Server]:
    """A server of this module's own, for faults (and for being stopped)."""
    from tests.s3server import use_test_credentials

    use_test_credentials()
    server = S3Server()
    server.start()
    yield server
    server.stop()


def make_store(server: S3Server, tmp_path: Path, **options: Any) -> S3BlobStore:
    bucket = f"t{secrets.token_hex(6)}"
    server.create_bucket(bucket)
    return S3BlobStore(
        S3Options(bucket=bucket, endpoint=server.endpoint, spool_dir=tmp_path / "spool", **options)
    )


class Requests:
    """Records what botocore sends (after it added its own headers), per operation."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    def __call__(self, request: Any, event_name: str = "", **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]  # before-send.s3.<Operation>
        self.sent.append(
            (
                op,
                {
                    k.lower(): v.decode() if isinstance(v, bytes) else str(v)
                    for k, v in request.headers.items()
                },
            )
        )

    def of(self, op: str) -> list[dict[str, str]]:
        return [h for o, h in self.sent if o == op]


async def recording(store: S3BlobStore) -> Requests:
    rec = Requests()
    client = await store.client()
    client.meta.events.register("before-send.s3.*", rec)
    return rec


async def test_put_carries_the_sha256_and_no_crc_and_reads_are_ranged(
    s3_server: S3Server, tmp_path: Path
) -> None:
    store = make_store(s3_server, tmp_path, range_bytes=2 * MiB)
    try:
        client = await store.client()
        assert client.meta.config.request_checksum_calculation == "when_required"
        assert client.meta.config.response_checksum_validation == "when_required"
        rec = await recording(store)
        digest, _ = await store.put_stream(feed(DATA))
        [put] = rec.of("PutObject")
        assert (
            put["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(DATA).digest()).decode()
        )
        assert not [h for h in put if h.startswith("x-amz-checksum-crc")]
        assert put["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"  # no body read to sign
        assert put["content-length"] == str(len(DATA))

        pieces = [p async for p in store.open_range(digest)]
        assert b"".join(pieces) == DATA
        assert max(len(p) for p in pieces) <= READ_PIECE
        ranges = [h["range"] for h in rec.of("GetObject")]
        # Only the bytes asked for, in GETs of at most range_bytes.
        assert ranges == ["bytes=0-2097151", "bytes=2097152-4194303", "bytes=4194304-5243200"]
        assert rec.of("HeadObject") == []  # the size comes from the first GET's Content-Range
        rec.sent.clear()
        assert (
            b"".join([p async for p in store.open_range(digest, 2 * MiB - 1, 3)])
            == (DATA[2 * MiB - 1 : 2 * MiB + 2])
        )
        assert [h["range"] for h in rec.of("GetObject")] == ["bytes=2097151-2097153"]
    finally:
        await store.close()


async def test_s3_rejects_bytes_that_do_not_match_the_checksum_and_nothing_is_kept(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool file is damaged after hashing (a disk flipping a bit): the server verifies
    the sha256 we sent, refuses the PUT, and the put fails with nothing stored."""
    store = make_store(s3_server, tmp_path)
    real_put = store._put_file

    async def damaged(hexdigest: str, digest: bytes, f: Any, size: int) -> None:
        f.seek(10)
        f.write(bytes([DATA[10] ^ 0xFF]))  # a different byte (b"X" was DATA's in 1 in 256)
        f.seek(0)
        await real_put(hexdigest, digest, f, size)

    monkeypatch.setattr(store, "_put_file", damaged)
    before = s3_server.state()["rejected"]
    try:
        with pytest.raises(BlobStoreUnavailable, match="BadDigest"):
            await store.put_stream(feed(DATA))
        assert s3_server.state()["rejected"] > before
        assert not await store.exists(sha(DATA))
        assert [b async for b in store.iter_blobs()] == []
        assert list((tmp_path / "spool").iterdir()) == []
    finally:
        await store.close()


async def test_reading_a_big_object_holds_only_pieces_in_memory(
    s3_server: S3Server, tmp_path: Path
) -> None:
    big = os.urandom(48 * MiB)
    store = make_store(s3_server, tmp_path)  # default 8 MiB ranged GETs
    try:
        digest, _ = await store.put_stream(feed(big, MiB))
        hasher = hashlib.sha256()
        tracemalloc.start()
        try:
            async for piece in store.open_range(digest):
                hasher.update(piece)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert hasher.hexdigest() == digest
        # A whole-object read would hold 48 MiB; pieces are 1 MiB, one is held back.
        assert peak < 12 * MiB, peak
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("read_timeout", "stall_seconds"),
    [
        # The body stalls past the read timeout.
        (1.0, 3),
        # The server sends part of the body and closes the connection at once (well within
        # the read timeout): aiohttp reports that as ClientPayloadError, not a timeout.
        (30.0, 0.05),
    ],
    ids=["read timeout", "connection cut"],
)
async def test_a_body_cut_short_resumes_where_it_stopped(
    faulty: S3Server, tmp_path: Path, read_timeout: float, stall_seconds: float
) -> None:
    store = make_store(faulty, tmp_path, read_timeout=read_timeout)
    try:
        digest, _ = await store.put_stream(feed(DATA))
        rec = await recording(store)
        faulty.faults(stall_gets=1, stall_after=MiB + 7, stall_seconds=stall_seconds)
        assert b"".join([p async for p in store.open_range(digest)]) == DATA
        assert faulty.state()["stall_gets"] == 0  # the stall or the cut happened
        ranges = [h["range"] for h in rec.of("GetObject")]
        # The retry asked for the rest only: it started past the first byte.
        assert ranges[0].startswith("bytes=0-")
        assert len(ranges) == 2 and ranges[1] != ranges[0]
        start = int(ranges[1].removeprefix("bytes=").split("-")[0])
        assert 0 < start <= MiB + 7
    finally:
        faulty.faults()
        await store.close()


async def test_a_body_that_keeps_stalling_fails_the_read(faulty: S3Server, tmp_path: Path) -> None:
    store = make_store(faulty, tmp_path, read_timeout=0.5, max_attempts=2)
    try:
        digest, _ = await store.put_stream(feed(DATA))
        faulty.faults(stall_gets=10, stall_after=1000, stall_seconds=2)
        with pytest.raises(BlobStoreUnavailable):
            async for _ in store.open_range(digest):
                pass
    finally:
        faulty.faults()
        await store.close()


async def test_a_corrupt_body_fails_the_read_before_its_last_piece(
    faulty: S3Server, tmp_path: Path
) -> None:
    store = make_store(faulty, tmp_path)
    try:
        digest, _ = await store.put_stream(feed(DATA))
        faulty.faults(corrupt_gets=True)
        got = bytearray()
        with pytest.raises(BlobCorrupt) as e:
            async for p in store.open_range(digest):
                got += p
        assert e.value.sha256 == digest
        assert len(got) < len(DATA)  # the response never completes with wrong bytes
        with pytest.raises(BlobCorrupt):
            await hash_manifest(store, [(digest, len(DATA))])
    finally:
        faulty.faults()
        await store.close()


async def test_unreachable_endpoint_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Credentials of its own: run alone (no server fixture set any), it met "no S3
    # credentials" before the endpoint.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = S3BlobStore(
        S3Options(
            bucket="cairn",
            endpoint=f"http://127.0.0.1:{free_port()}",
            spool_dir=tmp_path,
            connect_timeout=1,
            max_attempts=1,
        )
    )
    try:
        with pytest.raises(BlobStoreUnavailable, match="CAIRN_S3_ENDPOINT"):
            await store.ping()
        with pytest.raises(BlobStoreUnavailable, match="CAIRN_S3_ENDPOINT"):
            await store.put_stream(feed(b"bytes"))
        assert list(tmp_path.iterdir()) == []
    finally:
        await store.close()


async def test_missing_bucket_names_the_setting(s3_server: S3Server, tmp_path: Path) -> None:
    store = S3BlobStore(
        S3Options(bucket="no-such-bucket-here", endpoint=s3_server.endpoint, spool_dir=tmp_path)
    )
    try:
        with pytest.raises(BlobStoreUnavailable, match=r"does not exist \(CAIRN_BLOB_STORE\)") as e:
            await store.ping()
        # What the public /ready says: the setting, not the bucket's name.
        assert e.value.reason == "S3 bucket does not exist (CAIRN_BLOB_STORE)"
        with pytest.raises(BlobStoreUnavailable, match="CAIRN_BLOB_STORE"):
            await store.put_stream(feed(b"bytes"))
    finally:
        await store.close()


async def test_missing_credentials_name_the_variables(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = S3BlobStore(S3Options(bucket="cairn", endpoint=s3_server.endpoint, spool_dir=tmp_path))
    try:
        with pytest.raises(BlobStoreUnavailable, match="AWS_ACCESS_KEY_ID"):
            await store.ping()
    finally:
        await store.close()


async def test_wrong_credentials_name_the_variables(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", REJECTED_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    store = make_store(s3_server, tmp_path, max_attempts=1)
    try:
        with pytest.raises(BlobStoreUnavailable, match=r"InvalidAccessKeyId.*AWS_ACCESS_KEY_ID"):
            await store.put_stream(feed(b"bytes"))
        with pytest.raises(BlobStoreUnavailable, match="AWS_ACCESS_KEY_ID") as e:
            await store.ping()
        assert e.value.reason == "S3 refused access (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        assert list((tmp_path / "spool").iterdir()) == []
    finally:
        await store.close()


async def test_s3_going_away_mid_put_keeps_nothing(tmp_path: Path) -> None:
    from tests.s3server import use_test_credentials

    use_test_credentials()
    server = S3Server()
    server.start()
    store = make_store(server, tmp_path, max_attempts=2, connect_timeout=1)
    try:

        async def body() -> AsyncIterator[bytes]:
            yield DATA[:MiB]
            server.stop()  # S3 goes away while the body is still arriving
            yield DATA[MiB:]

        with pytest.raises(BlobStoreUnavailable, match="CAIRN_S3_ENDPOINT"):
            await store.put_stream(body())
        assert list((tmp_path / "spool").iterdir()) == []
        with pytest.raises(BlobStoreUnavailable):
            await store.ping()
    finally:
        server.stop()
        await store.close()


async def test_a_put_to_an_s3_that_accepts_but_never_answers_gives_up(tmp_path: Path) -> None:
    """A stopped (SIGSTOP) server still accepts connections in the kernel. botocore sends
    the file body with `Expect: 100-continue` and aiohttp waited for the 100 with no
    timeout at all: the PUT hung for good. Now it fails after CAIRN_S3_READ_TIMEOUT
    without progress, and keeps nothing."""
    import asyncio
    import signal

    from tests.s3server import use_test_credentials

    use_test_credentials()
    server = S3Server()
    server.start()
    store = make_store(server, tmp_path, read_timeout=1.0, max_attempts=1)
    assert server.proc is not None
    try:
        await store.ping()  # a pooled connection, as in a server that has been running
        os.kill(server.proc.pid, signal.SIGSTOP)
        for size in (100_000, 3 * MiB):
            started = time.monotonic()
            async with asyncio.timeout(30):  # a hang fails the test instead of stalling it
                with pytest.raises(BlobStoreUnavailable, match="CAIRN_S3_READ_TIMEOUT"):
                    await store.put_stream(feed(os.urandom(size)))
            assert time.monotonic() - started < 10
        assert list((tmp_path / "spool").iterdir()) == []
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()
        await store.close()


def test_the_spool_dir_it_creates_is_owner_only(tmp_path: Path) -> None:
    """The spool holds request bodies on their way to S3: 0700 (its files are 0600)."""
    old = os.umask(0o022)
    try:
        S3BlobStore(S3Options(bucket="b", spool_dir=tmp_path / "data" / "s3-spool"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data" / "s3-spool").stat().st_mode) == 0o700


async def test_sweep_removes_only_old_spool_files(s3_server: S3Server, tmp_path: Path) -> None:
    store = make_store(s3_server, tmp_path)
    try:
        spool = tmp_path / "spool"
        old, fresh = spool / f"old{SPOOL_SUFFIX}", spool / f"fresh{SPOOL_SUFFIX}"
        old.write_bytes(b"x")
        fresh.write_bytes(b"y")
        two_days_ago = time.time() - 2 * 24 * 3600
        os.utime(old, (two_days_ago, two_days_ago))
        assert await store.sweep() == 1
        assert sorted(p.name for p in spool.iterdir()) == [fresh.name]
    finally:
        await store.close()


async def test_a_put_s3_refuses_as_busy_is_retried_then_stored(
    faulty: S3Server, tmp_path: Path
) -> None:
    """503 SlowDown on the first two PUTs: botocore retries (rewinding the spool file),
    the third stores the exact bytes."""
    store = make_store(faulty, tmp_path, max_attempts=4)
    try:
        rec = await recording(store)
        before = faulty.state()["refused_busy"]
        faulty.faults(busy_puts=2)
        digest, size = await store.put_stream(feed(DATA))
        assert (digest, size) == (sha(DATA), len(DATA))
        assert faulty.state()["refused_busy"] == before + 2
        assert len(rec.of("PutObject")) == 3
        assert b"".join([p async for p in store.open_range(digest)]) == DATA
        assert list((tmp_path / "spool").iterdir()) == []
    finally:
        faulty.faults()
        await store.close()


async def test_a_put_s3_keeps_refusing_as_busy_fails_within_the_attempts_keeping_nothing(
    faulty: S3Server, tmp_path: Path
) -> None:
    store = make_store(faulty, tmp_path, max_attempts=3)
    try:
        rec = await recording(store)
        faulty.faults(busy_puts=100)
        with pytest.raises(BlobStoreUnavailable, match="SlowDown") as e:
            await store.put_stream(feed(DATA))
        assert e.value.retry_after > 0
        assert len(rec.of("PutObject")) == 3  # bounded by CAIRN_S3_MAX_ATTEMPTS
        faulty.faults()
        assert not await store.exists(sha(DATA))
        assert [b async for b in store.iter_blobs()] == []
        assert list((tmp_path / "spool").iterdir()) == []
    finally:
        faulty.faults()
        await store.close()


async def test_a_presigned_url_is_only_made_for_a_blob_in_the_bucket(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """A URL to a missing object is a broken download (a 307 to S3's 404): the store says
    BlobNotFound instead, as a streamed read of it would."""
    store = make_store(s3_server, tmp_path)
    try:
        digest, _ = await store.put_stream(feed(b"present"))
        url = await store.presigned_get(digest, expires=60)
        assert url.startswith(s3_server.endpoint) and digest in url
        missing = sha(b"never stored")
        with pytest.raises(BlobNotFound):
            await store.presigned_get(missing, expires=60)
        await store.delete(digest)
        with pytest.raises(BlobNotFound):
            await store.presigned_get(digest, expires=60)
    finally:
        await store.close()


async def test_a_presigned_url_is_not_made_while_s3_is_down(tmp_path: Path) -> None:
    server = S3Server()
    server.start()
    store = make_store(server, tmp_path, connect_timeout=1.0, max_attempts=1)
    try:
        digest, _ = await store.put_stream(feed(b"present"))
        server.stop()
        with pytest.raises(BlobStoreUnavailable, match="CAIRN_S3_ENDPOINT"):
            await store.presigned_get(digest, expires=60)
    finally:
        server.stop()
        await store.close()


async def test_listing_and_deleting_past_one_page_of_1000_keys(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """ListObjectsV2 answers 1000 keys a page and DeleteObjects takes 1000 keys: the
    collector's listing follows the continuation, and delete_many deletes exactly what it
    was given across batches, leaving the rest."""
    store = make_store(s3_server, tmp_path)
    try:
        bodies = [f"blob {i}".encode() for i in range(1_050)]
        gate = asyncio.Semaphore(16)

        async def put(body: bytes) -> str:
            async with gate:
                return (await store.put_stream(feed(body)))[0]

        digests = await asyncio.gather(*(put(b) for b in bodies))
        rec = await recording(store)
        listed = {s: n for s, n, _ in [b async for b in store.iter_blobs()]}
        assert listed == {sha(b): len(b) for b in bodies}
        assert len(rec.of("ListObjectsV2")) == 2  # the second page was asked for
        kept = set(digests[::350])  # three of them, spread over the key space
        doomed = [d for d in digests if d not in kept]
        freed = await store.delete_many(doomed, stored_before=time.time() + 3600)
        assert freed == {d: listed[d] for d in doomed}
        assert len(rec.of("DeleteObjects")) == 2
        assert {s async for s, _, _ in store.iter_blobs()} == kept
    finally:
        await store.close()


async def test_a_request_waits_for_a_pooled_connection_in_bounded_time(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Every pooled connection is taken (GETs whose bodies nobody reads): another request
    waits for one at most about CAIRN_S3_CONNECT_TIMEOUT + CAIRN_S3_READ_TIMEOUT, then
    fails as unavailable (503), instead of waiting forever (aiohttp's pool wait had no
    timeout). Once a connection is free, it works again."""
    store = make_store(
        s3_server, tmp_path, pool_size=2, connect_timeout=1.0, read_timeout=1.0, max_attempts=1
    )
    try:
        digest, _ = await store.put_stream(feed(DATA))
        client = await store.client()
        held = [
            (await client.get_object(Bucket=store.bucket, Key=store.key_of(digest)))["Body"]
            for _ in range(2)
        ]
        started = time.monotonic()
        with pytest.raises(BlobStoreUnavailable, match="CAIRN_S3_POOL_SIZE"):
            await asyncio.wait_for(store.size(digest), 30)
        assert time.monotonic() - started < 10
        for body in held:
            body.close()
        assert await store.size(digest) == len(DATA)
    finally:
        await store.close()


async def test_a_download_whose_reader_stopped_gives_its_connection_back(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Two downloads (a pool of two) whose clients took one piece and then nothing: after
    CAIRN_S3_READ_TIMEOUT their connections go back to the pool, so another request is
    served (it would otherwise time out waiting: 1 + 3 s here), and each download, read
    on later, still gives the exact bytes (the rest from a new ranged GET)."""
    read_timeout = 1.0
    store = make_store(
        s3_server,
        tmp_path,
        pool_size=2,
        connect_timeout=3.0,
        read_timeout=read_timeout,
        max_attempts=2,
    )
    try:
        digest, _ = await store.put_stream(feed(DATA))
        readers = [store.open_range(digest) for _ in range(2)]
        firsts, idle_since = [], []
        for r in readers:
            firsts.append(await anext(r))
            idle_since.append(time.monotonic())
        rec = await recording(store)
        assert await store.size(digest) == len(DATA)
        for first, r, since in zip(firsts, readers, idle_since, strict=True):
            # "Later" is past the read timeout for each reader, the second too: on a busy
            # machine its first GET ended late, and reading the first reader's rest could
            # come before its own timeout, so it kept its connection (one ranged GET, not
            # two). The wait is the timeout this test is about, not a stand-in for an event.
            await asyncio.sleep(max(0.0, since + read_timeout - time.monotonic()) + 0.05)
            assert first + b"".join([p async for p in r]) == DATA
        ranges = [h["range"] for h in rec.of("GetObject")]
        assert len(ranges) == 2 and all(not x.startswith("bytes=0-") for x in ranges), ranges
    finally:
        await store.close()


async def test_rechecking_a_few_sparse_keys_does_not_walk_the_bucket(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """The collector's re-check before DeleteObjects listed from the first wanted key to
    the last: sha256 names are uniform, so ten keys spanned almost the whole bucket and a
    batch walked every object in it. Now at most one listing page, then a HEAD for each
    key that page did not settle."""
    store = make_store(s3_server, tmp_path)
    try:
        client = await store.client()
        bodies = [f"object {i}".encode() for i in range(2_500)]
        gate = asyncio.Semaphore(32)

        async def put(body: bytes) -> None:
            async with gate:
                await client.put_object(Bucket=store.bucket, Key=store.key_of(sha(body)), Body=body)

        await asyncio.gather(*(put(b) for b in bodies))
        size = {sha(b): len(b) for b in bodies}
        digests = sorted(size)
        sparse = digests[::300]  # nine keys spread over the whole key space
        absent = sha(b"never stored")
        rec = await recording(store)
        freed = await store.delete_many([*sparse, absent], stored_before=time.time() + 3600)
        assert freed == {d: size[d] for d in sparse}
        assert len(rec.of("ListObjectsV2")) <= 1  # was 3 pages: 2,400 objects walked
        assert len(rec.of("HeadObject")) <= len(sparse) + 1
        assert len(rec.of("DeleteObjects")) == 1
        assert {s async for s, _, _ in store.iter_blobs()} == set(digests) - set(sparse)
    finally:
        await store.close()


async def test_a_chunk_over_the_single_put_limit_goes_in_verified_parts_or_not_at_all(
    faulty: S3Server, tmp_path: Path
) -> None:
    """A chunk larger than one PUT may carry (5 GiB on S3; lowered here) is sent as a
    multipart upload, each part with its own sha256 (which S3 verifies), streamed from the
    spool file; a part S3 refuses aborts the upload, leaving no parts and no object."""
    big = os.urandom(13 * MiB + 5)
    store = make_store(
        faulty, tmp_path, multipart_threshold=6 * MiB, multipart_part_bytes=5 * MiB, max_attempts=1
    )
    try:
        client = await store.client()
        rec = await recording(store)
        faulty.faults(busy_puts=1)  # the first part refused as busy (no retry: 1 attempt)
        with pytest.raises(BlobStoreUnavailable):
            await store.put_stream(feed(big, MiB))
        faulty.faults()
        assert "AbortMultipartUpload" in [op for op, _ in rec.sent]
        listed = await client.list_multipart_uploads(Bucket=store.bucket)
        assert listed.get("Uploads", []) == []
        assert not await store.exists(sha(big))
        assert list((tmp_path / "spool").iterdir()) == []

        rec.sent.clear()
        digest, n = await store.put_stream(feed(big, MiB))
        assert (digest, n) == (sha(big), len(big))
        ops = [op for op, _ in rec.sent]
        assert "PutObject" not in ops
        assert ops.count("CreateMultipartUpload") == ops.count("CompleteMultipartUpload") == 1
        parts = rec.of("UploadPart")
        assert [int(h["content-length"]) for h in parts] == [5 * MiB, 5 * MiB, 3 * MiB + 5]
        for i, h in enumerate(parts):
            body = big[i * 5 * MiB : (i + 1) * 5 * MiB]
            assert (
                h["x-amz-checksum-sha256"]
                == base64.b64encode(hashlib.sha256(body).digest()).decode()
            )
        head = await client.head_object(Bucket=store.bucket, Key=store.key_of(digest))
        assert head["ETag"].endswith('-3"')
        assert b"".join([p async for p in store.open_range(digest)]) == big
        assert list((tmp_path / "spool").iterdir()) == []
    finally:
        faulty.faults()
        await store.close()


def test_s3_times_are_moved_onto_our_clock_by_the_skew_of_the_same_answer(
    tmp_path: Path,
) -> None:
    """LastModified is moved by (our time - the answer's Date); without a Date there is no
    S3 "now" to judge by, and a blob counts as stored just now (never collected)."""
    store = S3BlobStore(S3Options(bucket="b", spool_dir=tmp_path / "spool"))
    ours = 1_800_000_000.0
    store.clock = lambda: ours
    s3_now = ours - 7200  # S3's clock two hours behind
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(s3_now))
    answer = {"ResponseMetadata": {"HTTPHeaders": {"date": date}}}
    assert store._to_our_clock(answer)(s3_now - 10) == ours - 10  # ten seconds old
    for headers in ({}, {"date": "not a date"}):
        moved = store._to_our_clock({"ResponseMetadata": {"HTTPHeaders": headers}})
        assert moved(s3_now - 10**6) == ours


async def test_a_ping_of_an_s3_that_accepts_but_never_answers_ends_within_one_try(
    tmp_path: Path,
) -> None:
    """The API pings S3 at start and exits naming the setting if it does not answer. Against
    a hung endpoint (it accepts connections, never answers) each of CAIRN_S3_MAX_ATTEMPTS
    tries waited its CAIRN_S3_READ_TIMEOUT, with backoff between: with the defaults a start
    took over two minutes to say so. Now a ping gives up after one connect and read
    timeout, naming CAIRN_S3_ENDPOINT."""
    import asyncio
    import signal

    from tests.s3server import use_test_credentials

    use_test_credentials()
    server = S3Server()
    server.start()
    store = make_store(server, tmp_path, connect_timeout=1.0, read_timeout=1.0, max_attempts=10)
    assert server.proc is not None
    try:
        os.kill(server.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        async with asyncio.timeout(60):  # a hang fails the test instead of stalling it
            with pytest.raises(BlobStoreUnavailable, match="CAIRN_S3_ENDPOINT") as e:
                await store.ping()
        assert time.monotonic() - started < 5
        assert "CAIRN_S3_ENDPOINT" in e.value.reason
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()
        await store.close()
