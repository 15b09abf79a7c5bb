"""`cairn buckets ls|create|show|rm`: the caller's buckets (/v1/buckets)."""

from __future__ import annotations

import argparse
from typing import Any

from bus.client import counts
from bus.client.errors import ClientError
from bus.client.http import json_of, next_cursor, open_client, segment
from bus.client.output import Output, human_bytes

COLUMNS = [
    ("name", "NAME"),
    ("public", "PUBLIC"),
    ("description", "DESCRIPTION"),
    ("created_at", "CREATED"),
]


def register(sub: Any, add: Any) -> None:
    """`add(subparsers, name, func, help)` is commands.add: common flags and error handling."""
    buckets = sub.add_parser("buckets", help="list, create, show and delete buckets")
    bsub = buckets.add_subparsers(dest="buckets_command", required=True, metavar="ACTION")
    p = add(bsub, "ls", cmd_ls, "list your buckets (an admin: everyone's), by name")
    p.add_argument(
        "--limit", type=counts.positive, default=None, metavar="N", help="at most N (default: all)"
    )
    p = add(bsub, "create", cmd_create, "create a bucket (S3 bucket-name rules)")
    p.add_argument("name", metavar="NAME", help="3-63 lowercase letters, digits, dots and hyphens")
    p.add_argument("--public", action="store_true", help="readable without a token")
    p.add_argument("--description", default="", metavar="TEXT", help="free text, shown by ls")
    p = add(bsub, "show", cmd_show, "a bucket with its usage")
    p.add_argument("name", metavar="NAME", help="the bucket")
    p = add(bsub, "rm", cmd_rm, "delete a bucket (--force: with all its objects)")
    p.add_argument("name", metavar="NAME", help="the bucket (empty, unless --force)")
    p.add_argument("--force", action="store_true", help="delete the objects in it too")


def cmd_ls(args: argparse.Namespace, out: Output, target: Any) -> int:
    items: list[dict[str, Any]] = []
    cursor = None
    with open_client(target) as client:
        # Pages by cursor (names after the last one) until the last page or --limit.
        while args.limit is None or len(items) < args.limit:
            page_size = 1000 if args.limit is None else min(1000, args.limit - len(items))
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            r = client.get("/v1/buckets", params=params)
            page = json_of(r, items=list)
            items.extend(page["items"])
            cursor = next_cursor(page, str(r.request.url), cursor)
            if not cursor:
                break
    out.table(items, COLUMNS, raw={"items": items})
    return 0


def cmd_create(args: argparse.Namespace, out: Output, target: Any) -> int:
    body = {"name": args.name, "public": args.public, "description": args.description}
    with open_client(target) as client:
        bucket = json_of(client.post("/v1/buckets", json=body))
    if args.json:
        out.emit(bucket)
    else:
        out.note(f"created bucket {bucket['name']}" + (" (public)" if bucket["public"] else ""))
    return 0


def cmd_show(args: argparse.Namespace, out: Output, target: Any) -> int:
    with open_client(target) as client:
        bucket = json_of(client.get(f"/v1/buckets/{segment(args.name, 'NAME')}"), name=str)
    if args.json:
        out.emit(bucket)
        return 0
    usage = bucket.get("usage") or {}
    view = {
        **bucket,
        "objects": usage.get("objects"),
        "bytes": human_bytes(usage.get("bytes")),
    }
    out.record(
        view,
        [
            ("name", "name"),
            ("owner", "owner"),
            ("public", "public"),
            ("description", "description"),
            ("objects", "objects"),
            ("bytes", "bytes"),
            ("created_at", "created"),
        ],
    )
    return 0


def cmd_rm(args: argparse.Namespace, out: Output, target: Any) -> int:
    params = {"force": "true"} if args.force else {}
    with open_client(target) as client:
        try:
            result = json_of(
                client.delete(f"/v1/buckets/{segment(args.name, 'NAME')}", params=params)
            )
        except ClientError as e:
            if e.code == "bucket_not_empty":
                # The server's message names its query parameter (force=true); here the
                # way to say it is the flag.
                e.message = f"bucket {args.name} holds objects: delete them first, or use --force"
            raise
    if args.json:
        out.emit(result)
    else:
        out.note(f"deleted bucket {result['name']} ({result['objects_deleted']} object(s))")
    return 0
