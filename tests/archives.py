"""Archives built in memory for the task tests."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import Any


def zip_of(members: Mapping[str, bytes], compression: int = zipfile.ZIP_STORED, **kw: Any) -> bytes:
    """A zip of `members` (name -> bytes), in their order; `kw` goes to ZipFile."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression, **kw) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()
