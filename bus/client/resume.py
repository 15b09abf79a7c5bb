"""Resume state of uploads, kept under the user's cache dir (XDG_CACHE_HOME/cairn/uploads).

One small JSON file per (absolute path, size, mtime, server, user, destination): a changed
file, another server or another user never picks up a stale upload. It is written before
the request it protects (the create's Idempotency-Key is saved before the create is sent,
so a create cut off by Ctrl-C is replayed, not made twice) and removed once the file
exists on the server.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from bus.client.config import cache_dir


def state_dir() -> Path:
    return cache_dir() / "uploads"


def state_key(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:40]


class ResumeState:
    def __init__(self, key: str) -> None:
        self.path = state_dir() / f"{key}.json"
        try:
            loaded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            loaded = {}
        self.data: dict[str, Any] = loaded if isinstance(loaded, dict) else {}

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def update(self, **values: Any) -> None:
        """Atomically replace the file (write, fsync, rename): never a torn state."""
        self.data.update(values)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def reset(self, **keep: Any) -> None:
        self.data = {}
        self.update(**keep)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
