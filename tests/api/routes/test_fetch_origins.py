"""URL fetches against origins that misbehave the way real ones do, as `wget -c`,
`curl -C -` and aria2 meet them: links that break again and again, origins that ignore
If-Range, a body compressed although identity was asked for, a stalled body, a quota, a
retry backoff cut short by a cancel. Real Postgres, broker and loopback origins
(tests/api/origins.py for the shared ones; the odd ones are written here)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from bus.store.eventstore import PostgresEventStore
from tests.api.origins import QUICK_FETCHES, ended, origin_server, until
from tests.api.routes.test_fetches import content, post
from tests.ports import free_port
from tests.system import System, isolated_system, wait_until

QUOTA = 1_000_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def osys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url,
        kafka_server.bootstrap,
        **QUICK_FETCHES,
        fetch_timeout=1.0,
        quotas=(("o-quota", QUOTA), ("o-quota-race", QUOTA), ("o-quota-full", QUOTA)),
    ) as s:
        yield s


@asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """One handler on 127.0.0.1 for every path (over TLS with `tls`); yields its base URL."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port("127.0.0.1")
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock, ssl_context=tls).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()


async def test_a_link_that_breaks_again_and_again_completes_while_bytes_come(
    osys: System,
) -> None:
    # Every answer breaks off after 40 KB: 8 broken connections for 300 KB, more than
    # CAIRN_FETCH_RETRIES (3), but each one gained bytes (wget -c, aria2: keep going).
    async with origin_server(drop_after=40_000) as o, osys.client("o-flaky") as c:
        f = await post(c, o.url("/capped"))
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert await content(c, done["file_id"]) == o.data
        assert len(o.requests("/capped")) > 3


async def _ignoring_if_range(
    request: web.Request, data: bytes, modified: str, *, cut: bool
) -> web.StreamResponse:
    """An origin that honours Range but not If-Range: `data` from the byte asked for, as a
    206 (else 200), Last-Modified `modified`; with `cut` the connection breaks at 150 KB."""
    rng = request.headers.get("Range", "")
    start = int(rng[6:].split("-")[0]) if rng.startswith("bytes=") else 0
    resp = web.StreamResponse(status=206 if rng else 200)
    resp.headers["Last-Modified"] = modified
    resp.headers["Accept-Ranges"] = "bytes"
    if rng:
        resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
    resp.content_length = len(data) - start
    await resp.prepare(request)
    if cut:
        await resp.write(data[start : start + 150_000])
        assert request.transport is not None
        request.transport.close()
        return resp
    await resp.write(data[start:])
    await resp.write_eof()
    return resp


async def test_resume_by_last_modified_from_an_origin_ignoring_if_range(osys: System) -> None:
    # No ETag, only Last-Modified; the origin honours Range but not If-Range, and the
    # resource changes (same length) between the broken first answer and the resume.
    v1 = os.urandom(300_000)
    v2 = os.urandom(300_000)
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        first = not seen
        seen.append(request.headers.get("If-Range"))
        data, modified = (
            (v1, "Mon, 01 Jan 2024 00:00:00 GMT")
            if first
            else (v2, "Tue, 02 Jan 2024 00:00:00 GMT")
        )
        return await _ignoring_if_range(request, data, modified, cut=first)

    async with serve(handler) as base, osys.client("o-lastmod") as c:
        f = await post(c, f"{base}/lm.bin")
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert seen[1] == "Mon, 01 Jan 2024 00:00:00 GMT"  # If-Range carried the validator
        assert await content(c, done["file_id"]) == v2  # never v1's head and v2's tail


async def test_a_changed_length_under_the_same_validator_starts_over(osys: System) -> None:
    # An origin that ignores If-Range answers the resume with a 206 of a resource whose
    # complete length changed: that is another representation, whatever its headers.
    v1 = os.urandom(300_000)
    v2 = os.urandom(350_000)
    calls: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        first = len(calls) == 1
        data = v1 if first else v2
        return await _ignoring_if_range(request, data, "Mon, 01 Jan 2024 00:00:00 GMT", cut=first)

    async with serve(handler) as base, osys.client("o-length") as c:
        f = await post(c, f"{base}/len.bin")
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert await content(c, done["file_id"]) == v2


