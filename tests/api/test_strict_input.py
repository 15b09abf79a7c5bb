"""Strict input: typos, wrong types, odd encodings and out-of-range numbers are 400s in the
one error shape that name what is wrong, and leave nothing behind."""

from __future__ import annotations

import base64
import os
import secrets
import time

import jwt
import pytest

from api.auth import Authenticator
from api.errors import ApiError
from bus.config.settings import Settings
from tests.api.answers import user
from tests.api.test_bad_input import CHUNK, assert_error, new_upload
from tests.system import System

pytestmark = pytest.mark.asyncio(loop_scope="session")

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"file_name": "a", "file_size": 5, "chunksize": 3}, "chunksize"),
        ({"file_name": "a", "file_size": "5"}, "file_size"),
        ({"file_name": "a", "file_size": 5.0}, "file_size"),
        ({"file_name": "a", "file_size": True}, "file_size"),
        ({"file_name": "a", "file_size": 5, "chunk_size": "3"}, "chunk_size"),
        ({"file_name": "a", "file_size": 5, "metadata": {"k": 1}}, "metadata"),
        ({"file_name": "a", "file_size": 1 << 64}, "file_size"),
        ({"file_name": "a", "file_size": -(1 << 64)}, "file_size"),
        ({"file_name": "a", "file_size": 5, "chunk_size": 10**30}, "chunk_size"),
        ({"file_size": 5}, "file_name"),
    ],
)
async def test_create_names_the_wrong_field(shared_system: System, body: dict, field: str) -> None:
    async with shared_system.client(user()) as c:
        # With an Idempotency-Key too: the key's fingerprint must not see unchecked numbers.
        for headers in ({}, {"Idempotency-Key": secrets.token_hex(8)}):
            r = await c.post("/v1/uploads", json=body, headers=headers)
            err = assert_error(r, 400)["error"]
            assert err["code"] in ("validation_error", f"invalid_{field}")
            assert field in err["message"] and err["details"]["field"].startswith(field)
        assert (await c.get("/v1/uploads")).json()["total"] == 0


@pytest.mark.parametrize(
    "raw, code, says",
    [
        (b"", "empty_body", "empty"),
        (b"   ", "empty_body", "empty"),
        (b'{"file_name": "a\xff\xfe", "file_size": 1}', "malformed_json", "UTF-8"),
        (b"\xff\xfe{}", "malformed_json", "JSON"),
        (b"{not json", "malformed_json", "JSON"),
        (b"null", "validation_error", "object"),
        (b"[1]", "validation_error", "object"),
    ],
)
async def test_create_refuses_bodies_that_are_not_an_object(
    shared_system: System, raw: bytes, code: str, says: str
) -> None:
    async with shared_system.client(user()) as c:
        for headers in ({}, {"Idempotency-Key": secrets.token_hex(8)}):
            r = await c.post(
                "/v1/uploads",
                content=raw,
                headers={"Content-Type": "application/json", **headers},
            )
            assert says in assert_error(r, 400, code)["error"]["message"]
        r = await c.post("/v1/uploads")  # no body, no content type at all
        assert "empty" in assert_error(r, 400, "empty_body")["error"]["message"]
        assert (await c.get("/v1/uploads")).json()["total"] == 0


