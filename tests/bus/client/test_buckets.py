"""`cairn buckets ls|create|show|rm` as subprocesses against a running Cairn."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from tests.system import System, wait_until


async def test_bucket_lifecycle(system: System, cli_for: Any, tmp_path: Path) -> None:
    cli = cli_for("bucket-user")
    name = f"media-{secrets.token_hex(4)}"
    created = await cli("buckets", "create", name, "--public", "--description", "pics", "--json")
    assert created.code == 0, created.err
    assert json.loads(created.out)["public"] is True
    assert (await cli("buckets", "create", f"{name}-b")).code == 0

    async def both_listed() -> Any:  # the list is the read model: a bounded lag
        items = json.loads((await cli("buckets", "ls", "--json")).out)["items"]
        return items if len(items) == 2 else None

    listed = await wait_until(both_listed)
    assert [b["name"] for b in listed] == [name, f"{name}-b"]
    paged = json.loads((await cli("buckets", "ls", "--limit", "1", "--json")).out)["items"]
    assert [b["name"] for b in paged] == [name]
    table = await cli("buckets", "ls")
    assert name in table.out and "pics" in table.out

    taken = await cli_for("bucket-other")("buckets", "create", name)
    assert taken.code == 5 and "bucket_exists" in taken.err
    theirs = await cli_for("bucket-other")("buckets", "show", name)
    assert theirs.code == 3  # another user's bucket is 404, like a missing one

    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    up = await cli("upload", str(tmp_path / "f.bin"), "--bucket", name, "--json")
    assert up.code == 0, up.err

    async def counted() -> Any:
        shown = json.loads((await cli("buckets", "show", name, "--json")).out)
        return shown if shown["usage"]["objects"] == 1 else None

    shown = await wait_until(counted)
    assert shown["usage"]["bytes"] == 1000
    refused = await cli("buckets", "rm", name)
    assert refused.code == 5 and "bucket_not_empty" in refused.err
    assert "--force" in refused.err and "force=true" not in refused.err
    forced = await cli("buckets", "rm", name, "--force", "--json")
    assert forced.code == 0, forced.err
    assert json.loads(forced.out)["objects_deleted"] == 1
    gone = await cli("buckets", "show", name)
    assert gone.code == 3
    assert (await cli("buckets", "rm", f"{name}-b")).code == 0
