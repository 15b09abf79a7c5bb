"""A local S3-compatible server for the tests: moto's S3, run as a process on loopback.

moto accepts checksum headers without checking them; real S3 (and MinIO, R2, Garage)
answer 400 BadDigest when `x-amz-checksum-sha256` or `Content-MD5` does not match the
body. A small WSGI layer in front of moto adds exactly that check, so "durable only once
S3 verified the checksum" is tested against a server that verifies. The same layer injects
the faults the S3 store must survive, switched over HTTP at `/_faults` (JSON):

    {"corrupt_gets": true}          flip one byte of every object GET body
    (and requests signed with the access key id REJECTED_KEY answer 403 InvalidAccessKeyId)
    {"stall_gets": N, "stall_after": B, "stall_seconds": S}
                                    the next N object GETs send B bytes, then go silent S s
                                    (then the body ends short: the connection is cut)
    {"stall_gets": N, ..., "stall_key": K}
                                    the same, counting only GETs of keys containing K
    {"busy_puts": N}                the next N object PUTs answer 503 SlowDown (body read
                                    first, nothing stored), as a throttling S3 does

Run as `python -m tests.s3server --port P`; `S3Server` starts and stops it for a test.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


# moto takes any credentials; this access key id is refused like S3 refuses an unknown one.
REJECTED_KEY = "AKIAREJECTEDBYTESTS"


class FaultyChecksummingS3:
    """WSGI middleware: checksum verification on PUT, fault injection on GET."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.faults: dict[str, Any] = {}
        self.rejected = 0
        self.refused_busy = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if path == "/_faults":
            return self._faults(environ, start_response, method)
        if f"Credential={REJECTED_KEY}/" in environ.get("HTTP_AUTHORIZATION", ""):
            body = _error(
                start_response,
                "403 Forbidden",
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
            return [] if method == "HEAD" else body  # HEAD answers carry no body
        if method == "PUT" and "x-amz-copy-source" not in _headers(environ):
            if path.count("/") >= 2 and self._busy(environ):
                return _error(
                    start_response, "503 Slow Down", "SlowDown", "Reduce your request rate."
                )
            bad = self._verify(environ)
            if bad is not None:
                with self.lock:
                    self.rejected += 1
                return _error(start_response, "400 Bad Request", "BadDigest", bad)
        if (
            method == "GET"
            and path.count("/") >= 2
            and "list-type" not in environ.get("QUERY_STRING", "")
        ):
            return self._get(environ, start_response)
        return self.app(environ, start_response)  # type: ignore[no-any-return]

    def _faults(self, environ: dict[str, Any], start_response: Any, method: str) -> list[bytes]:
        if method == "POST":
            n = int(environ.get("CONTENT_LENGTH") or 0)
            with self.lock:
                self.faults = json.loads(environ["wsgi.input"].read(n) or b"{}")
        with self.lock:
            body = json.dumps(
                {**self.faults, "rejected": self.rejected, "refused_busy": self.refused_busy}
            ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    def _busy(self, environ: dict[str, Any]) -> bool:
        with self.lock:
            busy = int(self.faults.get("busy_puts", 0)) > 0
            if busy:
                self.faults["busy_puts"] = int(self.faults["busy_puts"]) - 1
                self.refused_busy = self.refused_busy + 1
        if busy:  # the whole body was sent (and is dropped), as with a real 503
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        return busy

    def _verify(self, environ: dict[str, Any]) -> str | None:
        h = _headers(environ)
        want_sha = h.get("x-amz-checksum-sha256")
        want_md5 = h.get("content-md5")
        if not want_sha and not want_md5:
            return None
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n)
        environ["wsgi.input"] = io.BytesIO(body)
        if want_sha and base64.b64encode(hashlib.sha256(body).digest()).decode() != want_sha:
            return "The SHA256 you specified did not match the calculated checksum."
        if want_md5 and base64.b64encode(hashlib.md5(body).digest()).decode() != want_md5:
            return "The Content-MD5 you specified did not match what we received."
        return None

    def _get(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self.lock:
            corrupt = bool(self.faults.get("corrupt_gets"))
            stall = int(self.faults.get("stall_gets", 0)) > 0 and str(
                self.faults.get("stall_key", "")
            ) in environ.get("PATH_INFO", "")
            if stall:
                self.faults["stall_gets"] = int(self.faults["stall_gets"]) - 1
            stall_after = int(self.faults.get("stall_after", 0))
            stall_seconds = float(self.faults.get("stall_seconds", 0))
        inner = self.app(environ, start_response)
        if not corrupt and not stall:
            return inner  # type: ignore[no-any-return]
        return _faulty(inner, corrupt, stall_after if stall else None, stall_seconds)


def _faulty(
    inner: Iterable[bytes], corrupt: bool, stall_after: int | None, stall_seconds: float
) -> Iterator[bytes]:
    sent = 0
    flipped = False
    for part in inner:
        if corrupt and part and not flipped:
            part = bytes([part[0] ^ 0xFF]) + part[1:]
            flipped = True
        if stall_after is not None and sent + len(part) > stall_after:
            yield part[: stall_after - sent]
            time.sleep(stall_seconds)  # a server that went silent mid-body
            return
        sent += len(part)
        yield part


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            out[k[5:].replace("_", "-").lower()] = v
    if "CONTENT_MD5" in environ:
        out["content-md5"] = environ["CONTENT_MD5"]
    return out


def _error(start_response: Any, status: str, code: str, message: str) -> list[bytes]:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()
    start_response(status, [("Content-Type", "application/xml")])
    return [body]


def serve(host: str, port: int) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = FaultyChecksummingS3(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


class S3Server:
    """The server as a child process on a free loopback port."""

    def __init__(self, port: int | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = log  # where its stderr goes (tracebacks of its 500s); else nowhere

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        err = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.s3server", "--port", str(self.port)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        finally:
            if self.log is not None:
                err.close()  # type: ignore[union-attr]  # the child holds its own copy
        end = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{self.endpoint}/_faults", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError("the local S3 server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def faults(self, **faults: Any) -> dict[str, Any]:
        """Set the faults (none: clear them); return the server's fault state."""
        r = httpx.post(f"{self.endpoint}/_faults", content=json.dumps(faults), timeout=5)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        """The faults still armed, and how many PUTs the checksum check rejected."""
        r = httpx.get(f"{self.endpoint}/_faults", timeout=5)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def create_bucket(self, name: str) -> None:
        # Path-style, unsigned: moto does not check signatures.
        httpx.put(f"{self.endpoint}/{name}", timeout=5).raise_for_status()


def use_test_credentials() -> None:
    """moto takes any credentials; botocore needs some to sign with."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    serve(a.host, a.port)
