"""`cairn tasks create|ls|show|pause|resume|cancel`: background tasks (/v1/tasks).

`create --wait` (and `show --wait`) follows the task's own event stream from its first
event (`Last-Event-ID: 0` on /v1/tasks/{id}/events), so no event between the create and
the subscription is missed, with a progress bar, until it completes, fails or is
cancelled; the exit code says which.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from bus.client import jobs
from bus.client.errors import ClientError
from bus.client.http import json_of, open_client, segment
from bus.client.output import Output
from bus.terminal import printable

TYPES = ("copy", "move", "delete", "compress", "extract")
FINISHED = {"TaskCompleted": "COMPLETED", "TaskFailed": "FAILED", "TaskCancelled": "CANCELLED"}
COLUMNS = [
    ("id", "ID"),
    ("type", "TYPE"),
    ("status", "STATUS"),
    ("percent", "PROGRESS"),
    ("items", "ITEMS"),
    ("created_at", "CREATED"),
]


def register(sub: Any, add: Any) -> None:
    tasks = sub.add_parser("tasks", help="background tasks: copy, move, delete, compress, extract")
    tsub = tasks.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")
    p = add(tsub, "create", cmd_create, "start a task (see the README's Tasks for the params)")
    p.add_argument("type", choices=TYPES, metavar="TYPE", help=", ".join(TYPES))
    p.add_argument("files", nargs="*", metavar="FILE_ID", help="the files (or --bucket/--prefix)")
    p.add_argument("--bucket", default=None, help="the files of this bucket (with --prefix)")
    p.add_argument("--prefix", default=None, help="... whose names start with this")
    p.add_argument(
        "--to-bucket",
        default=None,
        metavar="B",
        help="copy/move: target bucket; compress: the archive's; extract: the members'",
    )
    p.add_argument(
        "--to-prefix",
        default=None,
        metavar="P",
        help="copy/move, extract: key prefix of objects into a bucket, else name prefix",
    )
    p.add_argument(
        "--output",
        default=None,
        metavar="NAME",
        help="compress: the archive's file name (a .tar.gz or .tgz name makes a tar.gz)",
    )
    p.add_argument(
        "--format",
        default=None,
        choices=("zip", "tar.gz"),
        help="compress: zip (the default) or tar.gz",
    )
    p.add_argument(
        "--params", default=None, metavar="JSON", help="more params, merged (e.g. output)"
    )
    p.add_argument(
        "--priority",
        type=int,
        default=None,
        metavar="0-100",
        help="higher runs first (default: the server's)",
    )
    p.add_argument("--wait", action="store_true", help="follow it until it finishes")
    jobs.add_ls(
        tsub,
        add,
        cmd_ls,
        "list your tasks, newest first",
        (
            "status",
            "only tasks in this status: PENDING, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED",
        ),
        ("type", "only tasks of this type: " + ", ".join(TYPES)),
    )
    p = add(tsub, "show", cmd_show, "a task: status, progress, results")
    p.add_argument("id", metavar="TASK_ID", help="from `tasks create` or `tasks ls`")
    p.add_argument("--wait", action="store_true", help="follow it until it finishes")
    jobs.add_controls(
        tsub, add, "task", "/v1/tasks", ("pause", "resume", "cancel"), " (409 once it has finished)"
    )


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    to = {k: v for k, v in (("bucket", args.to_bucket), ("prefix", args.to_prefix)) if v}
    if (args.output is not None or args.format) and args.type != "compress":
        raise ClientError("--output and --format are for compress", code="usage", exit_code=2)
    if args.type == "compress":
        _compress_params(args, params)
    elif args.type == "extract":
        # One archive (the task's `file`); --to-bucket / --to-prefix say where its members
        # go (its `output`).
        if len(args.files) != 1 or args.bucket or args.prefix is not None:
            raise ClientError(
                "extract takes exactly one FILE_ID, the archive", code="usage", exit_code=2
            )
        params["file"] = args.files[0]
        if to:
            params["output"] = to
    else:
        if args.type == "delete" and to:
            raise ClientError(
                "delete takes no --to-bucket or --to-prefix", code="usage", exit_code=2
            )
        _sources(args, params)
        if to:
            params["to"] = to
    if args.params:
        try:
            extra = json.loads(args.params)
        except ValueError as e:
            raise ClientError(f"--params is not JSON: {e}", code="usage", exit_code=2) from None
        if not isinstance(extra, dict):
            raise ClientError("--params must be a JSON object", code="usage", exit_code=2)
        params.update(extra)
    if args.type == "compress" and "output" not in params:
        raise ClientError(
            "compress needs --output NAME, the archive's file name", code="usage", exit_code=2
        )
    return params


def _sources(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """The files a copy, move, delete or compress reads: FILE_IDs, or --bucket/--prefix."""
    if args.files:
        params["files"] = args.files
    if args.bucket:
        params["bucket"] = args.bucket
    if args.prefix is not None:
        params["prefix"] = args.prefix


def _compress_params(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """A compress's sources as for copy, and its one archive: `output` {file_name, bucket},
    its format from --format or else the name's ending (`.tar.gz`, `.tgz`)."""
    if args.to_prefix is not None:
        raise ClientError(
            "compress makes one file: --output names it, --to-prefix does not apply",
            code="usage",
            exit_code=2,
        )
    _sources(args, params)
    if args.output is not None:
        params["output"] = {"file_name": args.output}
        if args.to_bucket:
            params["output"]["bucket"] = args.to_bucket
    elif args.to_bucket:
        raise ClientError(
            "--to-bucket with compress needs --output NAME", code="usage", exit_code=2
        )
    fmt = args.format
    if fmt is None and args.output is not None:
        fmt = "tar.gz" if args.output.lower().endswith((".tar.gz", ".tgz")) else None
    if fmt is not None:
        params["format"] = fmt