@pytest.mark.parametrize(
    "raw, field",
    [
        (b'{"file_name": "a", "file_size": 1, "file_size": 5000}', "file_size"),
        (b'{"file_name": "a", "file_size": 1, "file_\\u0073ize": 5000}', "file_size"),
        (b'{"file_name": "a", "file_size": 1, "metadata": {"k": "1", "k": "2"}}', "metadata.k"),
    ],
)
async def test_a_key_twice_in_one_object_is_refused(
    shared_system: System, raw: bytes, field: str
) -> None:
    """The decoder kept the last of a key given twice and dropped the other silently, while
    another reader of the same body (a proxy, a log, a WAF) may keep the first: the body
    is ambiguous, so it is refused, naming the key, and nothing is created."""
    async with shared_system.client(user()) as c:
        for headers in ({}, {"Idempotency-Key": secrets.token_hex(8)}):
            r = await c.post(
                "/v1/uploads", content=raw, headers={"Content-Type": "application/json", **headers}
            )
            err = assert_error(r, 400, "duplicate_key")["error"]
            assert err["details"] == {"field": field}, err
        assert (await c.get("/v1/uploads")).json()["total"] == 0
        # The same object with the key once is taken.
        r = await c.post("/v1/uploads", json={"file_name": "a", "file_size": 1})
        assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "name",
    ["a/b", "../../etc/passwd", "/abs", "a\\b", "..", ".", "...", "a\nb", "tab\there", "\x7f"],
)
async def test_file_names_are_names_not_paths(shared_system: System, name: str) -> None:
    async with shared_system.client(user()) as c:
        r = await c.post("/v1/uploads", json={"file_name": name, "file_size": 1})
        message = assert_error(r, 400, "invalid_file_name")["error"]["message"]
        assert "control characters" in message or "not a path" in message
        # tus names its upload from the `filename` metadata: the same rule
        encoded = base64.b64encode(name.encode()).decode()
        r = await c.post(
            "/v1/tus",
            headers={**TUS, "Upload-Length": "1", "Upload-Metadata": f"filename {encoded}"},
        )
        assert_error(r, 400, "invalid_file_name")
        assert (await c.get("/v1/uploads")).json()["total"] == 0
    async with shared_system.client(user()) as c:
        for ok in ("..a", "a..b", "résumé (final).pdf", ".hidden"):
            r = await c.post("/v1/uploads", json={"file_name": ok, "file_size": 1})
            assert r.status_code == 201, r.text


@pytest.mark.parametrize("path", ["/v1/uploads", "/v1/files"])
async def test_list_endpoints_refuse_unknown_query_parameters_and_bound_paging(
    shared_system: System, path: str
) -> None:
    async with shared_system.client(user()) as c:
        r = await c.get(path, params={"name": "x", "limit": 5})
        err = assert_error(r, 400, "unknown_query_parameter")["error"]
        assert err["details"]["unknown"] == ["name"] and "name" in err["message"]
        # An injected dependency (the caller) is no query parameter: neither listed as
        # one nor accepted as one.
        assert "principal" not in err["details"]["allowed"] and "limit" in err["details"]["allowed"]
        r = await c.get(path, params={"principal": "someone-else"})
        assert assert_error(r, 400, "unknown_query_parameter")["error"]["details"]["unknown"] == [
            "principal"
        ]
        for params in (
            {"offset": str(1 << 63)},
            {"offset": str(1 << 64)},
            {"offset": "9" * 40},
            {"offset": "-1"},
            {"limit": str(1 << 63)},
            {"limit": "1001"},
            {"limit": "0"},
            {"limit": "x"},
        ):
            assert_error(await c.get(path, params=params), 400)
        r = await c.get(path, params={"offset": str((1 << 63) - 1), "limit": 1000})
        assert r.status_code == 200 and r.json()["items"] == []


