"""Bucket names: S3's rules, so a name that works here works on any S3-compatible store.

Pure checks; `decide` refuses a bad name before anything is recorded, and the API reuses
the same function so a malformed name in a URL is answered like a missing bucket.
"""

from __future__ import annotations

import re

from domain.errors import NotFound

_SHAPE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Shaped like an IPv4 address, valid or not (`192.168.01.1`, `1.2.3.999`): S3 and MinIO
# refuse the shape, not only real addresses.
_IP_SHAPE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_BAD_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BAD_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")

RESERVED = frozenset({"default"})
"""`default` holds every file uploaded without a bucket (each user's own, private): it is
not a bucket anyone can create, own or make public."""


def bucket_name_problem(name: str) -> str | None:
    """Why S3 would refuse `name` as a bucket name, or None if it is valid."""
    if not isinstance(name, str) or not 3 <= len(name) <= 63:
        return "a bucket name is 3 to 63 characters long"
    if _SHAPE.fullmatch(name) is None:
        return (
            "a bucket name holds lowercase letters, digits, dots and hyphens, and begins"
            " and ends with a letter or digit"
        )
    if ".." in name:
        return "a bucket name has no two adjacent dots"
    if ".-" in name or "-." in name:
        return "a bucket name has no dot next to a hyphen"
    if _IP_SHAPE.fullmatch(name) is not None:
        return "a bucket name is not formatted like an IP address"
    if name.startswith(_BAD_PREFIXES) or name.endswith(_BAD_SUFFIXES):
        return "a bucket name does not use a prefix or suffix S3 reserves"
    return None


def is_bucket_name(name: str) -> bool:
    return bucket_name_problem(name) is None and name not in RESERVED


def bucket_not_found(name: str) -> NotFound:
    """The refusal of a bucket that is missing, deleted or someone else's (all alike, so
    another user's bucket is never told from a missing one). Its message names what was
    asked for: a client that prints only the message (`cairn`) said "no such bucket"
    without saying which."""
    shown = name[:64].encode("utf-8", "backslashreplace").decode("utf-8")
    return NotFound("bucket_not_found", f"no such bucket: {shown!r}", {"name": name[:64]})
