"""`cairn upload --header 'NAME: VALUE'` (repeatable): the object's stored headers, sent on
every way it uploads (native `headers`, tus and stdin as Upload-Metadata keys) and served
by the object's GET; a name outside the five, a bad value, or headers without --bucket are
usage errors before any byte is sent."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import pytest

from bus.client import commands
from bus.client.upload import Job, meta_state
from domain.files import headers as domain_headers
from tests.system import System, wait_until

BODY = gzip.compress(b"<p>hello</p>\n" * 500)
HEADERS = ("--header", "Cache-Control: max-age=60", "--header", "content-encoding:gzip")


async def test_upload_header_sets_the_objects_stored_headers(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    user = "up-headers"
    cli = cli_for(user)
    assert (await cli("buckets", "create", "site")).code == 0
    (tmp_path / "index.html.gz").write_bytes(BODY)
    for key, extra in (("native", ()), ("tus", ("--tus",))):
        done = await cli(
            "upload", str(tmp_path / "index.html.gz"), "--bucket", "site", "--key", key,
            *HEADERS, *extra,
        )  # fmt: skip
        assert done.code == 0, done.err
    proc = await cli.start(
        "upload", "-", "--bucket", "site", "--key", "stdin", *HEADERS,
        stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(BODY), 120)
    assert proc.returncode == 0, err.decode()
    async with system.client(user) as c:
        for key in ("native", "tus", "stdin"):

            async def made(key: str = key) -> Any:
                r = await c.head(f"/v1/buckets/site/objects/{key}")
                return r if r.status_code == 200 else None

            # (a native or tus upload becomes its object when the handler has run)
            r = await wait_until(made)
            assert r.headers["cache-control"] == "max-age=60", key
            assert r.headers["content-encoding"] == "gzip", key
            async with c.stream("GET", f"/v1/buckets/site/objects/{key}") as g:
                raw = b"".join([p async for p in g.aiter_raw()])
            assert raw == BODY, key  # stored as sent, never decoded
            assert "x-amz-meta-cache-control" not in r.headers  # a header, not metadata


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--bucket", "site", "--header", "X-Frame-Options: DENY"), "x-frame-options"),
        (("--bucket", "site", "--header", "no colon"), "NAME: VALUE"),
        (("--bucket", "site", "--header", "Expires: " + "9" * 1025), "1024"),
        (("--header", "Cache-Control: no-cache"), "--bucket"),
        (("--bucket", "site", "--meta", "Cache-Control=no-cache"), "--header"),
    ],
)
async def test_a_bad_header_is_a_usage_error_before_anything_is_sent(
    system: System, cli_for: Any, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    user = "up-bad-headers"
    cli = cli_for(user)
    (tmp_path / "f.bin").write_bytes(b"x")
    for tus in ((), ("--tus",)):
        done = await cli("upload", str(tmp_path / "f.bin"), *args, *tus)
        assert done.code == 2 and said in done.err, done.err
    async with system.client(user) as c:
        assert (await c.get("/v1/uploads")).json()["total"] == 0


def test_the_clients_copy_of_the_rule_is_the_servers() -> None:
    assert commands.STORED_HEADERS == domain_headers.STORED_HEADERS
    assert commands.MAX_HEADER_BYTES == domain_headers.MAX_HEADER_BYTES


def test_other_headers_are_another_upload_none_the_same_as_before() -> None:
    job = Job(path=Path("f"), size=1, mtime_ns=1, name="f", key="k")
    assert meta_state(job) == ()  # a state made before --header existed still matches
    gz = Job(path=Path("f"), size=1, mtime_ns=1, name="f", key="k", headers=(("expires", "0"),))
    assert meta_state(gz) != meta_state(job)
