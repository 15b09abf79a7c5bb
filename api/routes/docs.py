"""The API's front door for people: `/` points at the docs, and the viewer's own assets.

Swagger UI's files come from the `swagger-ui-bundle-v2` wheel and are served from
`/schema/assets/`, so the docs render without reaching any CDN (offline installs)."""

from __future__ import annotations

from litestar import Router, get
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from api.http.staticfiles import StaticFileSystem
from api.openapi import ASSETS


@get("/", include_in_schema=False)
async def root() -> Redirect:
    """`GET /` sends a browser to the interactive API docs."""
    return Redirect("/schema/swagger", status_code=302)


def docs_assets() -> Router:
    return create_static_files_router(
        path=ASSETS,
        directories=[str(swagger_ui_path)],
        name="docs-assets",
        file_system=StaticFileSystem(),
    )
