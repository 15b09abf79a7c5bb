"""Resume state of uploads, kept under the user's cache dir (XDG_CACHE_HOME/cairn/uploads).

One small JSON file per (absolute path, size, mtime, server, user, destination): a changed
file, another server or another user never picks up a stale upload. It is written before
the request it protects (the create's Idempotency-Key is saved before the create is sent,
so a create cut off by Ctrl-C is replayed, not made twice) and removed once the file
exists on the server.

What is read back decides where the file's bytes go (a tus upload URL) and which upload
they join, so a state is used only if it is this upload's: the file is this user's
regular file (opened O_NOFOLLOW, never through a link) in folders of this user that no one
else may write to, it names its own key (`for`: a file copied from another server's or
user's state under this name is not), its fields are of their shapes (an upload id a
UUID, a chunk size a positive integer, a sha256 64 hex digits) and its tus URL is under
this server's /v1/tus/. A state that is not is dropped (the upload starts afresh); a
link, a file or a folder of another user, or a folder others may write to, is refused
(`unsafe_state`). Writes go to a new temporary (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600)
renamed over the state.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import httpx

from bus.client.config import cache_dir
from bus.client.errors import ClientError

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def state_dir() -> Path:
    return cache_dir() / "uploads"


def state_key(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:40]


def _unsafe(path: Path, why: str) -> ClientError:
    return ClientError(
        f"{path}: {why}; resume state not used: remove it (or set XDG_CACHE_HOME)",
        code="unsafe_state",
    )


def _private_dirs(create: bool) -> bool:
    """cache_dir() and state_dir(), created 0700 when `create`, each a folder (not a link)
    of this user that no one else may write to; False if they do not exist (yet)."""
    for d in (cache_dir(), state_dir()):
        if create:
            d.parent.mkdir(parents=True, exist_ok=True)
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                pass
        try:
            st = d.lstat()
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            raise _unsafe(d, "is not a folder (a symbolic link?)")
        if st.st_uid != os.geteuid():
            raise _unsafe(d, f"is owned by uid {st.st_uid}, not this user")
        # Group-writable is fine for the user's own group (a umask of 002 makes it so).
        if st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid != os.getegid()):
            raise _unsafe(d, "is writable by other users")
    return True


def _read(path: Path) -> Any:
    try:
        # O_NONBLOCK: a FIFO is opened at once (and refused), never waited on.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _unsafe(path, "is a symbolic link") from None
        return {}
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _unsafe(path, "is not a regular file")
        if st.st_uid != os.geteuid():
            raise _unsafe(path, f"is owned by uid {st.st_uid}, not this user")
        try:
            return json.loads(f.read(1 << 20))
        except (OSError, ValueError, RecursionError):
            return {}


def _optional(value: Any, ok: Any) -> bool:
    return value is None or ok(value)


class ResumeState:
    def __init__(self, key: str, server: str = "") -> None:
        """`server`: the URL a tus upload URL in the state must be under."""
        self.key = key
        self.tus_prefix = server.rstrip("/") + "/v1/tus/"
        self.path = state_dir() / f"{key}.json"
        loaded = _read(self.path) if _private_dirs(create=False) else {}
        self.data: dict[str, Any] = loaded if self._valid(loaded) else {}

    def _valid(self, data: Any) -> bool:
        """This upload's state (see the module's doc), every field of its shape."""
        if not isinstance(data, dict) or data.get("for") != self.key:
            return False

        def is_str(v: Any) -> bool:
            return isinstance(v, str)

        def positive(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 40

        checks = {
            "upload_id": lambda v: is_str(v) and bool(UUID.match(v)),
            "chunk_size": positive,
            "sha256": lambda v: is_str(v) and bool(SHA256.match(v)),
            "create_key": is_str,
            "complete_key": is_str,
            "tus_url": lambda v: is_str(v) and self.on_server(v),
        }
        return all(_optional(data.get(name), ok) for name, ok in checks.items())

    def on_server(self, url: str) -> bool:
        """`url` is a tus upload of this server: its origin (scheme, host, port) and
        under its /v1/tus/ (a default port written out or not, the same)."""
        try:
            u, p = httpx.URL(url), httpx.URL(self.tus_prefix)
        except (httpx.InvalidURL, TypeError):
            return False
        return (u.scheme, u.host, u.port) == (p.scheme, p.host, p.port) and u.path.startswith(
            p.path
        )

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def update(self, **values: Any) -> None:
        """Atomically replace the file (write, fsync, rename): never a torn state."""
        self.data.update(values)
        self.data["for"] = self.key
        _private_dirs(create=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)  # a leftover (or a link put there): the name, not its target
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def reset(self, **keep: Any) -> None:
        self.data = {}
        self.update(**keep)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
