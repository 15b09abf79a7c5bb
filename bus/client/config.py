"""Where the client finds its server and token: flags, then CAIRN_URL / CAIRN_TOKEN, then
the config file `cairn login` writes (XDG_CONFIG_HOME/cairn/config.json, mode 0600), then
the local server that `cairn up` starts with the same environment (CAIRN_HOST, CAIRN_PORT)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bus.client.errors import USAGE, ClientError
from bus.config.settings import Settings

# What `cairn up` listens on when told no other place: the settings' own defaults.
DEFAULT_URL = f"http://{Settings.host}:{Settings.port}"
# Hosts that mean every interface (or none set): the client reaches them on loopback.
_WILDCARDS = ("", "0.0.0.0", "::")


def default_url() -> str:
    """The server `cairn up` runs with this environment: http://CAIRN_HOST:CAIRN_PORT, a
    wildcard host read as loopback, else DEFAULT_URL.

    The README has a second install on one machine set CAIRN_PORT (and the data dir) for
    `up` and every later command; a client that ignored it sent the token and the files
    to whichever Cairn held port 8000 (another user's, on a shared machine), or failed as
    unreachable with no word of the port it had tried."""
    host = os.environ.get("CAIRN_HOST", "").strip()
    port = os.environ.get("CAIRN_PORT", "").strip()
    if host in _WILDCARDS and not port:
        return DEFAULT_URL
    host = Settings.host if host in _WILDCARDS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    return f"http://{host}:{port or Settings.port}"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cairn" / "config.json"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cairn"


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None


def _load() -> dict[str, str]:
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def resolve(url: str | None, token: str | None) -> Target:
    saved = _load()
    chosen_url = url or os.environ.get("CAIRN_URL") or saved.get("url") or default_url()
    chosen_token = token or os.environ.get("CAIRN_TOKEN") or saved.get("token")
    return Target(chosen_url.rstrip("/"), chosen_token or None)


def checked(target: Target) -> Target:
    """The target, if its URL can name a server; else a usage error (exit 2) saying so,
    instead of a connection that fails as 'unreachable' (exit 7) for a URL that could
    never have reached anything (`CAIRN_URL=localhost:8000`, without its scheme)."""
    try:
        parts = urlsplit(target.url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number, a malformed IPv6 address
        ok = False
    if not ok:
        raise ClientError(
            f"{target.url!r} is not a server URL: give http://HOST[:PORT] or https://..."
            " (--url, CAIRN_URL or `cairn login`; without them CAIRN_HOST and CAIRN_PORT"
            " name the local server)",
            code="invalid_url",
            exit_code=USAGE,
        )
    return target


def save(url: str, token: str) -> Path:
    """Write the config file readable by its owner only (it holds a credential)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # A new file, so the mode is ours: O_CREAT keeps the mode of a file already there (a
    # config.tmp left by a crash, or made by hand with 0644), and would follow a symlink.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url.rstrip("/"), "token": token}, f)
    os.replace(tmp, path)
    return path
