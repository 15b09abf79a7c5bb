"""`cairn fetch URL [--follow]` and `cairn fetches ls|show|pause|resume|cancel|retry`: the
server downloads a URL into a file (/v1/fetches).

`--follow` reads the fetch's own event stream from its first event (`Last-Event-ID: 0` on
/v1/fetches/{id}/events), so nothing between the request and the subscription is missed,
and shows a byte progress bar (speed, ETA) until it completes, fails or is cancelled.
"""

from __future__ import annotations

import argparse
from typing import Any

from bus.client import jobs
from bus.client.errors import ClientError
from bus.client.http import json_of, open_client, segment
from bus.client.output import Output, human_bytes
from bus.client.transfer import progress_bars
from bus.terminal import printable

FINISHED = {"FetchCompleted": "COMPLETED", "FetchFailed": "FAILED", "FetchCancelled": "CANCELLED"}
COLUMNS = [
    ("id", "ID"),
    ("url", "URL"),
    ("status", "STATUS"),
    ("progress", "PROGRESS"),
    ("size", "BYTES"),
    ("file_id", "FILE"),
]


def register(sub: Any, add: Any) -> None:
    p = add(sub, "fetch", cmd_fetch, "have the server fetch a URL into a file")
    # dest `source`: `url` is the server (--url), common to every client command.
    p.add_argument("source", metavar="URL", help="http(s) URL to fetch")
    p.add_argument("--bucket", default=None, help="bucket of the file (default: the server's)")
    p.add_argument("--key", default=None, help="object key of the file")
    p.add_argument("--sha256", default=None, help="expected sha256 (verified by the server)")
    p.add_argument("--refresh", action="store_true", help="fetch again even if fetched lately")
    p.add_argument("--follow", "-f", action="store_true", help="show progress until it ends")
    fetches = sub.add_parser("fetches", help="URL fetches: ls, show, pause, resume, cancel, retry")
    fsub = fetches.add_subparsers(dest="fetches_command", required=True, metavar="ACTION")
    jobs.add_ls(
        fsub,
        add,
        cmd_ls,
        "list your fetches, newest first",
        (
            "status",
            "only fetches in this status: PENDING, IN_PROGRESS, PAUSED, COMPLETED, FAILED, CANCELLED",
        ),
    )
    p = add(fsub, "show", cmd_show, "a fetch: status, bytes, speed, ETA, file")
    p.add_argument("id", metavar="FETCH_ID", help="from `cairn fetch` or `fetches ls`")
    p.add_argument("--follow", "-f", action="store_true", help="show progress until it ends")
    jobs.add_controls(fsub, add, "fetch", "/v1/fetches", ("pause", "resume", "cancel", "retry"))


def cmd_fetch(args: argparse.Namespace, out: Output, target: Any) -> int:
    body: dict[str, Any] = {"url": args.source}
    for name in ("bucket", "key", "sha256"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    if args.refresh:
        body["refresh"] = True
    with open_client(target) as client:
        accepted = json_of(client.post("/v1/fetches", json=body), id=str, status=str)
        if args.follow:
            return _follow(client, accepted["id"], out)
    if args.json:
        out.emit(accepted)
    else:
        reused = " (an earlier fetch of this URL)" if accepted.get("reused") else ""
        out.note(f"fetch {accepted['id']} {accepted['status']}{reused}")
    return 0


def _follow(client: Any, fetch_id: str, out: Output) -> int:
    with progress_bars(out.err) as progress:
        bar = progress.add_task(f"fetch {fetch_id}", total=None)

        # A segmented fetch: bytes held per segment (they grow side by side).
        held: dict[int, int] = {}

        def on_event(event: dict[str, Any]) -> None:
            data = event.get("data") or {}
            kind = event.get("type")
            if kind == "FetchResponseReceived" and data.get("total") is not None:
                progress.update(bar, total=int(data["total"]))
                if data.get("restart"):
                    held.clear()
            elif kind == "FetchBytesAppended":
                progress.update(bar, completed=int(data["offset"]) + int(data["size"]))
            elif kind == "FetchSegmented":
                held.clear()
                progress.update(bar, completed=0)
            elif kind == "FetchSegmentBytesAppended":
                seg = int(data["segment"])
                held[seg] = held.get(seg, 0) + int(data["size"])
                progress.update(bar, completed=sum(held.values()))
            elif kind == "FetchRequested":
                progress.update(bar, description=printable(str(data.get("url", fetch_id))[-60:]))

        fetch = jobs.follow(client, "/v1/fetches", fetch_id, on_event, FINISHED)
    return _outcome(fetch, out)


def _outcome(fetch: dict[str, Any], out: Output) -> int:
    """Print a finished fetch; exit 0 if it completed, else its error (exit 1)."""
    _print(fetch, out)
    if fetch["status"] == "COMPLETED":
        return 0
    raise ClientError(
        f"fetch {fetch['id']} {fetch['status']}: {fetch.get('last_error') or ''}".rstrip(": "),
        code=f"fetch_{str(fetch['status']).lower()}",
        details={"fetch": fetch},
    )


def _print(fetch: dict[str, Any], out: Output) -> None:
    if out.as_json:
        out.emit(fetch)
        return
    view = {
        **fetch,
        "bytes": f"{human_bytes(fetch.get('bytes'))} of {human_bytes(fetch.get('total'))}",
        "speed": None
        if fetch.get("speed_bytes_per_second") is None
        else f"{human_bytes(fetch['speed_bytes_per_second'])}/s",
    }
    out.record(
        view,
        [
            ("id", "id"),
            ("url", "url"),
            ("status", "status"),
            ("bytes", "bytes"),
            ("speed", "speed"),
            ("eta_seconds", "eta (s)"),
            ("file_id", "file"),
            ("sha256", "sha256"),
            ("last_error", "last error"),
        ],
    )


def cmd_ls(args: argparse.Namespace, out: Output, target: Any) -> int:
    page = jobs.page(target, "/v1/fetches", args, "status")
    rows = [
        {
            **f,
            "progress": None if f.get("progress") is None else f"{f['progress']:.0f} %",
            "size": human_bytes(f.get("bytes")),
        }
        for f in page["items"]
    ]
    out.table(rows, COLUMNS, raw=page)
    return 0


def cmd_show(args: argparse.Namespace, out: Output, target: Any) -> int:
    with open_client(target) as client:
        fetch = json_of(
            client.get(f"/v1/fetches/{segment(args.id, 'FETCH_ID')}"), id=str, status=str
        )
        if args.follow and fetch["status"] not in FINISHED.values():
            return _follow(client, fetch["id"], out)
    if args.follow:  # finished before we looked: the same exit code as if we had followed
        return _outcome(fetch, out)
    _print(fetch, out)
    return 0
