"""What another local user may leave next to a download's destination: `<dest>.part` or
`<dest>.part.json` as a symbolic link (to a file of the victim's, or to nothing), or as a
part of some bytes with its resume state, for the download tests in-process
(test_download_part.py) and as a subprocess (test_download.py, test_download_planted.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PART = ".part"
SIDECAR = ".part.json"


def beside(dest: Path, suffix: str) -> Path:
    """`<dest><suffix>`: the download's part (PART) or its resume state (SIDECAR)."""
    return dest.with_name(dest.name + suffix)


def plant_link(dest: Path, suffix: str, target: Path, content: bytes | None = None) -> Path:
    """`<dest><suffix>` made a symbolic link to `target`, which gets `content` (a file the
    link must not reach) or, with None, is left missing (a dangling link, through which
    O_CREAT would make it). Returns the link."""
    if content is not None:
        target.write_bytes(content)
    link = beside(dest, suffix)
    link.symlink_to(target)
    return link


def plant_part(dest: Path, data: bytes, **state: Any) -> Path:
    """`<dest>.part` holding `data` and `<dest>.part.json` holding `state` (the file id,
    server and ETag a resume is judged by): what a download cut short leaves, or what
    someone else plants. Returns the part."""
    part = beside(dest, PART)
    part.write_bytes(data)
    beside(dest, SIDECAR).write_text(json.dumps(state))
    return part