def cmd_create(args: argparse.Namespace, out: Output, target: Any) -> int:
    body: dict[str, Any] = {"type": args.type, "params": _params(args)}
    if args.priority is not None:
        body["priority"] = args.priority
    with open_client(target) as client:
        accepted = json_of(
            client.post("/v1/tasks", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}),
            id=str,
            status=str,
        )
        if not args.wait:
            if args.json:
                out.emit(accepted)
            else:
                out.note(f"task {accepted['id']} {accepted['status']}")
            return 0
        return _wait(client, accepted["id"], out)


def _wait(client: Any, task_id: str, out: Output) -> int:
    """Follow the task's events from its first one until it finishes; print the task."""
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        console=out.err,
        disable=not out.err.is_terminal,
    ) as progress:
        bar = progress.add_task(_bar_text(task_id, {}), total=100)

        total = 0

        def on_event(event: dict[str, Any]) -> None:
            # TaskCreated carries items_total; each TaskProgressed says items [first,
            # first + len(results)) are done.
            nonlocal total
            data = event.get("data") or {}
            if isinstance(data.get("items_total"), int):
                total = data["items_total"]
            if event.get("type") == "TaskProgressed" and total:
                done = int(data.get("first", 0)) + len(data.get("results") or [])
                progress.update(bar, completed=100 * done / total)
            progress.update(bar, description=_bar_text(task_id, event))

        task = jobs.follow(client, "/v1/tasks", task_id, on_event, FINISHED)
    return _outcome(task, out)


def _bar_text(task_id: str, event: dict[str, Any]) -> str:
    """The bar's words: the task, its last event's type and, once items are done, the
    last of them (its source, as the server names it: a key or a file name). All of it is
    the server's, and a name is anyone's choice: shown, never obeyed (bus/terminal.py)."""
    text = f"task {task_id} {event.get('type', '')}".rstrip()
    results = (event.get("data") or {}).get("results") or []
    last = results[-1] if isinstance(results, list) and results else None
    if isinstance(last, dict) and last.get("source") is not None:
        text += f" {last['source']}"
    return printable(text)


def _outcome(task: dict[str, Any], out: Output) -> int:
    """Print a finished task; exit 0 if it completed, else its error (exit 1)."""
    _print_task(task, out)
    if task["status"] == "COMPLETED":
        return 0
    error = task.get("error") or {}
    raise ClientError(
        f"task {task['id']} {task['status']}: {error.get('message', '')}".rstrip(": "),
        code=error.get("code", f"task_{task['status'].lower()}"),
        details={"task": task},
    )


def _print_task(task: dict[str, Any], out: Output) -> None:
    if out.as_json:
        out.emit(task)
        return
    progress = task.get("progress") or {}
    view = {
        **task,
        "progress": f"{progress.get('percent', 0):.0f} % ({progress.get('items_done')}/"
        f"{progress.get('items_total')} items, {progress.get('items_failed')} failed)",
        "result_file_ids": ", ".join(task.get("result_file_ids") or []) or None,
        "results": _results_line(task.get("results") or []),
        "error": (task.get("error") or {}).get("message"),
    }
    out.record(
        view,
        [
            ("id", "id"),
            ("type", "type"),
            ("status", "status"),
            ("progress", "progress"),
            ("result_file_ids", "result files"),
            ("results", "results"),
            ("error", "error"),
            ("created_at", "created"),
            ("finished_at", "finished"),
        ],
    )


SHOWN_RESULTS = 5


def _results_line(results: list[dict[str, Any]]) -> str | None:
    """The first items' outcomes on one line: what each became (its key, else the new
    file's id; a delete's: deleted) or its error code. A copy or extract names what it made
    only here: its `result_file_ids` (a compress's archive) are empty."""

    def one(item: dict[str, Any]) -> str:
        source = str(item.get("source", item.get("index", "?")))
        if item.get("error"):
            return f"{source}: {(item['error'] or {}).get('code', 'failed')}"
        made = item.get("key") or item.get("result")
        return f"{source} -> {made}" if made else f"{source}: done"

    if not results:
        return None
    line = ", ".join(one(r) for r in results[:SHOWN_RESULTS])
    more = len(results) - SHOWN_RESULTS
    return f"{line}, ... {more} more (--json lists all)" if more > 0 else line


def cmd_ls(args: argparse.Namespace, out: Output, target: Any) -> int:
    page = jobs.page(target, "/v1/tasks", args, "status", "type")
    rows = [
        {
            **t,
            "percent": f"{t['progress']['percent']:.0f} %",
            "items": f"{t['progress']['items_done']}/{t['progress']['items_total']}",
        }
        for t in page["items"]
    ]
    out.table(rows, COLUMNS, raw=page)
    return 0


def cmd_show(args: argparse.Namespace, out: Output, target: Any) -> int:
    with open_client(target) as client:
        task = json_of(
            client.get(f"/v1/tasks/{segment(args.id, 'TASK_ID')}"),
            id=str,
            status=str,
            progress=dict,
        )
        if args.wait and task["status"] not in FINISHED.values():
            return _wait(client, task["id"], out)
    if args.wait:  # finished before we looked: the same exit code as if we had waited
        return _outcome(task, out)
    _print_task(task, out)
    return 0
