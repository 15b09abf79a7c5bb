"""Client errors and the exit codes scripts can rely on.

Every failure the client reports is a ClientError carrying one of these codes, printed as
one line (the server's error code and message when the server refused), never a traceback.
"""

from __future__ import annotations

from typing import Any

from bus.terminal import printable

OK = 0
FAILED = 1  # the server refused or failed (any other 4xx/5xx), or a local I/O error
USAGE = 2  # bad command line (argparse's own code)
NOT_FOUND = 3  # 404: no such id (or another user's)
AUTH = 4  # 401/403: no token, a bad or expired token, not allowed
CONFLICT = 5  # 409/412: the state changed under us (e.g. a chunk with other bytes)
VERIFY = 6  # a sha256 did not match: the bytes are not what the server holds
UNREACHABLE = 7  # no answer from the server (connection refused, timeout, DNS)
INTERRUPTED = 130  # Ctrl-C; a transfer resumes when the same command runs again
BROKEN_PIPE = 141  # whoever read stdout went away (`| head`): 128 + SIGPIPE, as shell tools

EXIT_CODES = {
    OK: "success",
    FAILED: "the server refused or failed the request, or a local I/O error",
    USAGE: "bad command line",
    NOT_FOUND: "not found (404)",
    AUTH: "not authenticated or not allowed (401/403)",
    CONFLICT: "conflict or failed precondition (409/412)",
    VERIFY: "sha256 verification failed",
    UNREACHABLE: "the server could not be reached",
    INTERRUPTED: "interrupted (Ctrl-C); an upload (not from stdin) or download (not to"
    " stdout) resumes when run again",
    BROKEN_PIPE: "the reader of the output went away (e.g. `| head`), said nothing",
}
# The commands that continue where they stopped when run again (their Ctrl-C says so).
RESUMABLE = frozenset({"upload", "download"})


def exit_code_for_status(status: int) -> int:
    if status == 404:
        return NOT_FOUND
    if status in (401, 403):
        return AUTH
    if status in (409, 412):
        return CONFLICT
    return FAILED


class ClientError(Exception):
    """A failure to report on one line and exit with `exit_code`."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        exit_code: int = FAILED,
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code
        self.status = status
        self.details = details or {}

    def line(self) -> str:
        where = f" (HTTP {self.status})" if self.status else ""
        # The code and message may be the server's: shown, never obeyed (bus/terminal.py printable).
        return printable(f"cairn: error: {self.code}: {self.message}{where}")


class Interrupted(Exception):
    """Ctrl-C during a transfer: what is on the server (or on disk) is kept for a resume."""
