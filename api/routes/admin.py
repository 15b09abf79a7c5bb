"""Admin endpoints (admin role): rebuild a projection from the event store, run the cleanup."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from api.auth import Principal, require_admin
from api.commanding import SecuredController
from api.context import ctx
from api.errors import ApiError
from api.schemas import CleanupDone, Rebuilt, ok
from bus.maintenance import CleanupBusy, run_cleanup
from projections.rebuild import PROJECTIONS, rebuild_report


class AdminController(SecuredController):
    path = "/v1/admin"
    tags = ["admin"]

    @post(
        "/projections/{name:str}/rebuild",
        status_code=200,
        summary="Rebuild a read model from the log",
        responses={
            **ok(200, Rebuilt, "The read model was rebuilt"),
            403: ResponseSpec(None, description="The admin role is required"),
        },
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
        c = ctx(request)
        done = await rebuild_report(c.pool, name, c.settings)
        return {
            "projection": name,
            "events_applied": done.applied,
            "events_skipped": done.skipped,
        }

    @post(
        "/cleanup",
        status_code=200,
        summary="Expire stale uploads, delete orphaned files and collect garbage now",
        responses={403: ResponseSpec(None, description="The admin role is required")}
        | ok(200, CleanupDone, "The counts of this run"),
    )
    async def cleanup(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        """What the handlers process does every CAIRN_CLEANUP_INTERVAL; waits for a run in
        progress elsewhere to finish first. Answers the counts of this run."""
        require_admin(principal)
        c = ctx(request)
        try:
            report = await run_cleanup(c.settings, c.pool, c.bus, c.blobs, wait=True)
        except CleanupBusy:
            raise ApiError(
                503,
                "cleanup_busy",
                "another cleanup is still running; retry later",
                headers={"Retry-After": "10"},
            ) from None
        assert report is not None
        return report.as_dict()
