"""Check a real answer against the OpenAPI document's schema for it.

A schema that says one thing while the handler answers another misleads every client
generated from the document; the tests that get real answers (fetches, tasks, readiness)
pass them through `assert_documented`, so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator

_DOCS: dict[str, dict[str, Any]] = {}


async def document(c: httpx.AsyncClient) -> dict[str, Any]:
    """The system's OpenAPI document (fetched once per base URL)."""
    key = str(c.base_url)
    if key not in _DOCS:
        r = await c.get("/schema/openapi.json")
        assert r.status_code == 200, r.text
        _DOCS[key] = r.json()
    return _DOCS[key]


async def assert_documented(
    c: httpx.AsyncClient, method: str, path: str, response: httpx.Response
) -> None:
    """`response` (to `method` on the documented `path`, e.g. "/v1/fetches/{fetch_id}")
    is one of the operation's documented statuses and its JSON body fits that schema."""
    doc = await document(c)
    op = doc["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in op["responses"], (method, path, status, sorted(op["responses"]))
    schema = op["responses"][status]["content"]["application/json"]["schema"]
    # Refs (#/components/schemas/...) resolve against the root: give it the components.
    validator = Draft202012Validator(schema | {"components": doc["components"]})
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
