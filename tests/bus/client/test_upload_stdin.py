"""`cairn upload -` (bus/client/pipe.py) as a subprocess against a running Cairn, stdin
fed through a real pipe: the bytes arrive whole (sha256-verified, read back), in chunks
of deferred length; an empty stdin is an empty file; `--bucket --key` make an object;
the usage errors and the terminal refusal; a failure and Ctrl-C terminate the upload on
the server. The retries within a chunk (429/503, a lost connection) run against scripted
answers (httpx's mock transport), where such answers can be had at will."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from rich.progress import Progress

from bus.client import pipe
from bus.client.errors import ClientError
from bus.client.transfer import Transfer
from bus.client.upload import MAX_RETRIES
from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.bus.client.conftest import Cli, Done
from tests.system import System, isolated_system, wait_until

QUOTA_USER = "stdin-quota"
QUOTA = 100_000


@pytest.fixture(scope="module")
async def system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    # One user with a small quota: a stream that outgrows it fails at its last PATCH.
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, quotas=((QUOTA_USER, QUOTA),)
    ) as s:
        yield s


async def _piped(cli: Cli, data: bytes, *args: str) -> Done:
    """`cairn upload - ARGS` with `data` written into its stdin, a pipe, then closed."""
    proc = await cli.start("upload", "-", *args, stdin=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(data), 120)
    assert proc.returncode is not None
    assert "Traceback" not in err.decode(), err.decode()
    return Done(proc.returncode, out.decode(), err.decode())


async def _content(system: System, user: str, file_id: str) -> bytes:
    async with system.client(user) as c:
        r = await c.get(f"/v1/files/{file_id}/content")
        assert r.status_code == 200
        return r.content


async def _uploads(system: System, user: str) -> list[dict[str, Any]]:
    async with system.client(user) as c:
        r = await c.get("/v1/uploads", params={"limit": 100})
        assert r.status_code == 200
        items: list[dict[str, Any]] = r.json()["items"]
        return items


# 10 full chunks and a short one; and exactly 4 full ones, whose end only an empty last
# PATCH (declaring the length) can tell.
@pytest.mark.parametrize("size", [700_000, 4 * 65536])
async def test_stdin_in_chunks_arrives_whole(system: System, cli_for: Any, size: int) -> None:
    user = f"stdin-plain-{size}"
    cli = cli_for(user)
    data = os.urandom(size)
    done = await _piped(cli, data, "--chunk-size", "64k", "--json")
    assert done.code == 0, done.err
    (f,) = json.loads(done.out)["files"]
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert (f["size"], f["bytes_sent"], f["path"], f["name"]) == (size, size, "-", "stdin")
    assert await _content(system, user, f["file_id"]) == data
    async with system.client(user) as c:
        meta = (await c.get(f"/v1/files/{f['file_id']}")).json()
        up = (await c.get(f"/v1/uploads/{f['upload_id']}")).json()
    assert (meta["name"], meta["sha256"]) == ("stdin", f["sha256"])
    assert up["mode"] == "stream" and up["file_id"] == f["file_id"]  # through tus


async def test_empty_stdin_is_an_empty_file(system: System, cli_for: Any) -> None:
    user = "stdin-empty"
    cli = cli_for(user)
    done = await _piped(cli, b"", "--name", "nothing.txt", "--json")
    assert done.code == 0, done.err
    (f,) = json.loads(done.out)["files"]
    assert (f["size"], f["name"]) == (0, "nothing.txt")
    assert f["sha256"] == hashlib.sha256(b"").hexdigest()
    assert await _content(system, user, f["file_id"]) == b""


async def test_into_a_bucket_under_a_key(system: System, cli_for: Any) -> None:
    user = "stdin-bucket"
    cli = cli_for(user)
    assert (await cli("buckets", "create", "stdin-dumps")).code == 0
    data = os.urandom(150_000)
    done = await _piped(cli, data, "--bucket", "stdin-dumps", "--key", "db/today.sql")
    assert done.code == 0, done.err
    assert "today.sql" not in done.err  # the table goes to stdout
    assert "uploaded" in done.out and "146.5 KiB" in done.out

    listed = await cli("ls", "stdin-dumps/db/")
    assert listed.code == 0 and "today.sql" in listed.out, listed
    proc = await cli.start("download", "stdin-dumps/db/today.sql", "-o", "-")
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert out == data

    # A --key ending in / is a prefix for --name.
    done = await _piped(
        cli, b"x" * 10, "--bucket", "stdin-dumps", "--key", "db/", "--name", "n.txt", "--json"
    )
    assert done.code == 0, done.err
    (f,) = json.loads(done.out)["files"]
    assert (f["name"], f["key"]) == ("n.txt", "db/n.txt")


@pytest.mark.parametrize(
    ("name", "key", "bucket", "expected"),
    [
        (None, None, None, ("stdin", None)),
        ("db.sql", None, None, ("db.sql", None)),
        (None, "dumps/db.sql", None, ("db.sql", "dumps/db.sql")),
        ("other.sql", "dumps/db.sql", None, ("other.sql", "dumps/db.sql")),
        (None, None, "b", ("stdin", "stdin")),  # in a bucket the key is the name
        ("db.sql", None, "b", ("db.sql", "db.sql")),
        ("db.sql", "dumps/", "b", ("db.sql", "dumps/db.sql")),
    ],
)
def test_the_name_and_key(
    name: str | None, key: str | None, bucket: str | None, expected: tuple[str, str | None]
) -> None:
    assert pipe.names(name, key, bucket) == expected


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("-", "README.md"), "uploaded alone"),
        (("-", "-"), "uploaded alone"),
        (("-", "--streams", "2"), "--streams does not apply to -"),
        (("-", "--parallel", "3"), "--parallel does not apply to -"),
        (("-", "--key", "dumps/"), "give the name with --name"),
        (("README.md", "--name", "x"), "use it with -"),
    ],
)
async def test_usage_errors(cli_for: Any, args: tuple[str, ...], says: str) -> None:
    cli = cli_for("stdin-usage")
    proc = await cli.start("upload", *args, stdin=asyncio.subprocess.DEVNULL)
    done = await cli.finish(proc)
    assert done.code == 2, done
    (line,) = done.err.splitlines()
    assert line.startswith("cairn: error: usage: ") and says in line, line


async def test_a_terminal_is_refused(system: System, cli_for: Any) -> None:
    cli = cli_for("stdin-tty")
    primary, secondary = os.openpty()
    try:
        proc = await cli.start("upload", "-", stdin=secondary)
        done = await cli.finish(proc)
    finally:
        os.close(primary)
        os.close(secondary)
    assert done.code == 2, done
    assert "refusing to read the upload from a terminal" in done.err
    assert await _uploads(system, "stdin-tty") == []  # nothing was created


async def test_a_failure_terminates_the_upload(system: System, cli_for: Any) -> None:
    """Over the quota, which only the last PATCH can tell (it declares the length): the
    command fails with the server's error, and the upload is not left behind."""
    cli = cli_for(QUOTA_USER)
    done = await _piped(cli, os.urandom(3 * QUOTA), "--chunk-size", "64k")
    assert done.code == 1, done
    assert "quota_exceeded" in done.err and "(HTTP 413)" in done.err

    async def aborted() -> Any:
        ups = await _uploads(system, QUOTA_USER)
        return ups if ups and all(u["status"] == "ABORTED" for u in ups) else None

    assert len(await wait_until(aborted)) == 1


