"""Small value types and checks shared by several aggregates."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SHA256_RE = re.compile(r"[0-9a-f]{64}")  # use with fullmatch: `$` would admit a trailing newline


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and SHA256_RE.fullmatch(value) is not None


def is_count(value: object) -> bool:
    """A non-negative int (bool is an int in Python, but never a size)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Piece:
    """One content-addressed blob in a manifest: `{"sha256", "size"}` in JSON."""

    sha256: str
    size: int

    @staticmethod
    def from_json(p: dict[str, Any]) -> Piece:
        """From a command's already validated JSON piece."""
        return Piece(str(p["sha256"]), int(p["size"]))


def aware(at: datetime) -> datetime:
    """`at`, treating a naive timestamp (only from malformed old data) as UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


MAX_FILE_NAME = 1024


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a control character (C0, DEL or C1; NUL among them)."""
    return any(unicodedata.category(c) == "Cc" for c in text)


def nul_at(value: object, path: str = "") -> str | None:
    """The path (`a.b[2]`) of the first string holding a NUL in `value` (keys included),
    or None: PostgreSQL's text and jsonb cannot store a NUL."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            inner = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and "\x00" in k:
                return inner.replace("\x00", "\\0")
            if (found := nul_at(v, inner)) is not None:
                return found
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            if (found := nul_at(v, f"{path}[{i}]")) is not None:
                return found
    return None


def file_name_problem(name: object, field: str = "file_name") -> str | None:
    """Why `name` is not a valid file name (a name, not a path), or None if it is."""
    if not isinstance(name, str) or not name.strip():
        return f"{field} must be a non-empty string"
    if len(name) > MAX_FILE_NAME:
        return f"{field} is over {MAX_FILE_NAME} characters"
    if has_control_characters(name):
        return f"{field} must not contain control characters"
    if "/" in name or "\\" in name or not name.strip("."):
        # A name, not a path: paths (folders) belong in object keys.
        return f"{field} must be a name, not a path: no '/' or '\\', and not only dots"
    return None


MAX_METADATA_BYTES = 8 * 1024
"""User metadata, keys and values together, in UTF-8 bytes."""
MAX_METADATA_KEY = 255


def metadata_problem(metadata: object) -> str | None:
    """Why `metadata` is not acceptable user metadata (string keys and values, bounded)."""
    if not isinstance(metadata, dict):
        return "metadata must be an object of strings"
    total = 0
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            return "metadata keys and values must be strings"
        if not k or len(k) > MAX_METADATA_KEY:
            return f"a metadata key is 1 to {MAX_METADATA_KEY} characters"
        if "\x00" in k or "\x00" in v:
            return "metadata must not contain a NUL character"
        total += len(k.encode()) + len(v.encode())
    if total > MAX_METADATA_BYTES:
        return f"metadata is over {MAX_METADATA_BYTES} bytes (keys and values, UTF-8)"
    return None
