"""Owner-only places on disk: the data dir, the S3 spool, the embedded servers' logs.

The data dir holds the JWT secret, the signing key, the embedded Postgres's files and the
local blobs; the S3 spool holds request bodies on their way to S3; postgres.log and
tansu.log can hold query text and message details. Created with the process's default
modes (0755 directories, 0644 files under the usual umask), any account on the machine
could list or read them. Every place that creates one goes through here.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """`path` as a directory, created 0700 (its missing parents with the default mode). A
    directory that exists is left as it is: it may be the operator's own choice (a spool
    on a shared disk, a data dir they made), which Cairn does not re-permission."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """`path` as a file only its owner reads (0600), created empty if missing. One that
    exists is Cairn's own (a log from an earlier start, made 0644 before this rule) and is
    made 0600 too, without touching its content."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path
