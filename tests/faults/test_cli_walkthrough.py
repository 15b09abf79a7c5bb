"""The README walkthrough, with real external clients: `cairn up`, `cairn token`, curl.

`test_readme_first_upload_verbatim` runs the README's "A first upload" block exactly as
printed, with bash, from the checkout; the longer test below goes further (out-of-order
chunks, a restart, the events on the topics).

What someone trying Cairn does in a terminal: start it, get a token, upload a file in
chunks with curl (out of order, one chunk left out and resumed from the missing list),
complete it, download it, and watch the events on the Kafka topics. Then Ctrl-C, start it
again on the same data dir: the file is still there, and so is the upload in the listing
(the read model lives in Postgres, not in the broker, which starts empty).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bus.config.settings import Settings
from bus.kafka.clients import make_consumer
from bus.run.supervisor import port_in_use
from tests.faults.proc import Up, cairn_env, cli, describe, poll, run_up

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
JSON_SINCE = (7, 82)  # curl --json

# Over 1 MiB, so curl -T sends `Expect: 100-continue` first, as it does for real files.
CHUNK = 1536 * 1024
DATA_SIZE = 2 * CHUNK + 4321  # 3 chunks, the last one short
RETRY_FOR = 90.0


ROOT = Path(__file__).resolve().parents[2]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def readme_block(heading: str) -> str:
    """The first ```sh block after `heading` in README.md, as printed."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(heading) :]
    match = re.search(r"^```sh\n(.*?)^```$", after, re.S | re.M)
    assert match, f"no sh block after {heading!r}"
    return match.group(1)


@pytest.mark.timeout(300)
async def test_readme_first_upload_verbatim(tmp_path: Path, runs: list[Up]) -> None:
    script = readme_block("### A first upload")
    # What the README promises of it: ids captured into variables, no placeholders.
    assert "<" not in script.replace("<<", ""), "no placeholders to edit by hand"
    env = cairn_env(tmp_path / "data")
    up = await run_up(env, tmp_path, "up", runs)
    banner = up.out.read_text()
    # The banner's token command, as printed, mints a token this server accepts.
    command = next(line for line in banner.splitlines() if "token alice" in line)
    command = command.split(":", 1)[1].split("(")[0].strip()
    assert command.startswith(f"CAIRN_DATA_DIR={env['CAIRN_DATA_DIR']} python3 ")
    # dev.py keeps its own tools in .tools/ (gitignored); the first command of a fresh
    # checkout creates it, which is not the walkthrough writing into the checkout.
    before = set(os.listdir(ROOT)) - {".tools"}

    # From the checkout, as the README says; CAIRN_PORT because this run is on a free port.
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        f"TOKEN=$({command})\n" + 'curl -sf "http://127.0.0.1:$CAIRN_PORT/v1/uploads" '
        '-H "Authorization: Bearer $TOKEN" >/dev/null\n' + script,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 240)
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == 0, f"{out}\n{err}\n{up.log()}"
    assert "same bytes" in out, out
    upload_id = re.search(rf"^upload ({UUID})$", out, re.M)
    file_id = re.search(rf"\bfile ({UUID})$", out, re.M)  # after a JSON without newline
    assert upload_id and file_id, out
    assert '"missing_chunks":[1,2]' in out.replace(" ", ""), out
    assert set(os.listdir(ROOT)) - {".tools"} == before, "the walkthrough wrote into the checkout"

    # The file it made is there for alice, with the walkthrough's size.
    token = (await cli(env, "token", "alice"))[1].strip()
    async with httpx.AsyncClient(base_url=up.url, timeout=30) as c:
        r = await c.get(
            f"/v1/files/{file_id.group(1)}", headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 200 and r.json()["size"] == 20_000_000, r.text
    assert await up.stop() == 0, up.log()


@pytest.fixture
def curl_with_json() -> None:
    assert CURL is not None
    out = subprocess.run([CURL, "--version"], capture_output=True, text=True, check=True).stdout
    version = out.split()[1]
    if tuple(int(x) for x in version.split(".")[:2]) < JSON_SINCE:
        pytest.skip(f"curl {version} has no --json (needs 7.82 or later)")


class Curl:
    """curl as a subprocess: (HTTP status, body) of one request."""

    def __init__(self, base: str, token: str, scratch: Path) -> None:
        self.base = base
        self.auth = f"Authorization: Bearer {token}"
        self.scratch = scratch
        self.n = 0

    async def __call__(
        self, *args: str, path: str, out: Path | None = None, auth: bool = True
    ) -> tuple[int, bytes]:
        self.n += 1
        body = out or self.scratch / f"curl-{self.n}.body"
        assert CURL is not None
        proc = await asyncio.create_subprocess_exec(
            CURL,
            "-sS",
            "-o",
            str(body),
            "-w",
            "%{http_code}",
            *(["-H", self.auth] if auth else []),
            *args,
            f"{self.base}{path}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, f"curl {args} {path}: {stderr.decode()}"
        return int(stdout), (b"" if out else body.read_bytes())

    async def retrying(self, *args: str, path: str) -> tuple[int, bytes]:
        """What a script does: retry on 503 (bus unavailable, actors still joining)."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            status, body = await self(*args, path=path)
            if status != 503 or time.monotonic() > deadline:
                return status, body
            await asyncio.sleep(0.5)


def _j(body: bytes) -> Any:
    return json.loads(body)


async def read_topics(
    bootstrap: str, upload_id: str, file_id: str, n_chunks: int, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """This upload's and this file's events from `cairn.uploads` and `cairn.files`, as
    {topic, key, headers, **value}, once all the expected ones have arrived (deduplicated by
    event id: delivery is at least once)."""
    settings = Settings(kafka_bootstrap=bootstrap)
    consumer = make_consumer(
        settings, settings.topic("uploads"), settings.topic("files"), group_id=None
    )
    await consumer.start()
    seen: dict[str, dict[str, Any]] = {}
    streams = {f"upload-{upload_id}", f"file-{file_id}"}

    async def complete() -> bool:
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            for r in records:
                value = orjson.loads(r.value)
                if value["stream_id"] in streams:
                    seen.setdefault(
                        value["id"],
                        {
                            "topic": r.topic,
                            "key": r.key.decode() if r.key is not None else None,
                            "headers": {k: v.decode() for k, v in r.headers},
                            **value,
                        },
                    )
        types = [e["type"] for e in seen.values()]
        return (
            "UploadCompleted" in types
            and "FileCreated" in types
            and types.count("UploadChunkStored") >= n_chunks
        )

    try:
        await poll(
            "the upload's events on the topics",
            complete,
            timeout,
            lambda: "\n".join(
                f"{e['stream_id']} {e['version']} {e['type']}" for e in seen.values()
            ),
            interval=0,
        )
    finally:
        await consumer.stop()
    return sorted(seen.values(), key=lambda e: (e["stream_id"], e["version"]))


def check_events(events: list[dict[str, Any]], upload_id: str, file_id: str, n: int) -> None:
    uploads = [e for e in events if e["stream_id"] == f"upload-{upload_id}"]
    files = [e for e in events if e["stream_id"] == f"file-{file_id}"]
    assert [e["type"] for e in uploads] == [
        "UploadInitiated",
        *["UploadChunkStored"] * n,
        "UploadCompleted",
    ]
    assert [e["version"] for e in uploads] == list(range(1, n + 3))
    assert sorted(e["data"]["index"] for e in uploads[1:-1]) == list(range(n))
    assert all(e["topic"] == "cairn.uploads" and e["key"] == upload_id for e in uploads)
    assert [e["type"] for e in files][:1] == ["FileCreated"]
    assert all(e["topic"] == "cairn.files" and e["key"] == file_id for e in files)
    for e in uploads + files:
        assert e["owner"] == "alice"
        assert e["headers"].get("event-id") == e["id"]
        assert e["headers"].get("event-type") == e["type"]
    positions = [e["position"] for e in sorted(uploads, key=lambda e: e["version"])]
    assert positions == sorted(positions)


@pytest.mark.timeout(300)
async def test_readme_walkthrough_with_curl(
    curl_with_json: None, tmp_path: Path, runs: list[Up]
) -> None:
    env = cairn_env(tmp_path / "data")
    bootstrap = f"127.0.0.1:{env['CAIRN_EMBEDDED_KAFKA_PORT']}"
    scratch = tmp_path / "client"
    scratch.mkdir()
    data = os.urandom(DATA_SIZE)
    digest = hashlib.sha256(data).hexdigest()
    (scratch / "walkthrough.bin").write_bytes(data)
    parts = []
    for i in range(0, len(data), CHUNK):
        part = scratch / f"part-{i // CHUNK}"
        part.write_bytes(data[i : i + CHUNK])
        parts.append(part)
    n = len(parts)
    assert n == 3

    # $ cairn up
    first = await run_up(env, tmp_path, "up1", runs)
    banner = first.out.read_text()
    assert f"{first.url}/v1" in banner and "token alice" in banner

    # $ cairn token alice
    code, out, err = await cli(env, "token", "alice")
    assert code == 0, err
    token = out.strip()
    assert token.count(".") == 2
    curl = Curl(first.url, token, scratch)

    status, body = await curl(path="/v1/uploads", auth=False)
    assert status == 401, body  # no token, no listing

    # $ curl -X POST .../v1/uploads -H 'Authorization: Bearer …' --json '{…}'
    status, body = await curl.retrying(
        "-X",
        "POST",
        "--json",
        json.dumps(
            {
                "file_name": "walkthrough.bin",
                "file_size": len(data),
                "chunk_size": CHUNK,
                "content_type": "application/x-walkthrough",
                "sha256": digest,
            }
        ),
        path="/v1/uploads",
    )
    assert status == 201, body
    upload = _j(body)
    uid = upload["id"]
    assert upload["total_chunks"] == n and upload["status"] == "INITIATED"

    # Chunks out of order, with both of curl's ways to PUT a file; chunk 1 "lost".
    status, body = await curl.retrying("-T", str(parts[2]), path=f"/v1/uploads/{uid}/chunks/2")
    assert status == 201, body
    status, body = await curl.retrying(
        "-X",
        "PUT",
        "--data-binary",
        f"@{parts[0]}",
        "-H",
        "Content-Type: application/octet-stream",
        "-H",
        f"X-Chunk-SHA256: {hashlib.sha256(parts[0].read_bytes()).hexdigest()}",
        path=f"/v1/uploads/{uid}/chunks/0",
    )
    assert status == 201, body
    assert _j(body)["sha256"] == hashlib.sha256(parts[0].read_bytes()).hexdigest()
    status, body = await curl(path=f"/v1/uploads/{uid}")
    assert status == 200, body
    state = _j(body)
    assert state["status"] == "IN_PROGRESS" and state["missing_chunks"] == [1]
    assert state["bytes_received"] == parts[0].stat().st_size + parts[2].stat().st_size

    # Resume from what the server says is missing.
    status, body = await curl(path=f"/v1/uploads/{uid}/missing-chunks")
    assert status == 200 and _j(body)["missing_chunks"] == [1], body
    status, body = await curl.retrying("-T", str(parts[1]), path=f"/v1/uploads/{uid}/chunks/1")
    assert status == 201, body
    status, body = await curl.retrying("-X", "POST", path=f"/v1/uploads/{uid}/complete")
    assert status == 200, body
    done = _j(body)
    assert done["sha256"] == digest and done["size"] == len(data)
    file_id = done["file_id"]

    # $ curl -o copy.bin .../v1/files/ID/content
    copy = scratch / "copy.bin"
    status, _ = await curl(path=f"/v1/files/{file_id}/content", out=copy)
    assert status == 200
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
    assert copy.read_bytes() == data
    status, body = await curl(path=f"/v1/files/{file_id}")
    assert status == 200, body
    meta = _j(body)
    assert meta["name"] == "walkthrough.bin" and meta["size"] == len(data)
    assert meta["content_type"] == "application/x-walkthrough"

    # The events, as any Kafka consumer sees them.
    events = await read_topics(bootstrap, uid, file_id, n)
    check_events(events, uid, file_id, n)

    async def listed(c: Curl) -> dict[str, Any] | None:
        status, body = await c(path="/v1/uploads")
        assert status == 200, body
        rows = [u for u in _j(body)["items"] if u["id"] == uid and u["status"] == "COMPLETED"]
        return rows[0] if rows else None

    row = await poll("the upload in the listing", lambda: listed(curl), 60)
    assert row["file_id"] == file_id and row["bytes_received"] == len(data)

    # Ctrl-C, and everything is gone.
    assert await first.stop() == 0, first.log()
    await poll(
        "the first run's processes to be gone",
        lambda: not first.left(),
        30,
        lambda: describe(first.left()),
    )
    assert not [p for p in first.ports() if port_in_use("127.0.0.1", p)]

    # $ cairn up   (again, same data dir): the token still works, the secret was kept.
    second = await run_up(env, tmp_path, "up2", runs)
    curl = Curl(second.url, token, scratch)
    again = scratch / "again.bin"
    status, _ = await curl(path=f"/v1/files/{file_id}/content", out=again)
    assert status == 200
    assert again.read_bytes() == data
    row = await poll("the upload in the listing after the restart", lambda: listed(curl), 60)
    assert row["file_id"] == file_id and row["bytes_received"] == len(data)
    status, body = await curl(path=f"/v1/uploads/{uid}")
    assert status == 200 and _j(body)["status"] == "COMPLETED", body

    # The new embedded broker started empty; the relay republished the history into it.
    events = await read_topics(bootstrap, uid, file_id, n)
    check_events(events, uid, file_id, n)

    assert await second.stop() == 0, second.log()
    await poll(
        "the second run's processes to be gone",
        lambda: not second.left(),
        30,
        lambda: describe(second.left()),
    )
    assert not [p for p in second.ports() if port_in_use("127.0.0.1", p)]
