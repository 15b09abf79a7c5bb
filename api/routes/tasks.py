"""Background tasks: create (202), read, list, stats, pause / resume / cancel, live events.

A single task is read by folding its stream (consistent right after a command); lists
and stats come from the read model. The work itself is done by the task workers
(handlers/tasks/), never in the API process.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.auth import Principal
from api.commanding import SecuredController, load_owned, reply_state, send_as
from api.context import ctx
from api.idempotency import idempotent, resource_id
from api.paging import enum_query, page_response
from api.schemas import BIGINT_MAX, CreateTask, Task, TaskAccepted, TaskPage, TaskStats, ok
from api.taskparams import prepare
from bus.ids import uuid4_str
from domain.tasks import TYPES, TaskState
from domain.tasks.commands import CancelTask, PauseTask, ResumeTask
from domain.tasks.commands import CreateTask as CreateTaskCommand
from projections import task_queries
from projections.queries import ORDERS


def task_view(st: TaskState, results: bool = True) -> dict[str, Any]:
    """The task as the API answers it; without `results`, its per-item list is left out
    (a task of 1,000 files answers 121 KB with it, 40 KB without: a poller, such as the
    console's refresh on every task event or a script waiting for COMPLETED, needs none)."""
    view: dict[str, Any] = {
        "id": st.id,
        "type": st.task_type,
        "status": st.status.value,
        "priority": st.priority,
        "params": st.params,
        "progress": {
            "items_done": st.items_done,
            "items_total": st.items_total,
            "items_failed": st.items_failed,
            "bytes_done": st.bytes_done,
            "bytes_total": st.bytes_total,
            "percent": st.percent,
        },
        "result_file_ids": list(st.result_file_ids),
        "error": st.error,
        "attempts": st.attempts,
        "created_at": st.created_at.isoformat(),
        "updated_at": st.updated_at.isoformat(),
        "started_at": st.started_at.isoformat() if st.started_at else None,
        "finished_at": st.finished_at.isoformat() if st.finished_at else None,
    }
    if results:
        view["results"] = list(st.results)
    return view


_CONTROLLED = ok(200, TaskAccepted, "The task's id and its status after the command")


async def _load(request: Request[Any, Any, Any], raw: str, who: Principal) -> TaskState:
    st: TaskState = await load_owned(request, "tasks", raw, who)
    return st


class TasksController(SecuredController):
    path = "/v1/tasks"
    tags = ["tasks"]

    @post(
        "/",
        status_code=202,
        summary="Start a background task (copy, move, delete, compress, extract)",
        responses=ok(202, TaskAccepted, "The task is queued"),
    )
    @idempotent("create", 202)
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreateTask],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        c = ctx(request)
        params, items, size = await prepare(
            c, data.type, data.params, principal.user, principal.admin
        )
        task_id = resource_id(request) or uuid4_str()
        result = await send_as(
            request,
            principal,
            CreateTaskCommand,
            task_id,
            owner=principal.user,
            task_type=data.type,
            params=params,
            priority=data.priority,
            items_total=items,
            bytes_total=size,
        )
        st = reply_state(result)
        return Response(
            {"id": task_id, "status": st.get("status", "PENDING")},
            status_code=202,
            headers={"Location": f"/v1/tasks/{task_id}"},
        )

    @get(
        "/stats",
        summary="Task counts by type and status, bytes processed, recent activity",
        responses=ok(200, TaskStats, "The caller's tasks counted"),
    )
    async def stats(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> dict[str, Any]:
        return await task_queries.task_stats(ctx(request).pool, principal.user)

    @get(
        "/{task_id:str}",
        summary="A task: status, progress, per-item results, result files",
        responses=ok(200, Task, "The task"),
    )
    async def get_task(
        self,
        request: Request[Any, Any, Any],
        task_id: FromPath[str],
        principal: NamedDependency[Principal],
        results: Annotated[
            bool,
            QueryParameter(
                description="false: leave out the per-item `results` (for pollers of a big"
                " task: progress and status only)"
            ),
        ] = True,
    ) -> dict[str, Any]:
        return task_view(await _load(request, task_id, principal), results)

    @get(
        "/",
        summary="List the caller's tasks",
        responses=ok(200, TaskPage, "A page of tasks; X-Total-Count holds the total"),
    )
    async def list_tasks(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        type: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        sort: FromQuery[str] = "created_at",
        order: FromQuery[str] = "desc",
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=BIGINT_MAX)] = 0,
    ) -> Response[Any]:
        # Not an empty 200 for an unknown value: a typo would read as "no tasks" (and a
        # NUL was a 500).
        status = enum_query("status", status, task_queries.STATUSES)
        type = enum_query("type", type, TYPES)
        sort = enum_query("sort", sort, task_queries.TASK_SORTS)
        order = enum_query("order", order, ORDERS)
        return await page_response(
            task_queries.list_tasks(
                ctx(request).pool,
                principal.user,
                type=type,
                status=status,
                sort=sort,
                order=order,
                limit=limit,
                offset=offset,
            ),
            limit,
            offset,
        )

    async def _control(
        self, request: Request[Any, Any, Any], raw: str, who: Principal, cls: Any
    ) -> dict[str, Any]:
        st = await _load(request, raw, who)
        result = await send_as(request, who, cls, st.id)
        status = reply_state(result).get("status", st.status.value)
        return {"id": st.id, "status": status}

    @post(
        "/{task_id:str}/pause",
        status_code=200,
        summary="Pause (409 when finished)",
        responses=_CONTROLLED,
    )
    async def pause(
        self,
        request: Request[Any, Any, Any],
        task_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        return await self._control(request, task_id, principal, PauseTask)

    @post(
        "/{task_id:str}/resume",
        status_code=200,
        summary="Resume (409 when finished)",
        responses=_CONTROLLED,
    )
    async def resume(
        self,
        request: Request[Any, Any, Any],
        task_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        return await self._control(request, task_id, principal, ResumeTask)

    @post(
        "/{task_id:str}/cancel",
        status_code=200,
        summary="Cancel (409 when finished)",
        responses=_CONTROLLED,
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        task_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        return await self._control(request, task_id, principal, CancelTask)
