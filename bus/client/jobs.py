"""What the CLI does alike for every kind of server-side job (URL fetches, tasks): list a
page of them and send one of the controls (`pause`, `resume`, `cancel`, `retry`).

Following one job to its end (`--follow`, `--wait`) is alike too: its own event stream
from the first event until a finishing event type, then the job as it ended.

All are the same HTTP shape whatever the job (`GET <path>?limit&offset&filters`,
`POST <path>/<id>/<action>` answering the job's id and status), so each job's module
(bus/client/fetches.py, tasks.py) says only its path, its noun, its filters and how it
prints a row.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Container, Iterable
from typing import Any

from bus.client import counts, events
from bus.client.http import json_of, open_client, segment
from bus.client.output import Output


def add_ls(sub: Any, add: Any, run: Any, help: str, *filters: tuple[str, str]) -> Any:
    """The `ls` subcommand: `--limit`, `--offset` and one `--<filter>` per (name, help)."""
    p = add(sub, "ls", run, help)
    for name, what in filters:
        p.add_argument(f"--{name}", default=None, metavar=name.upper(), help=what)
    p.add_argument(
        "--limit", type=counts.positive, default=50, metavar="N", help="at most N (default 50)"
    )
    p.add_argument(
        "--offset", type=counts.not_negative, default=0, metavar="N", help="skip the first N"
    )
    return p


def page(target: Any, path: str, args: argparse.Namespace, *filters: str) -> dict[str, Any]:
    """One page of the caller's jobs at `path`, with the filters given on the command line."""
    params: dict[str, Any] = {"limit": args.limit, "offset": args.offset}
    for name in filters:
        if getattr(args, name):
            params[name] = getattr(args, name)
    with open_client(target) as client:
        result: dict[str, Any] = json_of(client.get(path, params=params), items=list)
    return result


def add_controls(
    sub: Any, add: Any, noun: str, path: str, actions: Iterable[str], help: str = ""
) -> None:
    """One subcommand per control in `actions`, each taking the job's id."""
    for action in actions:
        p = add(sub, action, _control(noun, path, action), f"{action} a {noun}{help}")
        p.add_argument("id", metavar=f"{noun.upper()}_ID", help=f"the {noun}'s id")


def _control(noun: str, path: str, action: str) -> Any:
    def run(args: argparse.Namespace, out: Output, target: Any) -> int:
        with open_client(target) as client:
            job = segment(args.id, f"{noun.upper()}_ID")
            result = json_of(client.post(f"{path}/{job}/{action}"))
        if out.as_json:
            out.emit(result)
        else:
            out.note(f"{noun} {result.get('id', args.id)} {result.get('status')}")
        return 0

    return run


def follow(
    client: Any,
    path: str,
    job_id: str,
    emit: Callable[[dict[str, Any]], None],
    finished: Container[str],
) -> dict[str, Any]:
    """Stream the job's events from its first one (nothing between the request and the
    subscription is missed) to `emit` until an event type in `finished`; return the job."""
    events.stream(
        client,
        params={},
        since=0,
        follow=True,
        limit=None,
        emit=emit,
        path=f"{path}/{job_id}/events",
        until=lambda e: e.get("type") in finished,
    )
    job: dict[str, Any] = json_of(client.get(f"{path}/{job_id}"), id=str, status=str)
    return job
