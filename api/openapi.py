"""The OpenAPI document (`/schema/openapi.json`) and its viewer (`/schema/swagger`).

Litestar generates the document from the routes; this module adds what it cannot know:

- the two ways to authenticate (bearer JWT, X-API-Key) as security schemes, required by
  the controllers that use `SECURED`;
- raw request bodies for the handlers that stream them (`raw_body(...)` as a route's
  `operation_class`: chunk PUTs and tus PATCHes read the body themselves);
- every error response in Cairn's one error shape (api/errors.py) instead of Litestar's
  default one: `cairn_document` rewrites each 4xx/5xx response of the generated document
  to the `Error` schema and adds the errors every route can answer (400 when it takes
  input or credentials, 401 when secured, 404 when the path names something, 409 when it
  changes something, 500, and 503 for the command bus). It runs on the document the render plugins are given, so the JSON and the
  viewer agree;
- the success answers that are not JSON (downloads, tus, Server-Sent Events), which
  Litestar documents as JSON of any shape (`_SUCCESS`).

The viewer is Swagger UI from the `swagger-ui-bundle-v2` wheel, served by Cairn itself
under `/schema/assets/` (no CDN), so it works offline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from litestar import Request, Router
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from api.schemas import STRICT_BODIES

ASSETS = "/schema/assets"
SECURED: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
# Added to SECURED by routes that also answer without credentials (Litestar adds a route's
# security requirements to its controller's): `{}` is OpenAPI's "no authentication".
ANONYMOUS: list[dict[str, list[str]]] = [{}]

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Cairn's one error shape; request_id equals the X-Request-ID header.",
    "required": ["error", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string", "description": "for people"},
                "details": {"type": "object", "additionalProperties": True},
            },
        },
        "request_id": {"type": "string"},
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_STANDARD = {
    400: "Bad request: malformed input (see error.code and error.details)",
    401: "Authentication required, or the credentials are not valid",
    404: "No such resource (also the answer for another user's ids)",
    500: "Internal error (logged with the request id)",
    503: "A dependency is unavailable, or (upgrade_in_progress) the resource's history holds"
    " an event written by a newer version of Cairn than this process; retry after"
    " Retry-After seconds",
    409: "Conflict: the resource's state does not allow this change (finished, not empty,"
    " taken, changed meanwhile), or an Idempotency-Key reused with another request;"
    " error.code says which",
}
# Methods that change something: each is a command whose decision may refuse it (409).
_CHANGES = {"post", "put", "patch", "delete"}


# The limits a route answers beyond the standard errors (api/limits.py, api/events/
# stream_slots.py), for its `responses`; their bodies become the Error shape in `_finish`.
BODY_IN_FLIGHT: dict[int, ResponseSpec] = {
    429: ResponseSpec(
        None,
        description="too_many_requests: the caller (details.scope `user`), the upload"
        " (`upload`) or the process (`global`) has as many bodies in flight as it may;"
        " refused before the body is read. Retry after Retry-After seconds",
    )
}
# No room for a route that adds bytes: a size limit, the owner's quota (api/limits.py), or
# the blob store's disk (bus/blobs/errors.py, BlobStoreFull).
TOO_LARGE: dict[int, ResponseSpec] = {
    413: ResponseSpec(
        None,
        description="Past a size limit (object_too_large, upload_too_large, length_exceeded;"
        " details name the limit) or the owner's quota (quota_exceeded: details {quota, used,"
        " requested}, or `allowed` for a body sent without a length, cut there; an object"
        " PUT over a live key asks only what it adds to the key, `replaced` the bytes it"
        " replaces)",
    ),
    507: ResponseSpec(
        None,
        description="insufficient_storage: the blob store's disk is full; nothing was kept."
        " Retry after Retry-After seconds, once space is freed",
    ),
}
# An upload past CAIRN_UPLOAD_TTL of inactivity: every change to it is refused for good.
UPLOAD_EXPIRED: dict[int, ResponseSpec] = {
    410: ResponseSpec(
        None,
        description="upload_expired: the upload saw no activity for CAIRN_UPLOAD_TTL and"
        " was expired; start a new one",
    )
}
LIVE_STREAMS: dict[int, ResponseSpec] = {
    429: ResponseSpec(
        None,
        description="too_many_streams: the caller holds as many live event streams as a"
        " user may (CAIRN_EVENTS_MAX_STREAMS_PER_USER); close one, or retry later",
    ),
    503: ResponseSpec(
        None,
        description="events_busy: the process holds as many live event streams as it may"
        " (CAIRN_EVENTS_MAX_STREAMS); retry after Retry-After seconds",
    ),
}


def raw_body(media_type: str, description: str, required: bool = True) -> type[Operation]:
    """An Operation class documenting a raw (streamed) request body of `media_type`."""

    @dataclass
    class RawBodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={
                    media_type: OpenAPIMediaType(
                        schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                    )
                },
                description=description,
                required=required,
            )

    return RawBodyOperation


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": dict(_ERROR_REF)}}


# Operations whose route takes the whole rest of the path (Litestar matches nothing after
# a `{key:path}`) but whose documented path has a fixed ending: (method, path) -> ending.
PATH_ENDINGS = {("post", "/v1/buckets/{name}/objects/{key}"): "/signed-url"}


def _move_endings(paths: dict[str, Any]) -> None:
    for (method, path), ending in PATH_ENDINGS.items():
        op = paths.get(path, {}).pop(method, None)
        if op is not None:
            paths.setdefault(path + ending, {})[method] = op


def _header(description: str, fmt: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if fmt:
        schema["format"] = fmt
    return {"description": description, "schema": schema}


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_CONTENT_HEADERS = {
    "ETag": _header('The content\'s sha256 in quotes, strong ("<hex>")'),
    "Last-Modified": _header("When the file was made"),
    "Accept-Ranges": _header("bytes"),
    "Content-Length": _header("The bytes in this answer", "int64"),
    "Content-Disposition": _header("inline, or attachment with ?download=true; the name"),
}
_TUS_HEADERS = {
    "Tus-Resumable": _header("1.0.0"),
    "Upload-Offset": _header("The bytes the server holds durably", "int64"),
    "Upload-Expires": _header("When an unfinished upload is removed (RFC 9110 date)"),
}


def _content(head: bool) -> dict[str, Any]:
    """A download's success answers: the stored bytes in their stored Content-Type (none
    for HEAD), whole (200) or ranged (206: one range, or multipart/byteranges)."""
    whole: dict[str, Any] = {
        "description": "The whole content, in its stored Content-Type",
        "headers": dict(_CONTENT_HEADERS),
    }
    part: dict[str, Any] = {
        "description": "The requested range (Content-Range), or ranges as multipart/byteranges",
        "headers": _CONTENT_HEADERS | {"Content-Range": _header("bytes START-END/SIZE")},
    }
    if not head:
        whole["content"] = {"*/*": dict(_BINARY)}
        part["content"] = {"*/*": dict(_BINARY), "multipart/byteranges": dict(_BINARY)}
    return {"200": whole, "206": part}


def _events() -> dict[str, Any]:
    return {
        "200": {
            "description": "Server-Sent Events, one per event (`id:` its position, `event:` its"
            " type, `data:` its JSON envelope), held open; resume with Last-Event-ID",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }


def _tus(status: str, description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return {status: {"description": description, "headers": dict(_TUS_HEADERS) | headers}}


# Success answers that are not JSON, which Litestar documents as `application/json` with an
# empty schema (it sees only a Response): (method, path) -> the responses to put instead.
# A client generated from the document would otherwise try to parse bytes as JSON.
_SUCCESS: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/v1/files/{file_id}/content"): _content(head=False),
    ("head", "/v1/files/{file_id}/content"): _content(head=True),
    ("get", "/v1/buckets/{name}/objects/{key}"): _content(head=False),
    ("head", "/v1/buckets/{name}/objects/{key}"): _content(head=True),
    ("get", "/v1/events"): _events(),
    ("get", "/v1/uploads/{upload_id}/events"): _events(),
    ("get", "/v1/tasks/{task_id}/events"): _events(),
    ("get", "/v1/fetches/{fetch_id}/events"): _events(),
    ("post", "/v1/tus"): _tus(
        "201",
        "Created, no body (Location: the upload's URL; with creation-with-upload,"
        " Upload-Offset: the bytes stored)",
        Location=_header("The upload's URL", "uri"),
    ),
    ("head", "/v1/tus/{upload_id}"): _tus(
        "200",
        "The upload's state in headers, no body",
        **{
            "Upload-Length": _header("The declared length (absent while deferred)", "int64"),
            "Upload-Defer-Length": _header("1 while the length is not declared yet"),
            "Upload-Metadata": _header("As sent on creation"),
            "Cache-Control": _header("no-store"),
        },
    ),
    ("patch", "/v1/tus/{upload_id}"): _tus("204", "The bytes are durable, no body"),
    ("delete", "/v1/tus/{upload_id}"): {"204": {"description": "Terminated, no body"}},
    ("post", "/v1/tus/{upload_id}"): _tus(
        "204", "As the overridden method (X-HTTP-Method-Override) answers, no body"
    ),
}


def _set_success(paths: dict[str, Any]) -> None:
    for (method, path), responses in _SUCCESS.items():
        op = paths.get(path, {}).get(method)
        if op is None:
            continue
        for status in [s for s in op["responses"] if s.startswith("2")]:
            del op["responses"][status]
        op["responses"].update(copy.deepcopy(responses))


def _finish(doc: dict[str, Any]) -> dict[str, Any]:
    _move_endings(doc.get("paths", {}))
    _set_success(doc.get("paths", {}))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = _ERROR_SCHEMA
    for body in STRICT_BODIES:
        if body.__name__ in schemas:
            schemas[body.__name__]["additionalProperties"] = False
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses: dict[str, Any] = op["responses"]
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    response["content"] = _error_content()
            wanted = {500}
            if op.get("parameters") or op.get("requestBody"):
                wanted.add(400)
            if op.get("security") or doc.get("security"):
                # 400 too: an API key and a bearer token together are ambiguous_credentials.
                wanted.update((400, 401))
            if "{" in path:
                wanted.add(404)
            if path.startswith("/v1/"):
                wanted.add(503)
                if method in _CHANGES and not path.startswith("/v1/admin/"):
                    wanted.add(409)
            for status_code in sorted(wanted):
                responses.setdefault(
                    str(status_code),
                    {"description": _STANDARD[status_code], "content": _error_content()},
                )
    return doc


_DONE: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}


def cairn_document(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated document with Cairn's error shape everywhere (a copy, made once per
    generated document: Litestar generates it once and hands the same dict over)."""
    hit = _DONE.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    done = _finish(copy.deepcopy(schema))
    _DONE.clear()
    _DONE[id(schema)] = (schema, done)
    return done


