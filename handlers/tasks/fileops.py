"""copy, move and delete: one item per file, no bytes copied.

A copy is a new file whose manifest is the source's (content-addressed chunks stay stored
once; the garbage collector keeps a chunk while any file names it). A move is that copy
followed by deleting the source; a delete is DeleteFile. Each command has an id derived
from (task, item, step), so doing an item again after a takeover or resume changes
nothing. An item that cannot be done (its file is gone) is recorded as failed and the
task goes on; the quota failing stops the whole task (what it would create is refused).
"""

from __future__ import annotations

from typing import Any

from bus.config.settings import Settings
from domain.commands import CreateFile, DeleteFile
from domain.errors import DomainError
from domain.files import FileState
from domain.registry import AGGREGATES
from domain.tasks.ids import item_command_id, item_file_id
from handlers.tasks.run import TaskFailure, TaskRun, utcnow
from projections.usage import storage_used


async def load_file(run: TaskRun, file_id: str) -> FileState | None:
    events = await run.store.read_stream(AGGREGATES["files"].stream_id(file_id))
    st: FileState | None = AGGREGATES["files"].fold(events)
    if st is None or st.deleted or st.owner != run.state.owner:
        return None
    return st


async def check_quota(run: TaskRun, settings: Settings, requested: int) -> None:
    quota = settings.quota_for(run.state.owner)
    if quota <= 0 or requested <= 0:
        return
    used = await storage_used(run.store, run.state.owner)
    if used + requested > quota:
        raise TaskFailure(
            "quota_exceeded",
            "the storage quota would be exceeded",
            {"quota": quota, "used": used, "requested": requested},
        )


def _missing(index: int, file_id: str) -> dict[str, Any]:
    return {
        "index": index,
        "source": file_id,
        "error": {"code": "file_not_found", "message": "no such file"},
    }


async def _copy_one(run: TaskRun, settings: Settings, index: int, src: FileState) -> str:
    to = run.state.params.get("to") or {}
    new_id = item_file_id(run.task_id, index)
    if settings.quota_for(run.state.owner) > 0 and await load_file(run, new_id) is None:
        await check_quota(run, settings, src.size)
    await run.send(
        CreateFile(
            aggregate_id=new_id,
            caller=run.state.owner,
            at=utcnow(),
            owner=run.state.owner,
            name=f"{to.get('prefix') or ''}{src.name}",
            size=src.size,
            content_type=src.content_type,
            sha256=src.sha256,
            manifest=[{"sha256": sha, "size": size} for sha, size in src.manifest],
            bucket=str(to.get("bucket") or "default"),
            metadata=dict(src.metadata),
            command_id=item_command_id(run.task_id, index, "copy"),
        )
    )
    return new_id


async def _delete_one(run: TaskRun, index: int, file_id: str) -> None:
    await run.send(
        DeleteFile(
            aggregate_id=file_id,
            caller=run.state.owner,
            at=utcnow(),
            command_id=item_command_id(run.task_id, index, "delete"),
        )
    )


async def run_file_items(run: TaskRun, settings: Settings) -> list[str]:
    kind = run.state.task_type
    files: list[str] = list(run.state.params.get("files") or [])
    for index in range(run.state.items_done, len(files)):
        await run.check(force=True)
        file_id = files[index]
        src = await load_file(run, file_id)
        if src is None:
            if kind == "delete":
                # Deleted already (by this task before a crash, or by the owner): done.
                await run.item_done({"index": index, "source": file_id, "result": "deleted"})
            elif kind == "move" and await _moved(run, index):
                # Moved by this task before a crash: the copy exists, the source is gone.
                new_id = item_file_id(run.task_id, index)
                await run.item_done({"index": index, "source": file_id, "result": new_id})
            else:
                await run.item_done(_missing(index, file_id))
            continue
        try:
            if kind == "delete":
                await _delete_one(run, index, file_id)
                await run.item_done({"index": index, "source": file_id, "result": "deleted"})
                continue
            new_id = await _copy_one(run, settings, index, src)
            if kind == "move":
                await _delete_one(run, index, file_id)
        except DomainError as e:
            await run.item_done(
                {"index": index, "source": file_id, "error": {"code": e.code, "message": str(e)}}
            )
            continue
        await run.item_done({"index": index, "source": file_id, "result": new_id}, src.size)
    await run.flush()
    return []


async def _moved(run: TaskRun, index: int) -> bool:
    """A move whose source is gone: done if this task's copy of it exists."""
    return await load_file(run, item_file_id(run.task_id, index)) is not None
