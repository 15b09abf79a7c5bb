"""A graceful stop of the API process drains: new requests get 503 with Retry-After, those
in flight finish, or get 503 if they outlast the drain; never a 500."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.system import System, isolated_system

pytestmark = pytest.mark.timeout(120)
CHUNK = 64 * 1024


async def _raw_response(reader: asyncio.StreamReader) -> httpx.Response:
    raw = await reader.read()  # until the server closes the connection
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])]
    return httpx.Response(int(lines[0].split()[1]), headers=headers, content=body)


async def _stop_api_with_request_in_flight(
    system: System, finish_in_time: bool
) -> tuple[httpx.Response, httpx.Response]:
    """Stop the API while a chunk PUT is in flight (its body half sent, on a raw socket so
    that the test can read the answer while still owing body bytes)."""
    async with system.client("drain-user") as c:
        r = await c.post(
            "/v1/uploads", json={"file_name": "d.bin", "file_size": CHUNK, "chunk_size": CHUNK}
        )
        assert r.status_code == 201, r.text
        upload_id = r.json()["id"]
    reader, writer = await asyncio.open_connection(system.settings.host, system.settings.port)
    writer.write(
        f"PUT /v1/uploads/{upload_id}/chunks/0 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {system.token('drain-user')}\r\n"
        f"Content-Length: {CHUNK}\r\nConnection: close\r\n\r\n".encode()
        + b"a" * (CHUNK // 2)
    )
    await writer.drain()
    # The request is in flight once the server has taken its head: the API is stopped
    # only after a request on another connection was answered, i.e. the head was read.
    async with system.client("drain-user") as c:
        assert (await c.get("/v1/uploads")).status_code == 200
    stopping = asyncio.create_task(system.stop("api"))
    # A new request, on a new connection, while the API drains.
    async with system.client("drain-user") as fresh:
        late = None
        while late is None:
            with contextlib.suppress(httpx.TransportError):
                late = await fresh.get("/v1/uploads")
                if late.status_code != 503:
                    late = None  # the stop signal has not been acted on yet
                    await asyncio.sleep(0.05)
    if finish_in_time:
        writer.write(b"a" * (CHUNK // 2))
        await writer.drain()
    answer = await _raw_response(reader)
    writer.close()
    await stopping
    return late, answer


async def test_in_flight_request_finishes_and_new_ones_get_503(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    async with isolated_system(pg_server.url, kafka_server.bootstrap, drain_timeout=30) as s:
        late, answer = await _stop_api_with_request_in_flight(s, finish_in_time=True)
    assert late.status_code == 503
    assert late.headers["Retry-After"].isdigit()
    assert late.json()["error"]["code"] == "shutting_down"
    assert late.json()["request_id"] == late.headers["X-Request-ID"]
    assert answer.status_code == 201, answer.text


async def test_request_outlasting_the_drain_gets_503_not_500(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> None:
    async with isolated_system(pg_server.url, kafka_server.bootstrap, drain_timeout=1) as s:
        late, answer = await _stop_api_with_request_in_flight(s, finish_in_time=False)
    assert late.status_code == 503
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "shutting_down"
    assert "Retry-After" in answer.headers
