"""The baselines Cairn is measured against, started and stopped by the bench.

- nginx: the system's package (installed with apt-get when missing and we are root, unless
  --no-install); a WebDAV `PUT` location for uploads and a `sendfile` location serving the
  very bytes Cairn serves, for downloads. Runs as its own master in a temp prefix on a free
  port; none of the system's nginx configuration is used. The same directory is listed as
  JSON (`autoindex_format json`) for objects.list.
- bare: `bare_app.py` under uvicorn, the least a Python streaming upload endpoint does.
- curl: the client for nginx uploads and for every download (Cairn's included), so that a
  download compares servers, not clients.
- @tus/server: the tus reference server (Node) with its file store, from `package.json`
  in this folder (`npm ci` when node_modules is missing, unless --no-install), started as
  `node tus_server.mjs` on a free port; tus-js-client from the same install is the one
  client for it and for Cairn (`tus_client.mjs`, see tus.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from bus.run.embedded import free_port
from tests.bench.cairn import REPO
from tests.bench.procs import Managed, run_to_end, wait_until

APT_TIMEOUT = 240.0
APT_PACKAGES = ("nginx-light", "nginx")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- nginx


def find_nginx() -> str | None:
    for cand in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def _system_nginx_pid() -> int | None:
    """The pid of a system nginx (default pid file) if one is running."""
    try:
        pid = int(Path("/run/nginx.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def ensure_nginx(install: bool) -> tuple[str | None, str]:
    """(path of the nginx binary or None, a note on how it was found or why not)."""
    found = find_nginx()
    if found:
        return found, "found"
    if not install:
        return None, "nginx not installed (and --no-install)"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, "nginx not installed, and not root with apt-get to install it"
    before = _system_nginx_pid()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + APT_TIMEOUT
    attempts: list[list[str]] = [
        ["apt-get", "install", "-y", "--no-install-recommends", APT_PACKAGES[0]],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", APT_PACKAGES[0]],
        ["apt-get", "install", "-y", "--no-install-recommends", APT_PACKAGES[1]],
    ]
    last = ""
    for cmd in attempts:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            out = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=remaining, check=False
            )
            lines = (out.stderr or out.stdout).strip().splitlines()
            last = lines[-1] if lines else ""
        except subprocess.TimeoutExpired:
            last = f"{' '.join(cmd)} timed out"
            break
        if find_nginx():
            break
    # A package's post-install may have started the system service (where no policy-rc.d
    # forbids it): that one is ours to stop, we never asked for it.
    after = _system_nginx_pid()
    nginx = find_nginx()
    if nginx and after and after != before:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([nginx, "-s", "quit"], capture_output=True, timeout=15, check=False)
    if nginx:
        return nginx, "installed with apt-get"
    return None, f"nginx could not be installed ({last or 'apt-get failed'})"


NGINX_CONF = """\
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_max_body_size 0;
    client_body_buffer_size 1m;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        # Uploads: WebDAV PUT, body spooled to a temp file then renamed into place; COPY
        # and DELETE for tasks.prefix (a client copying and deleting file by file).
        location /dav/ {{
            root {prefix};
            dav_methods PUT DELETE COPY;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
        # Downloads: the same bytes Cairn serves, with sendfile.
        location /data/ {{
            alias {data}/;
        }}
        # The same bytes without byte ranges (fetch.url_cache: an origin Cairn fetches as
        # one stream).
        location /whole/ {{
            alias {data}/;
            max_ranges 0;
        }}
        # Directory listings of the same tree as JSON (objects.list: a bucket's listing
        # against nginx's). Its own location: /data/ still answers 403 for a directory.
        location /list/ {{
            alias {data}/;
            autoindex on;
            autoindex_format json;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, binary: str, work: Path, data_dir: Path) -> None:
        self.binary = binary
        self.prefix = work / "nginx"
        self.data_dir = data_dir
        self.port = free_port()
        self.version = ""
        self.proc = Managed(
            "nginx",
            [
                binary,
                "-p",
                str(self.prefix),
                "-c",
                str(self.prefix / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            log=work / "nginx.log",
            stop_signal=signal.SIGQUIT,
            stop_timeout=10.0,
        )

    def put_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/dav/{name}"

    def get_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/data/{name}"

    def whole_url(self, name: str) -> str:
        """`get_url` with byte ranges off (a 200 to every Range)."""
        return f"http://127.0.0.1:{self.port}/whole/{name}"

    def list_url(self, directory: str) -> str:
        """The JSON autoindex of `directory` under the data dir (a trailing `/` added)."""
        return f"http://127.0.0.1:{self.port}/list/{directory.strip('/')}/"

    def start(self) -> None:
        out = subprocess.run(
            [self.binary, "-v"], capture_output=True, text=True, timeout=10, check=False
        )
        self.version = (out.stderr or out.stdout).strip().removeprefix("nginx version: ")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "dav"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
            # Workers run as an unprivileged user when the master is root.
            (self.prefix / sub).chmod(0o777)
        self.prefix.chmod(0o755)
        (self.prefix / "nginx.conf").write_text(
            NGINX_CONF.format(prefix=self.prefix, port=self.port, data=self.data_dir)
        )
        self.proc.start()
        wait_until(
            lambda: _port_open(self.port) or not self.proc.alive(), 15, "nginx", interval=0.05
        )
        if not self.proc.alive():
            raise RuntimeError(f"nginx did not start:\n{self.proc.log_tail()}")

    def stop(self) -> None:
        self.proc.stop()


# ---------------------------------------------------------------------------- bare endpoint


class BareEndpoint:
    def __init__(self, work: Path) -> None:
        self.root = work / "bare"
        self.port = free_port()
        self.proc = Managed(
            "bare",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.bench.bare_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            log=work / "bare.log",
            env={**os.environ, "BENCH_BARE_DIR": str(self.root)},
            cwd=REPO,
            stop_signal=signal.SIGTERM,
            stop_timeout=10.0,
        )

    def put_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/upload/{name}"

    def start(self) -> None:
        self.proc.start()

        def up() -> bool:
            if not self.proc.alive():
                return True
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).is_success
            return False

        wait_until(up, 30, "bare endpoint", interval=0.1)
        if not self.proc.alive():
            raise RuntimeError(f"bare endpoint did not start:\n{self.proc.log_tail()}")

    def stop(self) -> None:
        self.proc.stop()


# ---------------------------------------------------------------------------- curl


class CurlError(RuntimeError):
    pass


async def run_curl(args: Sequence[str], timeout: float) -> str:
    """Run curl; its stdout (the -w output). Killed on timeout or cancellation."""
    code, out, err = await run_to_end(["curl", *args], timeout)
    if code != 0:
        raise CurlError(f"curl exited {code}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def curl_upload(url: str, path: Path, timeout: float) -> None:
    out = await run_curl(
        [
            "-sS",
            "--fail",
            "--max-time",
            str(int(timeout)),
            "-T",
            str(path),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ],
        timeout + 5,
    )
    if out.strip() not in ("201", "204"):
        raise CurlError(f"PUT {url}: HTTP {out.strip()}")


async def curl_download(
    url: str,
    expect_bytes: int,
    timeout: float,
    *,
    headers: Mapping[str, str] | None = None,
    output: Path | None = None,
) -> None:
    args = ["-sS", "--fail", "--max-time", str(int(timeout)), "-o", str(output or "/dev/null")]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    out = await run_curl([*args, "-w", "%{size_download}", url], timeout + 5)
    got = int(float(out.strip() or 0))
    if got != expect_bytes:
        raise CurlError(f"GET {url}: {got} bytes, expected {expect_bytes}")


# ---------------------------------------------------------------------------- tus (Node)

NODE_DIR = Path(__file__).resolve().parent
NPM_TIMEOUT = 300.0
NODE_PACKAGES = ("@tus/server", "@tus/file-store", "tus-js-client")


def _node_package_version(name: str) -> str | None:
    try:
        pkg = json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return str(pkg.get("version") or "?")


def ensure_node_modules(install: bool) -> tuple[bool, str]:
    """(node and the tus packages are ready, a note on how or why not)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        return False, "node is not installed"
    versions = {n: _node_package_version(n) for n in NODE_PACKAGES}
    how = "found"
    if not all(versions.values()):
        if npm is None:
            return False, "npm is not installed (needed once for tests/bench/node_modules)"
        if not install:
            return False, "tests/bench/node_modules is missing (and --no-install)"
        try:
            out = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False, f"npm ci timed out after {NPM_TIMEOUT:.0f} s"
        if out.returncode != 0:
            lines = (out.stderr or out.stdout).strip().splitlines()
            return False, f"npm ci failed: {lines[-1] if lines else out.returncode}"
        versions = {n: _node_package_version(n) for n in NODE_PACKAGES}
        if not all(versions.values()):
            return False, "npm ci did not install the tus packages"
        how = "installed with npm ci"
    node_version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    listed = ", ".join(f"{n} {v}" for n, v in versions.items())
    return True, f"node {node_version}, {listed} ({how})"


class TusServer:
    """@tus/server with @tus/file-store (tus_server.mjs), storing under the work dir."""

    def __init__(self, work: Path) -> None:
        self.store = work / "tus-server"
        self.port = free_port()
        self.version = _node_package_version("@tus/server") or "?"
        self.proc = Managed(
            "tus-server",
            ["node", str(NODE_DIR / "tus_server.mjs"), str(self.port), str(self.store)],
            log=work / "tus-server.log",
            cwd=NODE_DIR,
            stop_signal=signal.SIGTERM,
            stop_timeout=10.0,
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/files"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        self.proc.start()
        wait_until(
            lambda: _port_open(self.port) or not self.proc.alive(),
            30,
            "@tus/server",
            interval=0.05,
        )
        if not self.proc.alive():
            raise RuntimeError(f"@tus/server did not start:\n{self.proc.log_tail()}")

    def clear(self) -> None:
        """Delete what earlier runs stored (no upload is in progress between runs)."""
        for p in self.store.iterdir():
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def stop(self) -> None:
        self.proc.stop()
