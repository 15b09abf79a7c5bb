"""A tus creation-with-upload whose body outlasts its upload's creation: its quota hold
and its upload's row hold the same bytes, and must count them once at every moment, not
the hold beside the row until the request ends. Whole system (real Postgres, broker, API),
with small tus pieces so that a body's first bytes are appended while the rest is still
to come."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.api.answers import assert_error
from tests.api.tus.test_bucket_gone import OCTETS, TUS
from tests.system import System, isolated_system, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUOTA = 1_000_000
PIECE = 16 * 1024
# The bytes sent before the body waits: its first piece (the next ones are 1 MiB at least,
# api/tus/pieces.piece_at), appended once durable.
FIRST = PIECE
BODY = 600_000
# A byte of the body's rest every this many seconds until its first bytes are appended:
# the appender appends on a read, so reads must keep coming.
TRICKLE = 0.005


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def psys(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    """A system with a quota of `QUOTA` bytes per owner and 16 KiB tus pieces."""
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, quota_bytes=QUOTA, tus_piece_bytes=PIECE
    ) as s:
        yield s


async def held_mid_body(
    first: bytes, rest: bytes, appended: Callable[[], Awaitable[bool]], gate: asyncio.Event
) -> AsyncIterator[bytes]:
    """A body: `first`, then `rest` a byte at a time until `appended` says the upload has
    `first` (the appender appends what is durable when a read comes: once a second has
    passed, or 5 % of a length has gathered), then the rest of `rest` once `gate` is set.
    Never more than `rest` but its last byte before the gate."""
    yield first
    sent = 0
    while sent < len(rest) - 1 and not await appended():
        yield rest[sent : sent + 1]
        sent += 1
        await asyncio.sleep(TRICKLE)  # pacing the reads, not waiting for anything
    await gate.wait()
    yield rest[sent:]


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred-length", "upload-length"])
async def test_a_creations_body_counts_once_while_it_comes(psys: System, deferred: bool) -> None:
    """A creation of 600,000 bytes (without a length: its Content-Length is reserved; with
    one: its Upload-Length) sends its first 16 KiB and waits until its upload's row in the
    read model has them. Then another upload of 400,000 bytes fits the 1 MB quota beside
    it: the creation's bytes count once (before, its hold and its upload's row both counted
    them: 413 with used 616,384, or 1,200,000 with a length). A third upload of one byte
    past that is still refused, and the first creation ends with all its bytes."""
    owner = f"cb-{secrets.token_hex(4)}"
    async with psys.client(owner) as c:
        gate = asyncio.Event()

        async def appended() -> bool:
            """The upload's row in the read model has the body's first bytes."""
            got = await psys.pool.fetchval(
                "SELECT bytes_received FROM readmodel.uploads WHERE owner = $1", owner
            )
            return bool(got is not None and got >= FIRST)

        length = {"Upload-Defer-Length": "1"} if deferred else {"Upload-Length": str(BODY)}
        first = asyncio.create_task(
            c.post(
                "/v1/tus",
                headers={**OCTETS, **length, "Content-Length": str(BODY)},
                content=held_mid_body(b"x" * FIRST, b"x" * (BODY - FIRST), appended, gate),
            )
        )
        try:
            await wait_until(appended)
            # Mid-body: the creation holds 60,000 bytes in all, however they are counted.
            second = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "400000"})
            assert second.status_code == 201, second.text
            err = assert_error(
                await c.post("/v1/tus", headers={**TUS, "Upload-Length": "1"}),
                413,
                "quota_exceeded",
            )
            assert err["details"]["used"] == QUOTA, err
        finally:
            gate.set()
        r = await first
        assert r.status_code == 201, r.text
        assert r.headers["upload-offset"] == str(BODY), r.headers
