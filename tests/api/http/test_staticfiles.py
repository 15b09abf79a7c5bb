"""The static files the API serves itself (the console, api/console/mount.py; the docs'
assets, api/routes/docs.py) through api/http/staticfiles.py: a path no file can have is a
404 like any missing file. Each of these was a 500: a path through a file (stat's
NotADirectoryError), a name over 255 bytes (ENAMETOOLONG), a NUL (ValueError)."""

from __future__ import annotations

import pytest

from tests.api.answers import assert_error
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize(
    "path",
    [
        "/console/index.html%00.js",
        "/console/index.html/x",
        "/console/" + "a" * 300,
        "/schema/assets/swagger-ui.css/x",
        "/schema/assets/" + "b" * 300 + "/c",
        "/console/%00",
        "/console/js/%00/x",
        "/schema/assets/swagger-ui.css%00",
        "/schema/assets/%00",
    ],
)
async def test_a_path_no_file_can_have_is_a_404(shared_system: System, path: str) -> None:
    async with shared_system.client(None) as c:
        for method in ("GET", "HEAD"):
            r = await c.request(method, path)
            assert r.status_code == 404, (method, r.status_code, r.text)
        assert_error(await c.get(path), 404, "not_found")
        # The files themselves are still served.
        assert (await c.get("/console/")).status_code == 200
        assert (await c.get("/schema/assets/swagger-ui.css")).status_code == 200
