"""Admin endpoints (admin role): rebuild a projection from the event store."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from api.auth import Principal, provide_principal, require_admin
from api.context import ctx
from api.errors import ApiError
from projections.rebuild import PROJECTIONS, rebuild


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    dependencies = {"principal": Provide(provide_principal)}

    @post(
        "/projections/{name:str}/rebuild",
        status_code=200,
        summary="Rebuild a read model from the log",
    )
    async def rebuild_projection(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        require_admin(principal)
        if name not in PROJECTIONS:
            raise ApiError(
                404, "projection_not_found", "no such projection", {"known": sorted(PROJECTIONS)}
            )
        applied = await rebuild(ctx(request).pool, name)
        return {"projection": name, "events_applied": applied}
