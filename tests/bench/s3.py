"""S3 scenario: a 1 GiB upload and download with Cairn on the S3 blob store, next to the
same transfer done directly with aiobotocore against the same local S3 server.

The server is the tests' local S3 (moto behind the checksum-verifying layer,
tests/s3server.py), so what is measured is Cairn's overhead on top of an S3 endpoint on
this machine, not S3's own speed; moto (Python, single process) is usually the limit.
A second `cairn up` runs with `CAIRN_BLOB_STORE=s3://...`. Direct baseline: one streaming
PUT of the file (with its sha256 checksum, like Cairn's) and one streamed GET.
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from tests.bench import client as native
from tests.bench.cairn import Cairn
from tests.bench.core import Result, Row, Scenario, human_bytes, mb_per_s
from tests.bench.runner import Bench, _log
from tests.s3server import S3Server, use_test_credentials

BUCKET = "cairn-bench"
DIRECT = "aiobotocore direct (PUT / GET)"


def _sha256_b64(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return base64.b64encode(h.digest()).decode()


def _server_tail(log: Path, keep: int = 25) -> str:
    """The end of the local S3 server's stderr (the traceback behind a 500 it answered)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {log})"
    return "the local S3 server's last lines:\n" + "\n".join(lines[-keep:])


def _complaints(log: Path, keep: int = 15) -> str:
    """The last warnings and errors of a Cairn's log (its JSON lines), for an error report."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {log})"
    bad = [ln for ln in lines if '"level": "warning"' in ln or '"level": "error"' in ln]
    return f"last warnings and errors in {log.name}:\n" + "\n".join(bad[-keep:])


async def transfer(bench: Bench, res: Result) -> None:
    import asyncio

    s = bench.scale
    size = s.single_bytes
    path = await bench.data("s3-single", size)
    use_test_credentials()
    server = S3Server(log=bench.work / "s3server.log")
    await asyncio.to_thread(server.start)
    cairn = Cairn(
        bench.work,
        env={
            "CAIRN_BLOB_STORE": f"s3://{BUCKET}/cairn",
            "CAIRN_S3_ENDPOINT": server.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
        name="cairn-s3",
    )
    up, down, d_up, d_down = [], [], [], []
    retried = 0
    try:
        server.create_bucket(BUCKET)
        await asyncio.to_thread(cairn.start)
        config = AioConfig(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path", "payload_signing_enabled": False},
        )
        async with (
            native.client(cairn.url, cairn.headers, conns=4) as c,
            get_session().create_client(
                "s3", endpoint_url=server.endpoint, region_name="us-east-1", config=config
            ) as s3,
        ):
            for i, warmup in bench.iterations():
                await bench.fresh(path)
                await bench.settle()
                t = await native.native_upload(c, path, name=f"s3-{i}.bin")
                retried += t.retries
                t0 = time.perf_counter()
                got = 0
                async with c.stream("GET", f"/v1/files/{t.file_id}/content") as r:
                    r.raise_for_status()
                    async for piece in r.aiter_raw():
                        got += len(piece)
                t_down = time.perf_counter() - t0
                if got != size:
                    raise AssertionError(f"downloaded {got} bytes of {size}")
                digest = await asyncio.to_thread(_sha256_b64, path)
                t0 = time.perf_counter()
                with path.open("rb") as f:
                    await s3.put_object(
                        Bucket=BUCKET,
                        Key=f"direct/{i}",
                        Body=f,
                        ContentLength=size,
                        ChecksumSHA256=digest,
                    )
                t_dup = time.perf_counter() - t0
                t0 = time.perf_counter()
                resp = await s3.get_object(Bucket=BUCKET, Key=f"direct/{i}")
                got = 0
                async for piece in resp["Body"].iter_chunks(1 << 20):
                    got += len(piece)
                t_ddown = time.perf_counter() - t0
                if got != size:
                    raise AssertionError(f"direct GET gave {got} bytes of {size}")
                if not warmup:
                    up.append(mb_per_s(size, t.seconds))
                    down.append(mb_per_s(size, t_down))
                    d_up.append(mb_per_s(size, t_dup))
                    d_down.append(mb_per_s(size, t_ddown))
                _log(
                    f"    run {i}: up {mb_per_s(size, t.seconds):.0f} MB/s, down {mb_per_s(size, t_down):.0f} MB/s"
                )
    except Exception as e:
        # The S3 Cairn's work dir is gone after the run: keep what its log said went wrong
        # (a 503 here has come from the local S3 server stalling under a full run's load).
        raise RuntimeError(
            f"{e}\n{_complaints(cairn.proc.log)}\n{_server_tail(bench.work / 's3server.log')}"
        ) from e
    finally:
        await asyncio.to_thread(cairn.stop)
        server.stop()
    res.rows += [
        Row("upload", "MB/s", up, DIRECT, d_up),
        Row("download", "MB/s", down, DIRECT, d_down),
    ]
    res.notes.append(
        f"{human_bytes(size)}, one stream, Cairn's default chunk size; the direct PUT is one"
        " request for the whole file (sha256 checksum header, unsigned payload), the direct"
        " GET one streamed response. Same local S3 server (moto + checksum checks)."
    )
    if retried:
        res.notes.append(
            f"{retried} chunk PUT(s) answered 503 blob_store_unavailable (the local S3 server"
            " stalled) and were sent again after Retry-After; that time is in the figures"
        )


SCENARIOS = [
    Scenario(
        "s3.transfer",
        "1 GiB upload and download with the S3 blob store vs the same transfer with aiobotocore",
        transfer,
        extra_timeout=120.0,
    ),
]