async def test_ctrl_c_terminates_the_upload(system: System, cli_for: Any) -> None:
    user = "stdin-ctrl-c"
    cli = cli_for(user)
    proc = await cli.start("upload", "-", "--chunk-size", "64k", stdin=asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    # Two chunks' worth, the pipe left open: the client sends them, then waits for more.
    proc.stdin.write(os.urandom(3 * 65536))
    await proc.stdin.drain()

    async def some_bytes_stored() -> Any:
        ups = await _uploads(system, user)
        return ups if ups and ups[0]["bytes_received"] >= 2 * 65536 else None

    await wait_until(some_bytes_stored, timeout=60)
    stopped = await cli.interrupt(proc)
    assert stopped.code == 130, stopped.err
    assert "cannot be resumed" in stopped.err and "Traceback" not in stopped.err

    async def aborted() -> Any:
        ups = await _uploads(system, user)
        return ups if ups and ups[0]["status"] == "ABORTED" else None

    assert len(await wait_until(aborted)) == 1


@pytest.mark.parametrize(
    ("size", "chunks"), [(10_000, [4096, 4096, 1808]), (8192, [4096, 4096, 0]), (0, [0])]
)
def test_chunks_are_full_whatever_the_pipe_delivers(size: int, chunks: list[int]) -> None:
    """A pipe hands over what was written so far (here 1,000 bytes at a time, read
    unbuffered): a short read is not the end, only a read of nothing is."""
    data = os.urandom(size)
    r, w = os.pipe()

    def write() -> None:
        with os.fdopen(w, "wb", buffering=0) as f:
            for i in range(0, size, 1000):
                f.write(data[i : i + 1000])

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(r, "rb", buffering=0) as f:
        got = [(bytes(c), last) for c, last in pipe.Chunks(f, 4096)]
    writer.join()
    assert [len(c) for c, _ in got] == chunks
    assert [last for _, last in got] == [False] * (len(chunks) - 1) + [True]
    assert b"".join(c for c, _ in got) == data


# ---- within a chunk, against scripted answers ------------------------------------------

CHUNK = bytes(range(256)) * 4  # 1024 bytes, at offset 2048 of the upload
START = 2048
URL = "http://cairn/v1/tus/u1"


def _send(
    answers: list[Callable[[httpx.Request], httpx.Response]],
    last: bool = False,
    requests: list[httpx.Request] | None = None,
) -> tuple[int | ClientError, list[httpx.Request]]:
    """send_chunk through answers given in turn (to every request, PATCH or HEAD); what
    it returned (or raised as a ClientError) and the requests the server got (also in
    `requests`, if given, for an error raised otherwise)."""
    requests = [] if requests is None else requests

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        requests.append(request)
        return answers[len(requests) - 1](request)

    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://cairn") as c:
        transfer = Transfer(Progress(disable=True), None, None)
        transfer.stop.set()  # the waits (Retry-After, reconnecting) return at once
        try:
            got: int | ClientError = pipe.send_chunk(
                c, URL, START, memoryview(CHUNK), last, transfer
            )
        except ClientError as e:
            got = e
    return got, requests


def _answer(status: int, code: str = "", **headers: str) -> Callable[..., httpx.Response]:
    body = {"error": {"code": code, "message": code, "details": {}}} if code else None
    return lambda request: httpx.Response(status, headers=headers, json=body)


def _cut(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("peer closed connection", request=request)


@pytest.mark.parametrize(
    ("status", "code"), [(429, "too_many_requests"), (503, "blob_store_unavailable")]
)
def test_a_passing_refusal_sends_the_chunk_again(status: int, code: str) -> None:
    refused = _answer(status, code, **{"Retry-After": "0"})
    got, requests = _send([refused, refused, _answer(204)], last=True)
    assert got == START + len(CHUNK)
    assert [r.content for r in requests] == [CHUNK] * 3
    assert {r.headers["upload-offset"] for r in requests} == {str(START)}
    assert {r.headers["upload-length"] for r in requests} == {str(START + len(CHUNK))}


def test_a_lost_connection_resends_from_the_servers_offset() -> None:
    head = _answer(200, **{"Upload-Offset": str(START + 300), "Upload-Defer-Length": "1"})
    got, requests = _send([_cut, head, _answer(204)])
    assert got == START + len(CHUNK)
    assert [r.method for r in requests] == ["PATCH", "HEAD", "PATCH"]
    assert requests[2].headers["upload-offset"] == str(START + 300)
    assert requests[2].content == CHUNK[300:]  # only what the server did not keep


def test_an_offset_moved_meanwhile_is_asked_for() -> None:
    # A cut-off PATCH's bytes appended after the HEAD that followed it: the next PATCH is
    # refused (409), and the client asks again.
    head = _answer(200, **{"Upload-Offset": str(START + 1000)})
    got, requests = _send([_answer(409, "offset_mismatch"), head, _answer(204)])
    assert got == START + len(CHUNK)
    assert requests[2].content == CHUNK[1000:]


def test_all_of_a_chunk_kept_needs_no_resend() -> None:
    head = _answer(200, **{"Upload-Offset": str(START + len(CHUNK))})
    got, requests = _send([_cut, head])
    assert got == START + len(CHUNK)
    assert [r.method for r in requests] == ["PATCH", "HEAD"]


def test_an_offset_outside_the_chunk_is_an_error() -> None:
    head = _answer(200, **{"Upload-Offset": str(START - 1)})
    got, requests = _send([_cut, head])
    assert isinstance(got, ClientError) and got.code == "offset_lost"
    assert len(requests) == 2


def test_a_server_gone_for_good_is_unreachable() -> None:
    # Every PATCH and every HEAD cut: the connection error itself ends it (exit 7), after
    # as many tries as a 429 gets. (Asserting only the error passed as well when the
    # first cut ended the upload.)
    requests: list[httpx.Request] = []
    with pytest.raises(httpx.TransportError):
        _send([_cut] * (2 * MAX_RETRIES), requests=requests)
    assert [r.method for r in requests] == ["PATCH", "HEAD"] * MAX_RETRIES


def test_any_other_error_ends_the_chunk_at_once() -> None:
    got, requests = _send([_answer(413, "quota_exceeded"), _answer(204)], last=True)
    assert isinstance(got, ClientError) and got.code == "quota_exceeded"
    assert len(requests) == 1


def test_a_sha256_mismatch_is_exit_6() -> None:
    """The server made a file of other bytes than were read: said, with exit 6 (the upload
    is complete by then: nothing to terminate)."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(201, headers={"Location": "/v1/tus/u1"})
        if request.method == "PATCH":
            return httpx.Response(204)
        if request.url.path == "/v1/uploads/u1":
            return httpx.Response(200, json={"file_id": "f1"})
        return httpx.Response(200, json={"sha256": "0" * 64})

    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://cairn") as c:
        transfer = Transfer(Progress(disable=True), None, None)
        with pytest.raises(ClientError) as e:
            pipe._send(c, io.BytesIO(b"abc"), "n", None, None, 1024, transfer)
    assert (e.value.code, e.value.exit_code) == ("sha256_mismatch", 6)
    assert hashlib.sha256(b"abc").hexdigest() in e.value.message
    assert seen == ["POST /v1/tus/", "PATCH /v1/tus/u1", "GET /v1/uploads/u1", "GET /v1/files/f1"]


@pytest.mark.parametrize(
    ("location", "kept"),
    [
        ("/v1/tus/abc", "http://cairn/v1/tus/abc"),
        ("http://cairn/v1/tus/abc", "http://cairn/v1/tus/abc"),
        ("http://evil.example/v1/tus/abc", None),  # stdin and the token: to another host
        ("https://cairn/v1/tus/abc", None),  # another origin too (scheme)
        ("//evil.example/x", None),
    ],
)
def test_the_upload_url_stays_on_the_server(location: str, kept: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Location": location})

    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://cairn") as c:
        if kept is not None:
            assert pipe._create(c, "f", None, None, {}) == kept
        else:
            with pytest.raises(ClientError) as e:
                pipe._create(c, "f", None, None, {})
            assert e.value.code == "bad_response" and "another server" in e.value.message
