"""The OpenAPI document is complete and valid, and its viewer works without the internet."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from tests.api.answers import assert_error
from tests.api.documented import assert_documented
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
ERROR_REF = "#/components/schemas/Error"
# The operations that also answer without credentials (public buckets, signed URLs).
ANONYMOUS_OK = {
    ("get", "/v1/files/{file_id}"),
    ("get", "/v1/files/{file_id}/content"),
    ("head", "/v1/files/{file_id}/content"),
    ("get", "/v1/buckets/{name}/objects"),
    ("get", "/v1/buckets/{name}/objects/{key}"),
    ("head", "/v1/buckets/{name}/objects/{key}"),
    ("put", "/v1/buckets/{name}/objects/{key}"),  # with a signed PUT URL
}


async def _document(system: System) -> dict:
    async with system.client(None) as c:
        r = await c.get("/schema/openapi.json")
        assert r.status_code == 200
        return r.json()


async def test_the_document_validates_and_describes_security_bodies_and_errors(
    shared_system: System,
) -> None:
    doc = await _document(shared_system)
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"} | {
        "description": schemes["bearer"]["description"]
    }
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"

    operations = [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]
    assert len(operations) > 15
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        if path.startswith("/v1/"):
            secured = [{"bearer": []}, {"apiKey": []}]
            # Public reads and signed URLs: credentials optional (`{}`), and only there.
            if (method, path) in ANONYMOUS_OK:
                secured.append({})
            assert op.get("security") == secured, where
            assert "401" in op["responses"] and "503" in op["responses"], where
            # Any request with credentials may carry two kinds: 400 ambiguous_credentials.
            assert "400" in op["responses"], where
        assert "500" in op["responses"], where
        for status, response in op["responses"].items():
            if status[0] in "45":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (where, status)
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "request_id"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]

    paths = doc["paths"]
    # The object signing route takes the whole path; documented with its fixed ending.
    assert set(paths["/v1/buckets/{name}/objects/{key}/signed-url"]) == {"post"}
    assert "post" not in paths["/v1/buckets/{name}/objects/{key}"]
    assert "403" in paths["/v1/files/{file_id}/content"]["get"]["responses"]
    chunk = paths["/v1/uploads/{upload_id}/chunks/{index}"]["put"]
    assert chunk["requestBody"]["required"] is True
    assert set(chunk["requestBody"]["content"]) == {"application/octet-stream"}
    patch = paths["/v1/tus/{upload_id}"]["patch"]
    assert set(patch["requestBody"]["content"]) == {"application/offset+octet-stream"}
    create = paths["/v1/uploads"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    create_schema = doc["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert create_schema["additionalProperties"] is False
    assert set(create_schema["required"]) == {"file_name", "file_size"}
    # success responses carry real schemas
    for path, method, status in [
        ("/v1/uploads", "post", "201"),
        ("/v1/uploads", "get", "200"),
        ("/v1/uploads/{upload_id}", "get", "200"),
        ("/v1/uploads/{upload_id}/chunks/{index}", "put", "201"),
        ("/v1/uploads/{upload_id}/complete", "post", "200"),
        ("/v1/files", "get", "200"),
        ("/v1/files/{file_id}", "get", "200"),
    ]:
        schema = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]
        ref = schema["$ref"].rsplit("/", 1)[1]
        assert doc["components"]["schemas"][ref]["properties"], (path, method)
    assert "Idempotency-Key" in {p["name"] for p in create.get("parameters", [])}
    assert "quota_exceeded" in create["responses"]["413"]["description"]
    # The limits a route answers are documented on it, in the one error shape.
    for path, method in [
        ("/v1/uploads/{upload_id}/chunks/{index}", "put"),
        ("/v1/tus", "post"),
        ("/v1/tus/{upload_id}", "patch"),
        ("/v1/buckets/{name}/objects/{key}", "put"),
    ]:
        assert "too_many_requests" in paths[path][method]["responses"]["429"]["description"]
        assert "quota_exceeded" in paths[path][method]["responses"]["413"]["description"]
    for path in [
        "/v1/events",
        "/v1/uploads/{upload_id}/events",
        "/v1/tasks/{task_id}/events",
        "/v1/fetches/{fetch_id}/events",
    ]:
        responses = paths[path]["get"]["responses"]
        assert "too_many_streams" in responses["429"]["description"], path
        assert "events_busy" in responses["503"]["description"], path
    assert "429" not in paths["/v1/uploads"]["get"]["responses"]


async def test_swagger_ui_is_served_from_cairn_itself(shared_system: System) -> None:
    async with shared_system.client(None, follow_redirects=False) as c:
        r = await c.get("/")
        assert r.status_code in (302, 307) and r.headers["location"] == "/schema/swagger"
        page = await c.get("/schema/swagger")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert len(urls) >= 4, urls  # css, bundle, preset, favicon
        for url in urls:
            assert url.startswith("/schema/assets/"), f"not served by Cairn: {url}"
            asset = await c.get(url)
            assert asset.status_code == 200 and len(asset.content) > 100, url
        assert "SwaggerUIBundle" in page.text
        bundle = await c.get("/schema/assets/swagger-ui-bundle.js")
        assert b"SwaggerUIBundle" in bundle.content


def _success(doc: dict, method: str, path: str) -> dict:
    responses = doc["paths"][path][method]["responses"]
    return {status: r for status, r in responses.items() if status.startswith("2")}


async def test_success_answers_are_documented_as_they_are_sent(shared_system: System) -> None:
    """No 2xx under /v1/ is documented as JSON of any shape: JSON answers name a schema,
    downloads are bytes, tus answers are headers, event streams are text/event-stream."""
    doc = await _document(shared_system)
    vague = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS or not path.startswith("/v1/"):
                continue
            for status, response in _success(doc, method, path).items():
                for media, body in response.get("content", {}).items():
                    schema = body.get("schema", {})
                    if media == "application/json" and "$ref" not in schema:
                        if schema.get("type") != "array":
                            vague.append((method, path, status, schema))
            if method in ("post", "put", "patch", "delete") and not path.startswith("/v1/admin"):
                assert "409" in op["responses"], (method, path)
    assert vague == []
    for path in ("/v1/files/{file_id}/content", "/v1/buckets/{name}/objects/{key}"):
        got = _success(doc, "get", path)
        assert set(got) == {"200", "206"}, path
        assert got["200"]["content"]["*/*"]["schema"] == {"type": "string", "format": "binary"}
        assert "multipart/byteranges" in got["206"]["content"]
        assert "Content-Range" in got["206"]["headers"] and "ETag" in got["200"]["headers"]
        head = _success(doc, "head", path)
        assert set(head) == {"200", "206"} and "content" not in head["200"], path
    created = _success(doc, "post", "/v1/tus")["201"]
    assert "content" not in created and {"Location", "Upload-Offset"} <= set(created["headers"])
    patched = _success(doc, "patch", "/v1/tus/{upload_id}")
    assert set(patched) == {"204"} and "Upload-Offset" in patched["204"]["headers"]
    assert "Upload-Length" in _success(doc, "head", "/v1/tus/{upload_id}")["200"]["headers"]
    for path in ("/v1/events", "/v1/fetches/{fetch_id}/events"):
        assert set(_success(doc, "get", path)["200"]["content"]) == {"text/event-stream"}
    schemas = doc["components"]["schemas"]
    for method, path, status, name in [
        ("post", "/v1/fetches", "202", "FetchAccepted"),
        ("get", "/v1/fetches", "200", "FetchPage"),
        ("get", "/v1/fetches/{fetch_id}", "200", "Fetch"),
        ("post", "/v1/fetches/{fetch_id}/cancel", "200", "Fetch"),
        ("get", "/v1/tasks/stats", "200", "TaskStats"),
        ("post", "/v1/tasks/{task_id}/pause", "200", "TaskAccepted"),
    ]:
        ref = _success(doc, method, path)[status]["content"]["application/json"]["schema"]
        assert ref == {"$ref": f"#/components/schemas/{name}"}, (method, path)
        assert schemas[name]["properties"], name
    async with shared_system.client(None) as c:
        await assert_documented(c, "get", "/ready", await c.get("/ready"))


async def test_real_answers_fit_their_documented_schemas(shared_system: System) -> None:
    """A walk through buckets, objects, native uploads and files: every JSON answer fits the
    schema the document gives for its route and status (fetches and tasks: their tests)."""
    data = b"documented bytes"
    async with shared_system.client("openapi-walker") as c:

        async def call(method: str, path: str, url: str, **kw: object) -> dict:
            r = await c.request(method, url, **kw)  # type: ignore[arg-type]
            assert r.status_code < 300, (method, url, r.text)
            await assert_documented(c, method, path, r)
            return r.json()  # type: ignore[no-any-return]

        b = "documented"
        await call("post", "/v1/buckets", "/v1/buckets", json={"name": b})
        await call("get", "/v1/buckets", "/v1/buckets")
        await call("get", "/v1/buckets/{name}", f"/v1/buckets/{b}")
        await call("patch", "/v1/buckets/{name}", f"/v1/buckets/{b}", json={"description": "d"})
        key = "/v1/buckets/{name}/objects/{key}"
        await call("put", key, f"/v1/buckets/{b}/objects/a/b.txt", content=data)
        await call("get", "/v1/buckets/{name}/objects", f"/v1/buckets/{b}/objects")
        signed = {"method": "GET", "expires_in": 60}
        url = f"/v1/buckets/{b}/objects/a/b.txt/signed-url"
        await call("post", key + "/signed-url", url, json=signed)
        up = await call(
            "post", "/v1/uploads", "/v1/uploads", json={"file_name": "w.bin", "file_size": 16}
        )
        one = f"/v1/uploads/{up['id']}"
        await call("put", "/v1/uploads/{upload_id}/chunks/{index}", f"{one}/chunks/0", content=data)
        await call("get", "/v1/uploads/{upload_id}", one)
        await call("get", "/v1/uploads/{upload_id}/missing-chunks", f"{one}/missing-chunks")
        done = await call("post", "/v1/uploads/{upload_id}/complete", f"{one}/complete")
        await call("get", "/v1/uploads", "/v1/uploads")
        await call("get", "/v1/uploads/stats", "/v1/uploads/stats")
        f = f"/v1/files/{done['file_id']}"
        await call("get", "/v1/files", "/v1/files")
        await call("get", "/v1/files/{file_id}", f)
        await call("patch", "/v1/files/{file_id}", f, json={"name": "renamed.bin"})
        await call("post", "/v1/files/{file_id}/signed-url", f"{f}/signed-url", json=signed)
        await call("delete", "/v1/files/{file_id}", f)
        other = await call(
            "post", "/v1/uploads", "/v1/uploads", json={"file_name": "x.bin", "file_size": 3}
        )
        await call("delete", "/v1/uploads/{upload_id}", f"/v1/uploads/{other['id']}")
        r = await c.delete(f"/v1/buckets/{b}/objects/a/b.txt")
        assert r.status_code == 204 and not r.content
        await call("delete", "/v1/buckets/{name}", f"/v1/buckets/{b}")


@pytest.mark.parametrize(
    "path",
    ["/schema/nope", "/schema/swagger/x", "/schema/openapi.yaml", "/schema/nope/deeper"],
)
async def test_unknown_schema_paths_are_the_json_404(shared_system: System, path: str) -> None:
    """Litestar's schema router answered these with its own HTML 404 page; every other
    unknown path is the JSON 404 in the one error shape, and so are these now."""
    async with shared_system.client(None, follow_redirects=False) as c:
        r = await c.get(path)
        assert_error(r, 404, "not_found")
        assert r.headers["content-type"].startswith("application/json"), r.headers
        # What is there is still served.
        assert (await c.get("/schema/openapi.json")).status_code == 200
        assert (await c.get("/schema/swagger")).status_code == 200
        assert (await c.get("/schema/asyncapi.json")).status_code == 200
        assert (await c.get("/schema/assets/swagger-ui.css")).status_code == 200
