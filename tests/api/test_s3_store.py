"""The whole system on the S3 blob store: an upload and a download through the API, S3
going away mid-upload (503 + Retry-After, nothing recorded, /ready false), and an API
process that cannot reach S3 at start (says so, naming the setting, and exits non-zero).

Against the local S3 server (tests/s3server.py), real Postgres and the real broker."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import botocore.session
import pytest

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.ports import free_port
from tests.s3server import S3Server, use_test_credentials
from tests.system import isolated_system

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 5 * 1024 * 1024


def bucket_keys(server: S3Server, bucket: str) -> list[str]:
    peek = botocore.session.get_session().create_client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1"
    )
    pages = peek.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


@pytest.fixture
def own_s3() -> Iterator[S3Server]:
    """A server this test may stop."""
    use_test_credentials()
    server = S3Server()
    server.start()
    yield server
    server.stop()


async def test_upload_and_download_through_the_api_on_s3(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    s3_server: S3Server,
) -> None:
    bucket = f"sys{secrets.token_hex(5)}"
    s3_server.create_bucket(bucket)
    data = os.urandom(2 * CHUNK + 12345)
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        blob_store=f"s3://{bucket}/cairn",
        s3_endpoint=s3_server.endpoint,
    ) as system:
        async with system.client() as c:
            assert (await c.get("/ready")).json()["checks"]["blob_store"] == "ok"
            r = await c.post(
                "/v1/uploads",
                json={"file_name": "f.bin", "file_size": len(data), "chunk_size": CHUNK},
            )
            assert r.status_code == 201, r.text
            uid = r.json()["id"]
            for i in range(3):
                part = data[i * CHUNK : (i + 1) * CHUNK]
                r = await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=part)
                assert r.status_code in (200, 201), r.text
            r = await c.post(f"/v1/uploads/{uid}/complete")
            assert r.status_code == 200, r.text
            assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
            fid = r.json()["file_id"]
            got = bytearray()
            async with c.stream("GET", f"/v1/files/{fid}/content") as resp:
                assert resp.status_code == 200
                async for piece in resp.aiter_bytes():
                    got += piece
            assert bytes(got) == data
        # The tail chunk is within CAIRN_BLOB_INLINE_BYTES: a row, not an object.
        tail = hashlib.sha256(data[2 * CHUNK :]).hexdigest()
        assert len(data) - 2 * CHUNK <= system.settings.blob_inline_bytes < CHUNK
        size = await system.pool.fetchval("SELECT size FROM blobs.inline WHERE sha256 = $1", tail)
        assert size == len(data) - 2 * CHUNK
    # The other chunks are in the bucket under the prefix, named by their sha256; nothing else.
    want = sorted(
        f"cairn/chunks/{hashlib.sha256(data[i * CHUNK : (i + 1) * CHUNK]).hexdigest()}"
        for i in range(2)
    )
    assert bucket_keys(s3_server, bucket) == want


async def test_s3_down_mid_upload_answers_503_and_records_nothing(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    own_s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import structlog
    from structlog.testing import capture_logs

    from api import readiness

    monkeypatch.setattr(readiness, "log", structlog.get_logger(readiness.__name__))
    monkeypatch.setattr(readiness, "FAIL_FOR", 0.0)  # every /ready below checks again
    bucket = f"down{secrets.token_hex(5)}"
    own_s3.create_bucket(bucket)
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        blob_store=f"s3://{bucket}",
        s3_endpoint=own_s3.endpoint,
        s3_max_attempts=2,
        s3_connect_timeout=1.0,
    ) as system:
        async with system.client() as c:
            r = await c.post(
                "/v1/uploads", json={"file_name": "f", "file_size": 2 * CHUNK, "chunk_size": CHUNK}
            )
            uid = r.json()["id"]
            r = await c.put(f"/v1/uploads/{uid}/chunks/0", content=os.urandom(CHUNK))
            assert r.status_code in (200, 201), r.text
            own_s3.stop()
            r = await c.put(f"/v1/uploads/{uid}/chunks/1", content=os.urandom(CHUNK))
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"].isdigit()
            body = r.json()
            assert body["error"]["code"] == "blob_store_unavailable"
            assert body["request_id"] == r.headers["X-Request-ID"]
            # Nothing recorded: chunk 1 is still missing, chunk 0 still stored.
            r = await c.get(f"/v1/uploads/{uid}/missing-chunks")
            assert r.json()["missing_chunks"] == [1]
            with capture_logs() as logs:
                for _ in range(3):
                    ready = await c.get("/ready")
                    assert ready.status_code == 503
                    # Why, naming the setting to check (and no value: /ready is public).
                    reason = ready.json()["checks"]["blob_store"]
                    assert reason == "error: S3 endpoint unreachable (CAIRN_S3_ENDPOINT)"
    # Said once in the log, in full, however often /ready is polled.
    [line] = [e for e in logs if e["event"] == "not ready" and e["check"] == "blob_store"]
    assert own_s3.endpoint in line["error"] and "CAIRN_S3_ENDPOINT" in line["error"]


async def test_s3_failing_mid_download_cuts_the_answer_with_an_error_line(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    own_s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first chunk goes out with the 200; every GET of the second is cut mid-body
    until the S3 store gives up: the answer stops short, and the log says why, with the
    request id (before, only the ASGI server's traceback did, naming neither)."""
    import httpx
    import structlog
    from structlog.testing import capture_logs

    from api import errors

    monkeypatch.setattr(errors, "log", structlog.get_logger(errors.__name__))
    bucket = f"cut{secrets.token_hex(5)}"
    own_s3.create_bucket(bucket)
    data = os.urandom(2 * CHUNK)
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        blob_store=f"s3://{bucket}",
        s3_endpoint=own_s3.endpoint,
        s3_max_attempts=2,
    ) as system:
        async with system.client() as c:
            r = await c.post(
                "/v1/uploads",
                json={"file_name": "f", "file_size": len(data), "chunk_size": CHUNK},
            )
            uid = r.json()["id"]
            for i in range(2):
                part = data[i * CHUNK : (i + 1) * CHUNK]
                r = await c.put(f"/v1/uploads/{uid}/chunks/{i}", content=part)
                assert r.status_code in (200, 201), r.text
            r = await c.post(f"/v1/uploads/{uid}/complete")
            assert r.status_code == 200, r.text
            fid = r.json()["file_id"]
            second = hashlib.sha256(data[CHUNK:]).hexdigest()
            own_s3.faults(stall_gets=100, stall_after=1000, stall_seconds=0.01, stall_key=second)
            with capture_logs() as logs:
                async with c.stream(
                    "GET", f"/v1/files/{fid}/content", headers={"X-Request-ID": "rid-cut"}
                ) as resp:
                    assert resp.status_code == 200  # the first chunk went out
                    with pytest.raises(httpx.HTTPError):
                        await resp.aread()
            own_s3.faults()
    (line,) = [e for e in logs if e["event"] == "blob store unavailable, answer cut short"]
    assert line["request_id"] == "rid-cut"
    assert "S3 GET body failed" in line["error"]


