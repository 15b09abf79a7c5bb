"""Schemathesis hooks for tests/api/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

tus PATCH bodies are `application/offset+octet-stream`, a media type schemathesis does not
know: they are raw bytes, like any other binary body."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=256))
