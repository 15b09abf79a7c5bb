"""copy, move and delete: one item per file, no bytes copied.

A copy is a new file whose manifest is the source's (content-addressed chunks stay stored
once; the garbage collector keeps a chunk while any file names it). A move is that copy
followed by deleting the source; a delete is DeleteFile. Each command has an id derived
from (task, item, step), so doing an item again after a takeover or resume changes
nothing. An item that cannot be done (its file is gone) is recorded as failed and the
task goes on; the quota failing stops the whole task (what it would create is refused).

Name collisions (copy, move; extract uses the same rule). `overwrite` false (the
default): when a run starts (first time, resume, takeover), the names the remaining items
would create are looked up among the owner's live files in the destination bucket (the
files read model); if any is taken, the task fails with `target_exists` naming them,
before it writes anything more. Files this task made itself are not collisions, nor is a
move's own source. `overwrite` true: each item replaces those files: the new file is
created, then the ones found at the start are deleted (command ids derived from the item,
so a takeover deletes each once); the item's result lists them in `replaced`.

Objects into a bucket (handlers/tasks/object_copies.py): a source that is an object,
copied into a real bucket, becomes an object there (`put_object`, one step: a new key, or
with `overwrite` a new version of the live one), not a plain file; its collisions are
decided by key, with the same rule.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bus.config.settings import Settings
from domain import policies
from domain.commands import CreateFile, DeleteFile
from domain.errors import DomainError
from domain.files import FileState
from domain.files.events import FileReplaced
from domain.files.keys import object_file_id
from domain.registry import AGGREGATES
from domain.tasks.ids import item_command_id, item_file_id
from handlers.destination import bucket_gone
from handlers.held import upgrade_in_progress
from handlers.tasks import object_copies
from handlers.tasks.run import TaskFailure, TaskRun, destination_gone, utcnow
from projections import task_queries
from projections.usage import (
    QUOTA_EXCEEDED,
    key_holds,
    over_quota,
    release,
    reserve,
    storage_used,
)

T = TypeVar("T")

MAX_NAMED = 20  # colliding names listed in a target_exists error
DELETE_BATCH = 50  # a delete's files read in one query, between two safe points
COPY_BATCH = 50  # a copy's or move's files (and their copies) read in one query, likewise
IN_FLIGHT = 8  # a delete's commands, or a copy's items, under way at once
REPLACED = FileReplaced.type  # what a put that replaced a live object appended


async def load_file(run: TaskRun, file_id: str) -> FileState | None:
    events = await run.store.read_stream(AGGREGATES["files"].stream_id(file_id))
    st: FileState | None = AGGREGATES["files"].fold(events)
    if st is None or st.deleted or st.owner != run.state.owner:
        return None
    return st


async def load_files(run: TaskRun, file_ids: list[str]) -> list[FileState | None]:
    """`load_file` of each, read in one query."""
    spec = AGGREGATES["files"]
    streams = await run.store.read_streams([spec.stream_id(f) for f in file_ids])
    out: list[FileState | None] = []
    for file_id in file_ids:
        st: FileState | None = spec.fold(streams.get(spec.stream_id(file_id), []))
        out.append(None if st is None or st.deleted or st.owner != run.state.owner else st)
    return out


async def check_destination(run: TaskRun, bucket: str) -> None:
    """The bucket the task writes into is still the one it was made for (api/taskparams.py
    checked it then). Names are global: deleted while the task waited and made again by
    someone else, it is their bucket, and the task's files or objects (an overwrite
    replacing theirs) went into it. Gone, or not the owner's (a task names its owner's
    buckets only, admin or not), it is refused like a missing one. The run's safe points
    ask again while it writes (TaskRun.check): a bucket deleted mid-run stops it."""
    if await bucket_gone(run.store, bucket, run.state.owner):
        raise destination_gone(bucket)
    run.destination = bucket


async def check_quota(
    run: TaskRun, settings: Settings, requested: int, *, put: str | None = None
) -> None:
    """Refuse (quota_exceeded) `requested` more bytes past the owner's quota; nothing is
    held (a check before the work, `quota_for_file` holds when the file is made).

    `put`: the object (file id) the bytes are to be put to, replacing what its key holds:
    only what they add to the key is asked (`key_holds`, as `reserve` with `target` asks
    for `quota_for_file(put=True)` and an object PUT), and a put adding nothing passes."""
    quota = settings.quota_for(run.state.owner)
    if quota <= 0 or requested <= 0:
        return
    replaced = 0
    async with run.pool.acquire() as conn:
        used = await storage_used(run.store, run.state.owner, conn=conn)
        if put is not None:
            replaced = (await key_holds(conn, run.state.owner, [put]))[put]
    asked = max(0, requested - replaced)
    if asked > 0 and (details := over_quota(quota, used, asked)) is not None:
        if replaced:
            details["replaced"] = replaced
        raise TaskFailure("quota_exceeded", QUOTA_EXCEEDED, dict(details))


@dataclass
class Hold:
    """What the block of `quota_for_file` tells it: the version an object put left."""

    version: int = 0


@contextlib.asynccontextmanager
async def quota_for_file(
    run: TaskRun, settings: Settings, requested: int, file_id: str, *, put: bool = False
) -> AsyncIterator[Hold]:
    """Check and hold `requested` bytes of the owner's quota for the file `file_id` the
    block makes (projections.usage.reserve: concurrent tasks, uploads and PUTs of one owner
    are decided one after another). The hold names the file from the start: it counts
    until the files read model has the file, which then counts instead (never both, though
    several items of a task are under way at once); ended by an error, it is given back.

    `put`: the block puts the object `file_id`, replacing what its key holds, and is asked
    only what it adds to the key, as an object PUT is (`reserve` with `target`): a copy
    overwriting an object of the same size passes at the quota, and the key is not
    counted twice meanwhile. The block sets `version` (the put's reply): the hold counts
    until the files read model has that version, as a PUT's does."""
    hold = Hold()
    quota = settings.quota_for(run.state.owner)
    if quota <= 0 or requested <= 0:
        yield hold
        return
    rid, details, _ = await reserve(
        run.store,
        run.state.owner,
        quota,
        requested,
        target=file_id if put else None,
        file_id=None if put else file_id,
    )
    if details is not None or rid is None:
        raise TaskFailure("quota_exceeded", QUOTA_EXCEEDED, dict(details or {}))
    made: str | None = None
    try:
        yield hold
        made = file_id
    finally:
        # Shielded: a task paused or cancelled meanwhile still settles its hold.
        version = hold.version if made is not None and hold.version > 0 else None
        await asyncio.shield(release(run.pool, rid, made, version))


def _missing(index: int, file_id: str) -> dict[str, Any]:
    return {
        "index": index,
        "source": file_id,
        "error": {"code": "file_not_found", "message": "no such file"},
    }


MAX_IN_MESSAGE = 3  # of those, named in the message (`cairn tasks` prints it, not details)


def target_exists(bucket: str, taken: list[str]) -> TaskFailure:
    named = ", ".join(repr(n[:100]) for n in taken[:MAX_IN_MESSAGE])
    more = ", ..." if len(taken) > MAX_IN_MESSAGE else ""
    return TaskFailure(
        "target_exists",
        f"{len(taken)} name(s) exist in bucket {bucket!r} ({named}{more}); set overwrite: true"
        " to replace them",
        {"bucket": bucket, "names": taken[:MAX_NAMED], "count": len(taken), "overwrite": False},
    )


async def replace_files(run: TaskRun, index: int, old: list[str]) -> list[str]:
    """Delete the files item `index`'s new file replaces (overwrite: true)."""
    for fid in old:
        try:
            await run.send(
                DeleteFile(
                    aggregate_id=fid,
                    caller=run.state.owner,
                    at=utcnow(),
                    command_id=item_command_id(run.task_id, index, f"replace-{fid}"),
                )
            )
        except DomainError as e:
            if upgrade_in_progress(e):
                raise  # not deleted: the task waits for the new version (worker.py)
            # gone already: replaced all the same
    return old


async def _copy_collisions(
    run: TaskRun, files: list[str], objects: dict[int, str]
) -> dict[int, list[str]]:
    """item index -> live files in the destination its copy would collide with (plain-file
    sources; `objects`, the items copied as objects, have their own check)."""
    params = run.state.params
    to = params.get("to") or {}
    bucket = str(to.get("bucket") or "default")
    first = run.state.items_done
    sources = [f for i, f in enumerate(files[first:], start=first) if i not in objects]
    if not sources:
        return {}
    found = await task_queries.copy_collisions(
        run.pool, run.state.owner, sources, bucket, str(to.get("prefix") or "")
    )
    own = {item_file_id(run.task_id, i) for i in range(len(files))}
    if run.state.task_type == "move":
        own |= set(files)  # a move's source is going away: not in its own way
    out: dict[int, list[str]] = {}
    for i, fid in enumerate(files[first:], start=first):
        if i in objects:
            continue
        hits = [t for t in found.get(fid, []) if t not in own]
        if hits:
            out[i] = hits
    if out and not params.get("overwrite"):
        names = await task_queries.file_names(run.pool, [out[i][0] for i in sorted(out)])
        raise target_exists(bucket, sorted(set(names)))
    return out


async def _create_copy(
    run: TaskRun, index: int, src: FileState, new_id: str, params: dict[str, Any]
) -> None:
    to = params.get("to") or {}
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


async def _put_copy(
    run: TaskRun, index: int, src: FileState, bucket: str, key: str, hold: Hold
) -> bool:
    """The object copy of item `index`: `src`'s content (chunks shared, nothing moves),
    content type and metadata as the object `key` (no task marker is added: the user's
    metadata is the source's; the command id is the item's, object_copies.taken_keys).
    Whether it replaced a live object (its event a FileReplaced; sent again, the reply is
    the first one's); `hold` gets the version it left."""
    overwrite = bool(run.state.params.get("overwrite"))
    cmd = policies.object_from_file(
        src,
        bucket,
        key,
        owner=run.state.owner,
        caller=run.state.owner,
        at=utcnow(),
        if_none_match=not overwrite,
        command_id=object_copies.command_id(run, index),
    )
    try:
        result = await run.send(cmd)
    except DomainError as e:
        if e.code != "object_exists":
            raise
        if await run.store.applied_commands([cmd.command_id]):
            # This put itself, sent again (a takeover): done. Made with If-None-Match, it
            # created the key: it replaced nothing.
            return False
        raise target_exists(bucket, [key]) from None  # written by someone since the check
    hold.version = result.version
    return any(e.get("type") == REPLACED for e in result.events)


async def _delete_one(run: TaskRun, index: int, file_id: str) -> None:
    await run.send(
        DeleteFile(
            aggregate_id=file_id,
            caller=run.state.owner,
            at=utcnow(),
            command_id=item_command_id(run.task_id, index, "delete"),
        )
    )


async def _run_deletes(run: TaskRun, files: list[str]) -> None:
    """A delete, DELETE_BATCH files at a time: one query reads them, one safe point
    checks the task, and up to IN_FLIGHT of their commands are under way at once. A delete
    of 80,000 objects was, per object, a forced safe point (its task read again), a query
    for its file and a command waited for alone. Results are recorded in item order once
    the batch is done; a run that stops at the next safe point (pause, cancel) records the
    whole batch, and one cut short (a crash, the bus gone) sends the batch's commands again
    on the next run, which their ids make no-ops."""
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(index: int, file_id: str, st: FileState | None) -> dict[str, Any]:
        # Missing: deleted already (by this task before a crash, or by the owner): done.
        if st is not None:
            async with slots:
                try:
                    await _delete_one(run, index, file_id)
                except DomainError as e:
                    if upgrade_in_progress(e):
                        raise  # not the item's failure: the task waits (worker.py)
                    error = {"code": e.code, "message": str(e)}
                    return {"index": index, "source": file_id, "error": error}
        return {"index": index, "source": file_id, "result": "deleted"}

    for first in range(run.state.items_done, len(files), DELETE_BATCH):
        await run.check(force=True)
        batch = files[first : first + DELETE_BATCH]
        states = await load_files(run, batch)
        jobs = [
            asyncio.ensure_future(one(index, file_id, st))
            for index, (file_id, st) in enumerate(zip(batch, states, strict=True), first)
        ]
        results = await _all_or_none(jobs)
        for result in results:
            await run.item_done(result)


async def _run_copies(
    run: TaskRun,
    settings: Settings,
    files: list[str],
    taken: dict[int, list[str]],
    objects: dict[int, str],
) -> None:
    """A copy or move, COPY_BATCH files at a time, like a delete: one query reads the
    batch's files and the copies an earlier run of the task may have made of them, one
    safe point checks the task and the destination bucket (a bucket deleted mid-run stops
    the run before its next batch: CreateFile itself does not look at the bucket, so the
    copies a batch makes after the deletion are left to the orphan sweep, bus/orphans.py,
    which deletes them at the next cleanup), and up to IN_FLIGHT items are under way at once, each item's steps in order (its CreateFile,
    then the files it replaces, then a move's DeleteFile). Results are recorded in item
    order once the batch is done.

    A copy found made already (by a run that stopped before recording it) is not created
    again: its CreateFile, sent again under the same id, is refused with file_exists (the
    actor decides it against the stream it made), which recorded a done item as failed.
    The quota is held item by item in item order, as when items went one at a time: the
    first item refused fails the task, the items before it are recorded, none after it
    is begun.

    An item in `objects` (its source an object, its target that key) is put as an object:
    made already is its put's command id applied (read per batch, one query); with
    `overwrite` the put replaces a live object in one step, and the result's `replaced`
    names it when the put did replace one (its event a FileReplaced). That is read from
    what the put appended, not from the keys taken when the run started (a run taking
    over after the put sees the key held by the task's own object): so an item's result
    is the same whichever run made it."""
    kind = run.state.task_type
    bucket = str((run.state.params.get("to") or {}).get("bucket") or "default")
    slots = asyncio.Semaphore(IN_FLIGHT)
    quota = settings.quota_for(run.state.owner) > 0

    def finished_item(
        index: int, file_id: str, new_id: str, key: str | None, replaced: list[str]
    ) -> dict[str, Any]:
        """A done item's result: the copy, its key if an object, what it replaced."""
        result: dict[str, Any] = {"index": index, "source": file_id, "result": new_id}
        if key is not None:
            result["key"] = key
        if replaced:
            result["replaced"] = replaced
        return result

    async def one(
        index: int,
        file_id: str,
        src: FileState | None,
        made: bool,
        overwrote: bool,
        turn: asyncio.Event,
        after: asyncio.Event,
        refused: list[TaskFailure],
    ) -> tuple[dict[str, Any], int] | None:
        key = objects.get(index)
        new_id = item_file_id(run.task_id, index) if key is None else object_file_id(bucket, key)
        # Items take their quota in item order; one refused, none after it begins.
        await turn.wait()
        if refused:
            after.set()
            return None
        if src is None:
            after.set()
            if kind == "move" and made:
                # Moved by this task before: the copy exists, the source is gone.
                return finished_item(index, file_id, new_id, key, [new_id] if overwrote else []), 0
            return _missing(index, file_id), 0
        async with slots:
            try:
                needed = 0 if made else src.size  # made already: nothing more to hold
                try:
                    put = key is not None
                    async with quota_for_file(run, settings, needed, new_id, put=put) as hold:
                        after.set()
                        if not made and key is not None:
                            overwrote = await _put_copy(run, index, src, bucket, key, hold)
                        elif not made:
                            await _create_copy(run, index, src, new_id, run.state.params)
                except TaskFailure as e:
                    refused.append(e)
                    return None
                finally:
                    after.set()
                replaced = await replace_files(run, index, taken.get(index, []))
                if kind == "move":
                    await _delete_one(run, index, file_id)
            except DomainError as e:
                if upgrade_in_progress(e):
                    raise  # not the item's failure: the task waits (worker.py)
                error = {"code": e.code, "message": str(e)}
                return {"index": index, "source": file_id, "error": error}, 0
        if key is not None and overwrote:
            replaced = [new_id]  # (an object put replaces in place: no files were found)
        return finished_item(index, file_id, new_id, key, replaced), src.size

    for first in range(run.state.items_done, len(files), COPY_BATCH):
        await run.check(force=True)
        batch = files[first : first + COPY_BATCH]
        copies = [item_file_id(run.task_id, i) for i in range(first, first + len(batch))]
        states = await load_files(run, [*batch, *copies])
        sources, made = states[: len(batch)], [st is not None for st in states[len(batch) :]]
        # An object copy made already: its put's command id was applied, and it replaced
        # an object if it appended a FileReplaced (one query).
        overwrote = [False] * len(batch)
        puts = {
            i: object_copies.command_id(run, i)
            for i in range(first, first + len(batch))
            if i in objects
        }
        if puts:
            applied = await run.store.applied_event_types(list(puts.values()))
            for i, command_id in puts.items():
                made[i - first] = command_id in applied
                overwrote[i - first] = REPLACED in applied.get(command_id, ())
        turns = [asyncio.Event() for _ in range(len(batch) + 1)]
        turns[0].set()
        if not quota:
            for t in turns:
                t.set()
        refused: list[TaskFailure] = []
        jobs = [
            asyncio.ensure_future(
                one(
                    first + k,
                    batch[k],
                    sources[k],
                    made[k],
                    overwrote[k],
                    turns[k],
                    turns[k + 1],
                    refused,
                )
            )
            for k in range(len(batch))
        ]
        results = await _all_or_none(jobs)
        for done in results:
            if done is None:
                break
            await run.item_done(*done)
        if refused:
            raise refused[0]


async def run_file_items(run: TaskRun, settings: Settings) -> list[str]:
    kind = run.state.task_type
    files: list[str] = list(run.state.params.get("files") or [])
    if kind == "delete":
        await _run_deletes(run, files)
        await run.flush()
        return []
    to = run.state.params.get("to") or {}
    bucket = str(to.get("bucket") or "default")
    await check_destination(run, bucket)
    objects = await object_copies.plan(run, files, bucket)
    taken = await _copy_collisions(run, files, objects)
    if not run.state.params.get("overwrite") and (
        replacing := await object_copies.taken_keys(run, bucket, objects)
    ):
        raise target_exists(bucket, replacing)
    await _run_copies(run, settings, files, taken, objects)
    await run.flush()
    return []


async def _all_or_none(jobs: Sequence[asyncio.Future[T]]) -> list[T]:
    """The results of a batch's items run at once, in order; if one fails (the bus gone,
    say), the others are cancelled and waited for before its error is raised (the error
    itself, not a group of them), so the worker lets go of the task with none of its
    commands left behind."""
    try:
        return await asyncio.gather(*jobs)
    except BaseException:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        raise
