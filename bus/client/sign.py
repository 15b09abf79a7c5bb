"""`cairn sign FILE_ID|BUCKET/KEY --expires 1h`: a URL that works without a token until it
expires (POST /v1/files/{id}/signed-url, or /v1/buckets/{name}/objects/{key}/signed-url).

The URL alone goes to stdout, so `curl "$(cairn sign ...)"` works; `--json` prints the
server's whole answer (url, method, expires_at). The server bounds the expiry
(CAIRN_SIGNED_URL_MAX_EXPIRY) and says so in its one error shape.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from bus.client.http import json_of, open_client
from bus.client.objects import file_or_object, object_path
from bus.client.output import Output
from bus.terminal import printable

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: str) -> int:
    """`90`, `90s`, `15m`, `1h`, `7d` → seconds."""
    m = re.fullmatch(r"(\d+)\s*([smhd]?)", value.strip().lower())
    if not m or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration like 90s, 15m, 1h or 7d")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def sign_path(ref: str) -> str:
    """The signed-url endpoint of a file id or of BUCKET/KEY (the key's `/`s kept)."""
    named = file_or_object(ref)
    if isinstance(named, str):
        return f"/v1/files/{named}/signed-url"
    return f"{object_path(*named)}/signed-url"


def register(sub: Any, add: Any) -> None:
    p = add(sub, "sign", cmd_sign, "a URL that reads a file or object without a token, for a while")
    p.add_argument(
        "ref", metavar="FILE_ID|BUCKET/KEY", help="a file id, or an object's bucket and key"
    )
    p.add_argument(
        "--expires",
        type=duration,
        default=3600,
        metavar="DURATION",
        help="how long it works: 90s, 15m, 1h (default), 7d",
    )
    p.add_argument(
        "--method",
        choices=("GET", "HEAD"),
        default="GET",
        help="what it allows (GET also answers HEAD; default GET)",
    )


def cmd_sign(args: argparse.Namespace, out: Output, target: Any) -> int:
    body = {"method": args.method, "expires_in": args.expires}
    with open_client(target) as client:
        signed = json_of(client.post(sign_path(args.ref), json=body), url=str, method=str)
    if args.json:
        out.emit(signed)
    else:
        # Alone on stdout: for $(cairn sign ...). A URL holds no control character, so
        # `printable` leaves a real one exact; a server's ESC is shown, not obeyed.
        print(printable(signed["url"]))
        out.note(f"{signed['method']} until {signed['expires_at']}")
    return 0