class CairnJson(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, cairn_document(openapi_schema))


class CairnSwagger(SwaggerRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, cairn_document(openapi_schema))


# Litestar's schema router answers any other one-segment path under /schema with its own
# HTML 404 page (a catch-all route); Cairn's unknown paths are all the JSON 404.
_CATCH_ALL = "/{path:str}"


def _no_html_404(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard of the schema router: the catch-all's request is the JSON 404 (api/errors.py)
    like any unknown path; the document, the viewer and the assets pass."""
    if _CATCH_ALL in getattr(handler, "paths", ()):
        raise NotFoundException()


def openapi_config(version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        openapi_router=Router(
            "/schema", route_handlers=[], guards=[_no_html_404], include_in_schema=False
        ),
        title="Cairn",
        version=version,
        description="A self-hosted file service: resumable chunked and tus uploads, files."
        " Authenticate with `Authorization: Bearer <JWT>` or `X-API-Key`; every error is"
        ' `{"error": {"code", "message", "details"}, "request_id"}`. Every path that'
        " answers GET answers HEAD too (RFC 9110 9.1): the GET's status and headers, no"
        " body.",
        path="/schema",
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="A JWT with `sub` (the user) and optionally `roles: [admin]`"
                    " (`just token alice` prints one).",
                ),
                "apiKey": SecurityScheme(
                    type="apiKey",
                    name="X-API-Key",
                    security_scheme_in="header",
                    description="A key from CAIRN_API_KEYS.",
                ),
            }
        ),
        render_plugins=[
            CairnSwagger(
                path=["/swagger", "/"],
                js_url=f"{ASSETS}/swagger-ui-bundle.js",
                css_url=f"{ASSETS}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
            ),
            CairnJson(),
        ],
    )
