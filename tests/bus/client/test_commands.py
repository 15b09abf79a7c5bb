"""`cairn login`, `ls`, `rm`, `stats` and `events` as subprocesses against a running Cairn."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from tests.system import System, wait_until


async def test_login_saves_url_and_token_for_later_commands(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("login-user")
    token = cli.env["CAIRN_TOKEN"]
    refused = await cli("login", "--token", "forged", CAIRN_TOKEN="")
    assert refused.code == 4, refused.err
    config = Path(cli.env["XDG_CONFIG_HOME"]) / "cairn" / "config.json"
    assert not config.exists()
    done = await cli("login", "--token", token, CAIRN_TOKEN="")
    assert done.code == 0, done.err
    assert json.loads(config.read_text()) == {"url": system.url, "token": token}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # Neither CAIRN_URL nor CAIRN_TOKEN now: both come from the config file.
    listed = await cli("ls", "--json", CAIRN_TOKEN="", CAIRN_URL="")
    assert listed.code == 0, listed.err
    assert json.loads(listed.out)["items"] == []
    no_token = await cli("ls", CAIRN_TOKEN="", XDG_CONFIG_HOME=str(tmp_path / "empty"))
    assert no_token.code == 4 and "no_token" in no_token.err


async def test_a_url_that_names_no_server_is_a_usage_error(cli_for: Any) -> None:
    # Before, these were tried, and failed as 'unreachable' (exit 7), a server problem.
    cli = cli_for("url-user")
    for url in ("localhost:8000", "notaurl", "ftp://example.com", "http://:80", "http://h:x"):
        done = await cli("ls", CAIRN_URL=url)
        assert done.code == 2 and "invalid_url" in done.err and repr(url) in done.err, url
        login = await cli("login", "--token", "t", "--no-check", CAIRN_URL=url)
        assert login.code == 2, url
    assert not (Path(cli.env["XDG_CONFIG_HOME"]) / "cairn" / "config.json").exists()


async def test_ls_rm_and_stats(system: System, cli_for: Any, tmp_path: Path) -> None:
    cli = cli_for("ls-user")
    async with system.client("ls-user") as c:  # files go only into the caller's buckets
        assert (await c.post("/v1/buckets", json={"name": "photos"})).status_code == 201
    for name in ("one.txt", "two.txt"):
        (tmp_path / name).write_bytes(os.urandom(1000))
    done = await cli(
        "upload",
        str(tmp_path / "one.txt"),
        str(tmp_path / "two.txt"),
        "--bucket",
        "photos",
        "--json",
    )
    assert done.code == 0, done.err
    ids = {Path(f["path"]).name: f["file_id"] for f in json.loads(done.out)["files"]}

    async def listed() -> Any:
        page = json.loads((await cli("ls", "photos", "--files", "--json")).out)
        return page if page["total"] == 2 else None

    page = await wait_until(listed)
    assert {f["id"] for f in page["items"]} == set(ids.values())
    only = json.loads((await cli("ls", "photos/tw", "--files", "--json")).out)
    assert [f["id"] for f in only["items"]] == [ids["two.txt"]]
    table = await cli("ls", "photos", "--files")
    assert table.code == 0, table.err
    # Piped, each row is one line that holds its whole id (Rich would fold at 80 columns).
    rows = {line.split()[1]: line.split()[0] for line in table.out.splitlines()[1:]}
    assert rows == {name: file_id for name, file_id in ids.items()}
    assert json.loads((await cli("ls", "elsewhere", "--files", "--json")).out)["items"] == []

    async def counted() -> Any:  # stats come from the uploads read model: a bounded lag
        stats = await cli("stats", "--json")
        assert stats.code == 0, stats.err
        return json.loads(stats.out)["by_status"].get("COMPLETED") == 2

    await wait_until(counted)
    human = await cli("stats")
    assert "COMPLETED 2" in human.out

    removed = await cli("rm", ids["one.txt"], "--json")
    assert removed.code == 0, removed.err
    async with system.client("ls-user") as c:
        assert (await c.get(f"/v1/files/{ids['one.txt']}")).status_code == 404
    again = await cli("rm", ids["one.txt"])  # deleting is idempotent on the server
    assert again.code == 0, again.err
    never = await cli("rm", "00000000-0000-4000-8000-000000000000")
    assert never.code == 3 and "file_not_found" in never.err
    theirs = await cli_for("ls-other")("rm", ids["two.txt"])
    assert theirs.code == 3  # another user's id is a 404, like a missing one


async def test_events_replay_filtered_and_resume_position(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("events-user")
    for i in range(2):
        (tmp_path / f"e{i}.bin").write_bytes(os.urandom(100 + i))
        assert (await cli("upload", str(tmp_path / f"e{i}.bin"))).code == 0
    done = await cli(
        "events", "--since", "0", "--type", "UploadCompleted", "--limit", "2", "--json"
    )
    assert done.code == 0, done.err
    events = [json.loads(line) for line in done.out.splitlines()]
    assert [e["type"] for e in events] == ["UploadCompleted", "UploadCompleted"]
    assert all(e["owner"] == "events-user" for e in events)
    # Resuming after the first one's position gives the second one next.
    after = await cli(
        "events",
        "--since",
        str(events[0]["position"]),
        "--type",
        "UploadCompleted",
        "--limit",
        "1",
        "--json",
    )
    assert json.loads(after.out)["id"] == events[1]["id"]
    human = await cli("events", "--since", "0", "--aggregate", "files", "--limit", "1")
    assert human.code == 0 and "FileCreated" in human.out
    # The time to the second, in UTC, as in every table: the second column.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", human.out.split()[1])
    bad = await cli("events", "--type", "NoSuchEvent", "--limit", "1")
    assert bad.code == 1 and "invalid_query" in bad.err and "UploadCompleted" in bad.err
    beyond = await cli("events", "--since", "999999999", "--limit", "1")
    assert beyond.code == 1 and "last_event_id_beyond_head" in beyond.err


async def test_events_follow_resumes_across_an_api_restart(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("events-follow")
    proc = await cli.start(
        "events", "--follow", "--since", "0", "--type", "UploadCompleted", "--json"
    )
    assert proc.stdout is not None
    (tmp_path / "one.bin").write_bytes(os.urandom(500))
    assert (await cli("upload", str(tmp_path / "one.bin"))).code == 0
    first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    assert first["type"] == "UploadCompleted"

    # The API goes away (its streams end with `shutting_down`) and comes back: the client
    # reconnects with the last position it printed, so the next event is the new one.
    await system.stop("api")
    system.start("api")
    await system.wait_api()
    (tmp_path / "two.bin").write_bytes(os.urandom(501))
    assert (await cli("upload", str(tmp_path / "two.bin"))).code == 0
    second = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    assert second["type"] == "UploadCompleted"
    assert second["position"] > first["position"]
    stopped = await cli.interrupt(proc)
    assert stopped.code == 130
    assert stopped.out == ""  # nothing more: the first event was not printed twice
    assert "Traceback" not in stopped.err