async def test_a_gzip_body_sent_despite_identity_is_stored_as_sent_and_said(
    osys: System,
) -> None:
    # Apache's classic: a .tar.gz served with Content-Type application/x-tar and
    # Content-Encoding gzip. curl, wget and aria2 keep the bytes as sent (the .gz).
    raw = os.urandom(50_000)
    packed = gzip.compress(raw)
    asked: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(request.headers.get("Accept-Encoding"))
        return web.Response(
            body=packed,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/x-tar"},
        )

    async with serve(handler) as base, osys.client("o-gzip") as c:
        f = await post(c, f"{base}/a.tar.gz")
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert asked[0] == "identity"
        assert done["bytes"] == done["total"] == len(packed)
        assert done["content_encoding"] == "gzip", done
        assert await content(c, done["file_id"]) == packed
        meta = (await c.get(f"/v1/files/{done['file_id']}")).json()
        # The bytes are a gzip stream, not a tar: the file says what it holds.
        assert meta["content_type"] == "application/gzip", meta


async def test_oversized_type_and_validators_are_taken_as_absent(osys: System) -> None:
    # httpx lets a head reach 100 KiB; none of it may land in events, the read model or
    # the file's type beyond what an upload may declare (255) or a validator needs.
    data = b"%PDF-1.7\n" + os.urandom(3_000)
    huge = "x" * 5_000

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=data,
            headers={
                "Content-Type": "text/plain; p=" + huge,
                "ETag": f'"{huge}"',
                "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT " + huge,
            },
        )

    async with serve(handler) as base, osys.client("o-huge-headers") as c:
        f = await post(c, f"{base}/doc")
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        assert done["etag"] is None and done["last_modified"] is None, done
        assert await content(c, done["file_id"]) == data
        meta = (await c.get(f"/v1/files/{done['file_id']}")).json()
        # The type comes from the bytes instead.
        assert meta["content_type"] == "application/pdf", meta


async def test_a_stalled_body_times_out_and_fails_never_hangs(osys: System) -> None:
    hung, done = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 100_000
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        # Headers and a little, then nothing for an hour, or until the test has its answer.
        # Not a bare sleep: aiohttp does not cancel a handler whose client left, and the
        # runner's cleanup waits up to a minute for the stalled handlers still sleeping.
        try:
            await asyncio.wait_for(done.wait(), 3600)
        except TimeoutError:
            hung.set()
        return resp

    async with serve(handler) as base, osys.client("o-stall") as c:
        f = await post(c, f"{base}/stall.bin")
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED", failed
        assert "ReadTimeout" in failed["last_error"] and failed["file_id"] is None
        assert not hung.is_set()
        done.set()  # the fetch gave up long ago: end the origin's stalled answers


async def test_a_bucket_deleted_while_the_bytes_come_gets_nothing(osys: System) -> None:
    # The API checks the bucket when the fetch is asked for; the worker writes much later.
    started, release = asyncio.Event(), asyncio.Event()
    data = os.urandom(5_000)

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[:1000])
        started.set()
        await release.wait()
        await resp.write(data[1000:])
        return resp

    async with serve(handler) as base, osys.client("o-gone-bucket") as c:
        r = await c.post("/v1/buckets", json={"name": "fetch-gone"})
        assert r.status_code == 201, r.text
        f = await post(c, f"{base}/late.bin", bucket="fetch-gone", key="late.bin")
        await asyncio.wait_for(started.wait(), 60)
        r = await c.delete("/v1/buckets/fetch-gone")
        assert r.status_code in (200, 204), r.text
        release.set()
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and failed["file_id"] is None, failed
        events = await PostgresEventStore(osys.pool).read_stream(f"fetch-{f['id']}")
        assert events[-1].data["details"]["code"] == "bucket_not_found", events[-1].data
        assert (await c.get("/v1/buckets/fetch-gone/objects/late.bin")).status_code == 404