def test_api_process_exits_when_s3_is_unreachable_at_start(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CAIRN_BLOB_STORE": "s3://cairn",
        "CAIRN_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "CAIRN_S3_CONNECT_TIMEOUT": "1",
        "CAIRN_S3_MAX_ATTEMPTS": "1",
        "CAIRN_PORT": str(free_port()),
        "CAIRN_DATA_DIR": str(tmp_path),
        "CAIRN_LOG_LEVEL": "info",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bus.run.cli", "run", "api"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    out = (proc.stdout + proc.stderr).decode()
    assert proc.returncode != 0, out
    assert "CAIRN_S3_ENDPOINT" in out, out


async def test_ready_names_the_setting_when_s3_accepts_but_never_answers(
    pg_server: EmbeddedPostgres,
    kafka_server: EmbeddedKafka,
    template_url: str,
    own_s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hung S3 (it accepts connections, never answers: SIGSTOP here) outlasts /ready's
    own bound on a check, which answered `"blob_store": "error: TimeoutError"`, and logged
    "TimeoutError: " and nothing else: no word of S3 or of the setting to check, where a
    refused connection names CAIRN_S3_ENDPOINT. Now both name it."""
    import signal
    import time

    import structlog
    from structlog.testing import capture_logs

    from api import readiness

    monkeypatch.setattr(readiness, "log", structlog.get_logger(readiness.__name__))
    monkeypatch.setattr(readiness, "CHECK_TIMEOUT", 2.0)
    bucket = f"hung{secrets.token_hex(5)}"
    own_s3.create_bucket(bucket)
    assert own_s3.proc is not None
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        blob_store=f"s3://{bucket}",
        s3_endpoint=own_s3.endpoint,
    ) as system:
        async with system.client() as c:
            os.kill(own_s3.proc.pid, signal.SIGSTOP)
            try:
                with capture_logs() as logs:
                    started = time.monotonic()
                    ready = await c.get("/ready", params={"scope": "process"})
                    assert time.monotonic() - started < 10
            finally:
                os.kill(own_s3.proc.pid, signal.SIGCONT)
            assert ready.status_code == 503
            reason = ready.json()["checks"]["blob_store"]
            assert reason == "error: no answer within 2 s (CAIRN_S3_ENDPOINT)", reason
    [line] = [e for e in logs if e["event"] == "not ready" and e["check"] == "blob_store"]
    assert "CAIRN_S3_ENDPOINT" in line["error"], line