async def test_wrong_chunk_size_details_are_numbers_and_inactive_uploads_say_so(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        up = await new_upload(c, CHUNK * 2)
        uid = up["id"]
        r = await c.put(f"/v1/uploads/{uid}/chunks/0", content=b"x" * 10)
        details = assert_error(r, 400, "wrong_chunk_size")["error"]["details"]
        assert details == {"index": 0, "expected": CHUNK, "received": 10}

        async def streamed():  # no Content-Length: the size is only known by reading
            yield b"x" * (CHUNK + 1)

        r = await c.put(f"/v1/uploads/{uid}/chunks/0", content=streamed())
        details = assert_error(r, 400, "wrong_chunk_size")["error"]["details"]
        assert details == {"index": 0, "expected": CHUNK}

        assert (await c.delete(f"/v1/uploads/{uid}")).json()["status"] == "ABORTED"
        r = await c.put(f"/v1/uploads/{uid}/chunks/0", content=b"x" * 10)
        assert_error(r, 409, "upload_not_active")
        r = await c.put(f"/v1/uploads/{uid}/chunks/0", content=os.urandom(CHUNK))
        assert_error(r, 409, "upload_not_active")


async def test_tus_creation_answers_an_empty_body_and_termination_of_a_finished_upload(
    shared_system: System,
) -> None:
    async with shared_system.client(user()) as c:
        r = await c.post("/v1/tus", headers={**TUS, "Upload-Length": "3"})
        assert r.status_code == 201 and r.content == b""
        location = r.headers["location"]
        r = await c.patch(
            location,
            content=b"abc",
            headers={
                **TUS,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert r.status_code == 204, r.text
        uid = location.rsplit("/", 1)[1]
        file_id = (await c.get(f"/v1/uploads/{uid}")).json()["file_id"]
        assert file_id
        r = await c.delete(location, headers=TUS)
        assert r.status_code == 204, r.text
        assert r.headers["tus-resumable"] == "1.0.0"
        # the file made of the upload stays
        assert (await c.get(f"/v1/files/{file_id}/content")).content == b"abc"
        # another user's finished upload is still not theirs to terminate
        async with shared_system.client(user()) as other:
            assert_error(await other.delete(location, headers=TUS), 404, "upload_not_found")


def _token(secret: str, **claims: object) -> str:
    return jwt.encode({"sub": "alice", **claims}, secret, algorithm="HS256")


async def test_jwts_without_exp_are_refused_unless_allowed() -> None:
    secret = "s" * 40
    strict = Authenticator(Settings(jwt_secret=secret))
    lenient = Authenticator(Settings(jwt_secret=secret, jwt_allow_no_exp=True))
    forever = _token(secret)
    with pytest.raises(ApiError) as refused:
        strict.authenticate({"authorization": f"Bearer {forever}"})
    assert refused.value.status == 401 and "exp" in refused.value.message
    assert lenient.authenticate({"authorization": f"Bearer {forever}"}).user == "alice"
    expiring = _token(secret, exp=int(time.time()) + 60)
    assert strict.authenticate({"authorization": f"Bearer {expiring}"}).user == "alice"
    assert Settings.from_env({"CAIRN_JWT_ALLOW_NO_EXP": "1"}).jwt_allow_no_exp
    assert not Settings.from_env({}).jwt_allow_no_exp


@pytest.mark.parametrize(
    "method, path, body, field",
    [
        (
            "POST",
            "/v1/uploads",
            {"file_name": "n", "file_size": 1, "metadata": {"a": "x\0y"}},
            "metadata.a",
        ),
        (
            "POST",
            "/v1/uploads",
            {"file_name": "n", "file_size": 1, "metadata": {"k\0": "v"}},
            "metadata.k\\0",
        ),
        ("POST", "/v1/buckets", {"name": "nul-desc", "description": "x\0"}, "description"),
        ("POST", "/v1/tasks", {"type": "delete", "params": {"files": ["a\0"]}}, "params.files[0]"),
    ],
)
async def test_a_nul_in_any_text_is_a_400_naming_where_and_the_service_goes_on(
    shared_system: System, method: str, path: str, body: dict, field: str
) -> None:
    # PostgreSQL stores no NUL: before this, such a command failed its append for ever and
    # held up every command behind it (503 for everyone until a restart).
    async with shared_system.client(user()) as c:
        r = await c.request(method, path, json=body)
        top = field.split(".")[0].split("[")[0]
        err = assert_error(r, 400, f"invalid_{top}")["error"]
        assert err["details"] == {"field": field} and "NUL" in err["message"]
        # "\\u0000" spelled out is text like any other, and the next command is served.
        ok = await c.post(
            "/v1/uploads", json={"file_name": "n", "file_size": 1, "metadata": {"a": "\\u0000"}}
        )
        assert ok.status_code == 201, ok.text
        assert ok.json()["id"]
