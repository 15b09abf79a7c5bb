"""`cairn tasks` as subprocesses against a running Cairn (with its task workers)."""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
from pathlib import Path
from typing import Any

from tests.system import System


async def test_copy_task_waited_for_listed_and_refused_once_finished(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("tasks-user")
    target = f"copies-{secrets.token_hex(4)}"
    assert (await cli("buckets", "create", target)).code == 0
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_bytes(os.urandom(2000))
    up = await cli("upload", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--json")
    assert up.code == 0, up.err
    ids = sorted(f["file_id"] for f in json.loads(up.out)["files"])

    done = await cli(
        "tasks",
        "create",
        "copy",
        *ids,
        "--to-bucket",
        target,
        "--to-prefix",
        "c-",
        "--wait",
        "--json",
    )
    assert done.code == 0, done.err
    task = json.loads(done.out)
    assert task["status"] == "COMPLETED"
    assert sorted(r["source"] for r in task["results"]) == ids
    async with system.client("tasks-user") as c:
        for fid in (r["result"] for r in task["results"]):
            meta = (await c.get(f"/v1/files/{fid}")).json()
            assert meta["bucket"] == target and meta["name"].startswith("c-")

    shown = await cli("tasks", "show", task["id"], "--json")
    assert json.loads(shown.out)["id"] == task["id"]
    human = await cli("tasks", "show", task["id"])
    assert "COMPLETED" in human.out
    # What each item became, on the record's `results` line (a copy's result_file_ids,
    # a compress's field, are empty).
    (line,) = [x for x in human.out.splitlines() if x.startswith("results")]
    for r in task["results"]:
        assert f"{r['source']} -> {r.get('key') or r['result']}" in line, line
    finished = await cli("tasks", "cancel", task["id"])
    assert finished.code == 5 and "task_finished" in finished.err
    paused = await cli("tasks", "pause", task["id"])
    assert paused.code == 5 and "task_finished" in paused.err
    theirs = await cli_for("tasks-other")("tasks", "show", task["id"])
    assert theirs.code == 3


async def test_compress_names_its_archive_and_takes_the_format_from_the_name(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    cli = cli_for("tasks-compress")
    source, target = f"src-{secrets.token_hex(4)}", f"arc-{secrets.token_hex(4)}"
    for bucket in (source, target):
        assert (await cli("buckets", "create", bucket)).code == 0
    (tmp_path / "d" / "sub").mkdir(parents=True)
    members = {"one.txt": os.urandom(3000), "sub/two.bin": os.urandom(5000)}
    for key, data in members.items():
        (tmp_path / "d" / key).write_bytes(data)
    up = await cli("upload", str(tmp_path / "d"), "--bucket", source)
    assert up.code == 0, up.err

    done = await cli(
        "tasks", "create", "compress", "--bucket", source, "--output", "all.tgz",
        "--to-bucket", target, "--wait", "--json",
    )  # fmt: skip
    assert done.code == 0, done.err
    (archive_id,) = json.loads(done.out)["result_file_ids"]
    async with system.client("tasks-compress") as c:
        meta = (await c.get(f"/v1/files/{archive_id}")).json()
        assert (meta["name"], meta["bucket"]) == ("all.tgz", target)
        body = (await c.get(f"/v1/files/{archive_id}/content")).content
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert got == members

    # What the server would refuse, the command line says first (exit 2, nothing started).
    for args, says in (
        (("compress", "--bucket", source), "--output"),
        (("compress", "--bucket", source, "--output", "a.zip", "--to-prefix", "p/"), "--to-prefix"),
        (("compress", "--bucket", source, "--to-bucket", target), "--output"),
        (("copy", "--bucket", source, "--output", "a.zip"), "compress"),
        (("delete", "--bucket", source, "--to-bucket", target), "--to-bucket"),
    ):
        refused = await cli("tasks", "create", *args)
        assert refused.code == 2 and says in refused.err, (args, refused.err)
    listed = await cli("tasks", "ls", "--json")
    assert len(json.loads(listed.out)["items"]) == 1


async def test_task_errors(system: System, cli_for: Any, tmp_path: Path) -> None:
    cli = cli_for("tasks-errors")
    missing = await cli("tasks", "create", "delete", "00000000-0000-4000-8000-000000000000")
    assert missing.code == 3 and "file_not_found" in missing.err
    empty = await cli("tasks", "create", "delete")
    assert empty.code == 1 and "cairn: error:" in empty.err
    bad = await cli("tasks", "create", "copy", "--params", "[1]")
    assert bad.code == 2
    listed = await cli("tasks", "ls", "--json")
    assert listed.code == 0 and json.loads(listed.out)["items"] == []


async def test_show_wait_on_a_failed_task_exits_as_waiting_would(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    # `show --wait` on a task that had already failed says so, with the task's error code
    # and exit 1, exactly as `create --wait` did: a script can tell the two runs apart
    # only by timing.
    cli = cli_for("tasks-failed")
    (tmp_path / "not.zip").write_bytes(b"plain text, no archive\n" * 50)
    up = await cli("upload", str(tmp_path / "not.zip"), "--json")
    assert up.code == 0, up.err
    file_id = json.loads(up.out)["files"][0]["file_id"]
    waited = await cli("tasks", "create", "extract", file_id, "--wait", "--json")
    assert waited.code == 1 and "not_an_archive" in waited.err
    # With --json: the task, then the error, each a JSON document of its own.
    task, end = json.JSONDecoder().raw_decode(waited.out)
    assert task["status"] == "FAILED"
    assert json.loads(waited.out[end:])["error"]["code"] == "not_an_archive"
    again = await cli("tasks", "show", task["id"], "--wait")
    assert again.code == 1 and "not_an_archive" in again.err and "FAILED" in again.out
    plain = await cli("tasks", "show", task["id"])
    assert plain.code == 0 and "FAILED" in plain.out


def test_the_progress_bar_shows_item_names_escaped(monkeypatch: Any) -> None:
    """`--wait`'s bar names the task, its last event and the last item done, all the
    server's (a name is anyone's): ESC[2J, CR, the one-byte CSI and a right-to-left
    override in them are shown as escapes, on the bar and in the finished task."""
    import httpx
    from rich.console import Console

    from bus.client import jobs, tasks
    from bus.client.output import Output

    nasty = "x\x1b[2J\r\x9b2J\u202egpj.exe"
    shown = "x\\x1b[2J\\x0d\\x9b2J\\u202egpj.exe"
    results = [{"index": 0, "source": nasty, "key": nasty}]

    def follow(client: Any, path: str, job_id: str, emit: Any, finished: Any) -> dict[str, Any]:
        emit({"type": "TaskCreated", "data": {"items_total": 2}})
        emit({"type": "TaskProgressed", "data": {"first": 0, "results": results}})
        return {"id": job_id, "type": "copy", "status": "COMPLETED", "results": results}

    monkeypatch.setattr(jobs, "follow", follow)
    out = Output(as_json=False)
    err, printed = io.StringIO(), io.StringIO()
    out.err = Console(file=err, width=200, force_terminal=True, color_system=None)
    out.out = Console(file=printed, width=200, force_terminal=True, color_system=None)
    assert tasks._wait(httpx.Client(), "t-1", out) == 0
    bar, task = err.getvalue(), printed.getvalue()
    assert f"task t-1 TaskProgressed {shown}" in bar, repr(bar)
    assert f"{shown} -> {shown}" in task, repr(task)
    for raw in ("\x1b[2J", "\r\x9b", "\x9b2J", "\u202e"):
        assert raw not in bar and raw not in task, repr(raw)
