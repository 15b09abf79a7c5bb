"""Objects from the client: `cairn ls BUCKET[/PREFIX]` (folders and objects, like
`aws s3 ls`), and BUCKET/KEY for `cairn download` and `cairn sign`.

The listing is GET /v1/buckets/{name}/objects with `delimiter=/` (unless --recursive):
the server rolls keys up into common prefixes, shown as `PRE folder/` rows; pages follow
its cursor until --limit. Keys go into URLs percent-encoded per segment, their `/` kept.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import httpx

from bus.client.errors import USAGE, ClientError
from bus.client.http import json_of, next_cursor, segment, shaped
from bus.client.output import Output, human_bytes

UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def file_or_object(ref: str) -> str | tuple[str, str]:
    """What a FILE_ID|BUCKET/KEY argument names: the file id, or (bucket, key); a usage
    error (exit 2) for anything else."""
    if UUID_RE.match(ref):
        return ref
    bucket, sep, key = ref.partition("/")
    if not sep or not bucket or not key:
        raise ClientError(
            f"{ref!r} is neither a file id nor BUCKET/KEY", code="usage", exit_code=USAGE
        )
    return bucket, key


def key_path(key: str) -> str:
    """A key as a URL path: percent-encoded, its `/` kept, and a `.` or `..` segment's dots
    encoded too: httpx, like every client, drops such segments from a path before sending
    it (RFC 3986 §5.2.4), and a key is not a path."""
    return "/".join(segment(s) for s in key.split("/"))


def object_path(bucket: str, key: str) -> str:
    """The object's URL path."""
    return f"/v1/buckets/{segment(bucket, 'the bucket name')}/objects/{key_path(key)}"


def list_objects(
    client: httpx.Client, bucket: str, prefix: str, *, recursive: bool, limit: int | None
) -> dict[str, Any]:
    """Every page (or the first `limit` entries): {"items", "common_prefixes"}."""
    items: list[dict[str, Any]] = []
    prefixes: list[str] = []
    cursor = None
    while limit is None or len(items) + len(prefixes) < limit:
        params: dict[str, Any] = {"prefix": prefix, "limit": 1000}
        if limit is not None:
            params["limit"] = min(1000, limit - len(items) - len(prefixes))
        if not recursive:
            params["delimiter"] = "/"
        if cursor:
            params["cursor"] = cursor
        r = client.get(f"/v1/buckets/{segment(bucket, 'the bucket name')}/objects", params=params)
        page = json_of(r, items=list)
        where = str(r.request.url)
        if page.get("common_prefixes") is not None:
            shaped(page, where, common_prefixes=list)
        items.extend(page["items"])
        prefixes.extend(page.get("common_prefixes") or [])
        cursor = next_cursor({"next_cursor": None, **page}, where, cursor)
        if not cursor:
            break
    return {"bucket": bucket, "prefix": prefix, "items": items, "common_prefixes": prefixes}


def find_object(client: httpx.Client, bucket: str, key: str) -> dict[str, Any] | None:
    """The object `key` in `bucket` (its listing entry, with the file id), or None."""
    page = json_of(
        client.get(
            f"/v1/buckets/{segment(bucket, 'the bucket name')}/objects",
            params={"prefix": key, "limit": 1},
        ),
        items=list,
    )
    found = [o for o in page["items"] if o["key"] == key]
    return dict(found[0]) if found else None


def show_listing(args: argparse.Namespace, out: Output, listing: dict[str, Any]) -> None:
    if args.json:
        out.emit(listing)
        return
    # Names relative to the folder asked for (as `aws s3 ls` shows them): what follows
    # the prefix's last `/`.
    base = 0 if args.full else listing["prefix"].rfind("/") + 1
    rows = [{"when": "", "size": "PRE", "name": p[base:]} for p in listing["common_prefixes"]] + [
        {
            "when": o.get("last_modified", ""),
            "size": human_bytes(o["size"]),
            "name": o["key"][base:],
        }
        for o in listing["items"]
    ]
    out.table(rows, [("when", "MODIFIED"), ("size", "SIZE"), ("name", "KEY")], raw=listing)
