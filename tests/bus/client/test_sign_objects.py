"""`cairn sign BUCKET/KEY` as a subprocess against a running Cairn: a signed URL for an
object (POST /v1/buckets/{name}/objects/{key}/signed-url) read without a token."""

from __future__ import annotations

from typing import Any

import httpx

from tests.bus.client.test_objects import _put
from tests.system import System


async def test_sign_an_object(system: System, cli_for: Any) -> None:
    user = "sign-obj-user"
    cli = cli_for(user)
    # Keys with folders: the key's `/`s stay in the URL.
    assert (await cli("buckets", "create", "signed-things")).code == 0
    await _put(system, user, "signed-things", "deep/er/o.txt", b"an object\n")
    obj = await cli("sign", "signed-things/deep/er/o.txt", "--expires", "90")
    assert obj.code == 0, obj.err
    async with httpx.AsyncClient() as anon:
        r = await anon.get(obj.out.strip())
        assert r.status_code == 200 and r.content == b"an object\n"

    # Any key of one's own bucket can be signed (the object may come later); the URL
    # answers 404 until it exists. Another user's bucket is 404 at once.
    later = await cli("sign", "signed-things/no/such.txt")
    assert later.code == 0, later.err
    async with httpx.AsyncClient() as anon:
        assert (await anon.get(later.out.strip())).status_code == 404
    theirs = await cli_for("sign-obj-other")("sign", "signed-things/deep/er/o.txt")
    assert theirs.code == 3, theirs.err
