"""`cairn fetch` and `cairn fetches` as subprocesses against a running Cairn that may
fetch from loopback, with a small local origin."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bus.run.embedded import EmbeddedKafka, EmbeddedPostgres
from tests.bus.client.conftest import Cli
from tests.system import System, isolated_system, wait_until


@pytest.fixture(scope="module")
async def fetch_system(
    pg_server: EmbeddedPostgres, kafka_server: EmbeddedKafka, template_url: str
) -> AsyncIterator[System]:
    async with isolated_system(
        pg_server.url, kafka_server.bootstrap, fetch_allow_private=True
    ) as s:
        yield s


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("origin")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        with contextlib.suppress(Exception):
            server.server_close()


async def test_fetch_followed_to_completion_then_listed(
    fetch_system: System, origin: tuple[str, Path], tmp_path: Path
) -> None:
    base, root = origin
    data = os.urandom(3 * 1024 * 1024 + 5)
    (root / "model.bin").write_bytes(data)
    cli = Cli(fetch_system, tmp_path / "home", "fetch-user")
    done = await cli("fetch", f"{base}/model.bin", "--follow", "--json")
    assert done.code == 0, done.err
    fetch = json.loads(done.out)
    assert fetch["status"] == "COMPLETED"
    assert fetch["sha256"] == hashlib.sha256(data).hexdigest()
    out = tmp_path / "back.bin"
    got = await cli("download", fetch["file_id"], "-o", str(out))
    assert got.code == 0, got.err
    assert out.read_bytes() == data

    async def listed() -> Any:  # the list is the read model: a bounded lag
        page = json.loads((await cli("fetches", "ls", "--json")).out)
        return page["items"] or None

    assert [f["id"] for f in await wait_until(listed)] == [fetch["id"]]
    shown = await cli("fetches", "show", fetch["id"])
    assert "COMPLETED" in shown.out
    theirs = await Cli(fetch_system, tmp_path / "h2", "fetch-other")("fetches", "show", fetch["id"])
    assert theirs.code == 3


async def test_fetch_failure_and_bad_url(
    fetch_system: System, origin: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = origin
    cli = Cli(fetch_system, tmp_path / "home", "fetch-errors")
    bad = await cli("fetch", "ftp://example.com/x")
    assert bad.code == 1 and "cairn: error:" in bad.err
    missing = await cli("fetch", f"{base}/no-such-file", "--follow", "--json")
    assert missing.code != 0
    report = json.loads(missing.out.splitlines()[0])
    assert report["status"] == "FAILED"
    assert "fetch_failed" in missing.err
    # Followed again once it has failed: the same exit code and error, not a quiet 0.
    again = await cli("fetches", "show", report["id"], "--follow")
    assert again.code == missing.code and "fetch_failed" in again.err and "FAILED" in again.out
    retried = await cli("fetches", "retry", report["id"], "--json")
    assert retried.code == 0, retried.err