async def test_cancel_during_the_retry_backoff_ends_the_run(osys: System) -> None:
    count: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        count.append(1)
        return web.Response(status=503, headers={"Retry-After": "120"}, text="busy")

    async with serve(handler) as base, osys.client("o-backoff") as c:
        f = await post(c, f"{base}/busy")

        async def waiting() -> bool:
            body = (await c.get(f"/v1/fetches/{f['id']}")).json()
            return "503" in (body["last_error"] or "")

        await wait_until(waiting, timeout=60)
        r = await c.post(f"/v1/fetches/{f['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED"

        async def released() -> bool:
            held = await osys.pool.fetchval(
                "SELECT count(*) FROM work.fetch_leases WHERE fetch_id = $1::uuid", f["id"]
            )
            return held == 0

        await wait_until(released, timeout=10)  # the run ended, not 120 s later
        assert count == [1]
        events = await PostgresEventStore(osys.pool).read_stream(f"fetch-{f['id']}")
        assert events[-1].type == "FetchCancelled"


async def test_a_fetch_past_the_owners_quota_fails_and_makes_no_file(osys: System) -> None:
    async with origin_server(os.urandom(QUOTA + 200_000)) as o, osys.client("o-quota") as c:
        # announced: refused before the body
        f = await post(c, o.url("/range/big.bin"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and failed["file_id"] is None, failed
        assert "quota" in failed["last_error"], failed
        assert failed["bytes"] == 0
        # not announced (chunked): cut off once past it
        f = await post(c, o.url("/nolength"))
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and failed["file_id"] is None, failed
        assert "quota" in failed["last_error"], failed
        events = await PostgresEventStore(osys.pool).read_stream(f"fetch-{f['id']}")
        assert events[-1].data["details"]["code"] == "quota_exceeded"
        files = (await c.get("/v1/files")).json()
        assert files["items"] == [], files


async def test_a_fetch_into_a_bucket_at_quota_stops_once_the_body_passes_it(
    osys: System,
) -> None:
    """A body of no announced length into a bucket at its owner's quota: the fetch fails
    quota_exceeded once it has read one byte more than the quota left it, not when the body
    ends (this origin's never does: only the worker's stopping ends it), and nothing of it
    is kept as a file or an object."""
    sent = 0
    gone = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = os.urandom(64 * 1024)
        try:
            while sent < 200 * QUOTA:  # a bound for a worker that never stops
                await resp.write(block)
                sent += len(block)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            gone.set()
        return resp

    async with serve(endless) as base, osys.client("o-quota-full") as c:
        assert (await c.post("/v1/buckets", json={"name": "o-quota-full"})).status_code == 201
        r = await c.put("/v1/buckets/o-quota-full/objects/filler", content=b"x" * QUOTA)
        assert r.status_code == 201, r.text
        f = await post(c, f"{base}/endless", bucket="o-quota-full", key="big")
        failed = await until(c, f["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and failed["file_id"] is None, failed
        assert "quota" in failed["last_error"], failed
        assert failed["bytes"] == 0, failed  # the piece past the quota was never recorded
        events = await PostgresEventStore(osys.pool).read_stream(f"fetch-{f['id']}")
        details = events[-1].data["details"]
        assert details["code"] == "quota_exceeded", details
        # Read one byte past what the quota left (none here), not a whole piece.
        assert (details["used"], details["requested"]) == (QUOTA, 1), details
        await asyncio.wait_for(gone.wait(), 30)  # the worker hung up
        # What the origin got out before the worker hung up: one piece and what the
        # sockets buffer, far from the 200 MB it would have sent to the end.
        assert sent < 16 * 1024 * 1024, sent
        r = await c.get("/v1/buckets/o-quota-full/objects/big")
        assert r.status_code == 404, r.text
        keys = [o["key"] for o in (await c.get("/v1/buckets/o-quota-full/objects")).json()["items"]]
        assert keys == ["filler"], keys


async def test_concurrent_fetches_never_pass_the_quota_together(osys: System) -> None:
    """Three fetches of 400 KB at once against 1 MB: two fit, the third fails its last gate,
    which sees the bytes the others hold until their files are listed."""
    async with origin_server(os.urandom(400_000)) as o, osys.client("o-quota-race") as c:
        started = await asyncio.gather(*[post(c, o.url(f"/range/{n}.bin")) for n in "abc"])
        done = [await until(c, f["id"], "COMPLETED", "FAILED") for f in started]
        assert sorted(f["status"] for f in done) == ["COMPLETED", "COMPLETED", "FAILED"], done
        failed = next(f for f in done if f["status"] == "FAILED")
        assert "quota" in failed["last_error"] and failed["file_id"] is None, failed


async def test_a_request_declaring_another_sha256_is_not_handed_the_fetch(
    osys: System,
) -> None:
    # Before, the same URL asked for again was the same fetch whatever sha256 it declared:
    # answered 202 "reused" with a file of another digest, checked against nobody's.
    async with origin_server(slow_tick=0.05) as o, osys.client("o-digest") as c:
        f = await post(c, o.url("/slow"), sha256=o.sha256)
        r = await c.post("/v1/fetches", json={"url": o.url("/slow"), "sha256": "b" * 64})
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "fetch_sha256_conflict"
        assert error["details"]["sha256"] == o.sha256
        same = await post(c, o.url("/slow"), sha256=o.sha256)  # the same check: joins
        assert same["id"] == f["id"]
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "COMPLETED", done
        # The right digest, or none, is the completed fetch.
        for extra in ({"sha256": o.sha256}, {}):
            reused = await post(c, o.url("/slow"), **extra)
            assert reused["id"] == f["id"] and reused["file_id"] == done["file_id"], extra
        # Another declared one is fetched again (a new generation) and checked, never
        # handed the file of another digest.
        again = await post(c, o.url("/slow"), sha256="b" * 64)
        assert again["id"] != f["id"] and again["reused"] is False
        failed = await until(c, again["id"], "COMPLETED", "FAILED")
        assert failed["status"] == "FAILED" and "sha256 mismatch" in failed["last_error"]


def _self_signed(tmp: Path) -> ssl.SSLContext:
    """A server context with a certificate nobody trusts (self-signed, for 127.0.0.1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx


async def test_an_untrusted_certificate_fails_at_once(osys: System, tmp_path: Path) -> None:
    # Before, it was retried as if the network had failed (curl and wget stop at once):
    # CAIRN_FETCH_RETRIES more handshakes, each refused the same way, then
    # retries_exhausted, which says nothing of the certificate.
    handshakes = 0

    async def body(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"never served")

    tls = _self_signed(tmp_path)
    real_wrap = tls.wrap_bio

    def counted(*args: object, **kwargs: object) -> ssl.SSLObject:
        nonlocal handshakes
        handshakes += 1
        return real_wrap(*args, **kwargs)  # type: ignore[arg-type]

    tls.wrap_bio = counted  # type: ignore[method-assign]
    async with serve(body, tls) as base, osys.client("o-tls") as c:
        f = await post(c, f"{base}/file.bin")
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "FAILED", done
        assert done["last_error"].startswith("the origin's TLS certificate: "), done
        assert "self" in done["last_error"]  # self-signed certificate, in OpenSSL's words
        assert done["attempts"] == 1 and handshakes == 1


async def test_an_announced_length_beyond_any_file_fails_too_large_at_once(
    osys: System,
) -> None:
    # A Content-Length or a Content-Range length no 64-bit size holds. Before, it was
    # recorded first and checked after: 10**20 could not be encoded into the command,
    # the run crashed three times (three requests) and failed as `worker_failed`; 2**63
    # went into an event the fetches read model cannot hold.
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=206 if request.path == "/ranged" else 200)
        resp.headers["ETag"] = '"v1"'
        if request.path == "/ranged":
            resp.headers["Content-Range"] = f"bytes 0-9/{2**63}"
        resp.content_length = 10 if request.path == "/ranged" else 10**20 - 1
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await resp.write(b"0123456789")
        return resp

    async with serve(handler) as base, osys.client("o-absurd") as c:
        for path, total in [("/whole", 10**20 - 1), ("/ranged", 2**63)]:
            f = await post(c, f"{base}{path}")
            done = await until(c, f["id"], "COMPLETED", "FAILED")
            assert done["status"] == "FAILED" and done["attempts"] == 1, (path, done)
            assert done["last_error"] == f"the resource is {total} bytes, over the limit", done
            assert done["total"] is None and done["bytes"] == 0, done
            events = await PostgresEventStore(osys.pool).read_stream(f"fetch-{f['id']}")
            assert "FetchResponseReceived" not in {e.type for e in events}, path
            assert events[-1].data["details"]["code"] == "fetch_too_large", events[-1].data


async def test_a_body_past_its_announced_range_is_cut_off_at_the_length(osys: System) -> None:
    # A 206 announcing 100 KB (Content-Range) whose chunked body goes on. Before, it was
    # stored and recorded whole (here 2 MB; an endless one up to CAIRN_FETCH_MAX_BYTES)
    # before too_many_bytes.
    total = 100_000
    sent: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=206)
        resp.headers["ETag"] = '"v1"'
        resp.headers["Content-Range"] = f"bytes 0-{total - 1}/{total}"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(32):
                await resp.write(os.urandom(65536))
                sent.append(65536)
            await resp.write_eof()
        return resp

    async with serve(handler) as base, osys.client("o-overrun") as c:
        f = await post(c, f"{base}/over.bin")
        done = await until(c, f["id"], "COMPLETED", "FAILED")
        assert done["status"] == "FAILED", done
        assert done["last_error"] == f"the origin sent more than its {total} bytes", done
        assert done["bytes"] <= total and done["file_id"] is None, done
        events = await PostgresEventStore(osys.pool).read_stream(f"fetch-{f['id']}")
        assert events[-1].data["details"]["code"] == "too_many_bytes"


async def test_an_origin_dripping_a_few_bytes_per_connection_gives_up(osys: System) -> None:
    # Every answer brings 10 bytes, then the connection breaks. Each attempt gained a byte,
    # so each started the count of retries again: 30,000 attempts (and three events each)
    # for this 300 KB, about 1 s apart by default, holding a fetch slot for hours. Now an
    # attempt is progress only at the low-speed limit's rate on the whole, the wait before
    # it included (curl --speed-limit, aria2 --lowest-speed-limit measure the same).
    async with origin_server(drop_after=10) as o, osys.client("o-drip") as c:
        f = await post(c, o.url("/capped"))
        done = await ended(c, f["id"], timeout=30)
        assert done["status"] == "FAILED", done
        assert str(done["last_error"]).startswith("gave up after 4 attempts: "), done
        assert 0 < int(str(done["bytes"])) < 100, done  # the drips were kept, for a /retry
        assert len(o.requests("/capped")) == 4


async def test_a_cookie_one_users_origin_set_never_reaches_another_users_fetch(
    osys: System,
) -> None:
    # The fetch workers' one HTTP client kept every Set-Cookie in its jar: alice's session
    # at an origin was sent with bob's fetch of it.
    cookies: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        cookies.append(request.headers.get("Cookie"))
        response = web.Response(body=request.path.encode())
        response.set_cookie("session", "alice-secret")
        return response

    async with (
        serve(handler) as base,
        osys.client("o-cookie-alice") as alice,
        osys.client("o-cookie-bob") as bob,
    ):
        for c, path in ((alice, "/mine.bin"), (bob, "/theirs.bin")):
            f = await post(c, f"{base}{path}")
            done = await until(c, f["id"], "COMPLETED", "FAILED")
            assert done["status"] == "COMPLETED", done
    assert len(cookies) == 2 and cookies == [None, None], cookies
