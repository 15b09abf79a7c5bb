"""A token minted for another data dir (another secret) gets a 401 that says so."""

from __future__ import annotations

import httpx

from bus.config.tokens import key_id, mint
from tests.system import System


async def test_token_from_another_data_dir_is_401_naming_the_cause(
    shared_system: System,
) -> None:
    other = mint("the secret of some other data dir", "alice", ttl=600)
    async with httpx.AsyncClient(base_url=shared_system.url, timeout=30) as c:
        r = await c.get("/v1/uploads", headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 401, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_token"
        assert "signed with another secret" in error["message"]
        assert key_id(shared_system.settings.resolved_jwt_secret()) in error["message"]

        # A token from the server's own secret still works (the kid is only a hint).
        ours = mint(shared_system.settings.resolved_jwt_secret(), "alice", ttl=600)
        r = await c.get("/v1/uploads", headers={"Authorization": f"Bearer {ours}"})
        assert r.status_code == 200, r.text
