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


async def test_a_name_or_id_is_one_path_segment_whatever_it_holds(
    system: System, cli_for: Any
) -> None:
    # Sent unencoded, `show ../uploads` asked for /v1/uploads and `show ""` for the
    # listing: both printed a record of dashes and exited 0.
    cli = cli_for("segment-user")
    for name in ("../uploads", "..", "a?force=true", "x/objects"):
        shown = await cli("buckets", "show", name)
        assert shown.code in (1, 3), (name, shown.out, shown.err)  # 404, or 400 for the name
        assert "bad_response" not in shown.err and shown.out == "", (name, shown.out)
    empty = await cli("buckets", "show", "")
    assert empty.code == 2 and "NAME is empty" in empty.err, empty.err
    for command in (("tasks", "show"), ("fetches", "show"), ("tasks", "cancel")):
        odd = await cli(*command, "../uploads")
        assert odd.code in (1, 3) and "bad_response" not in odd.err, (command, odd.err)
