"""Where a copy or move puts each source that is an object, and whether it may.

S3 clients (`aws s3 cp --recursive`, `mc cp -r`) expect a copy of objects into a bucket
to be objects there, listed by the bucket and keyed like their sources; a copy made plain
files named by each key's last segment (so `a/1.jpg` and `b/1.jpg` collided). Into a real
bucket (not `default`, which holds no objects) a source with a key becomes the object
`to.prefix + rel`: rel is its key with the task's source `prefix` removed (selected by
`bucket + prefix`, as `aws s3 cp --recursive s3://a/x/ s3://b/p/`), or the key's last
segment (selected by `files`, as `aws s3 cp s3://a/x/y.jpg s3://b/p/`). Plain-file sources
are copied as before (handlers/tasks/fileops.py).

The whole plan is made and checked when a run starts (first time, resume, takeover),
before anything more is written: a target key that is no key, two sources on one key, or
an object copied onto itself or onto another source of the task (`target_is_source`,
whatever `overwrite` says: see target_keys) fail the task; without `overwrite` a live object at a target
key fails it with `target_exists`, except one this task wrote itself before a takeover
(its item's command id is in the event store's applied commands: objects carry no task
marker, the user's metadata being the source's).
"""

from __future__ import annotations

from typing import Any

from domain.files import FileState
from domain.files.keys import object_file_id, object_key_problem
from domain.registry import AGGREGATES
from domain.tasks.ids import item_command_id
from handlers.tasks.run import TaskFailure, TaskRun
from projections import task_queries

STEP = "copy"  # the put's command id step: a plain copy's CreateFile uses it too


def command_id(run: TaskRun, index: int) -> str:
    return item_command_id(run.task_id, index, STEP)


def relative_key(key: str, source_prefix: str | None) -> str:
    """The part of a source key kept under `to.prefix` (`source_prefix` None: the task
    named `files`, and keeps the last segment)."""
    if source_prefix is None:
        return key.rsplit("/", 1)[-1]
    return key[len(source_prefix) :] if key.startswith(source_prefix) else key


def _refuse(code: str, message: str, **details: Any) -> TaskFailure:
    return TaskFailure(code, message, details)


def target_keys(
    files: list[str],
    keys: dict[str, str],
    source_prefix: str | None,
    to_bucket: str,
    to_prefix: str,
) -> dict[int, str]:
    """item index -> the key its source (an object: in `keys`) is copied to; raises the
    TaskFailure refusing the plan (a bad key, one key twice, an object onto a source)."""
    out: dict[int, str] = {}
    first: dict[str, int] = {}
    for index, file_id in enumerate(files):
        if (key := keys.get(file_id)) is None:
            continue
        target = to_prefix + relative_key(key, source_prefix)
        if problem := object_key_problem(target):
            raise _refuse(
                "invalid_key",
                f"the copy of {key!r} would be keyed {target!r}: {problem}",
                source=file_id,
                key=target,
            )
        if target in first:
            # Two sources, one key: the second would meet the first as a collision (or
            # replace it) half-way through. Refused before anything is written.
            raise _refuse(
                "duplicate_target",
                f"two sources would be copied to the key {target!r}",
                key=target,
                sources=[files[first[target]], file_id],
            )
        if (there := object_file_id(to_bucket, target)) in keys:
            # The target is a source of this task: itself (a move would delete what it just
            # wrote), or another item's (moving `a/` into `a/a/` of one bucket puts `a/1`
            # onto `a/a/1`, itself moved on to `a/a/a/1`). Items go several at once, so
            # whether that source were copied before being written over, and whether a
            # move's delete of it took the source or the copy just put there, would depend
            # on timing. Refused whatever `overwrite` says: no order-dependent outcome.
            onto = "itself" if there == file_id else f"the source {keys[there]!r} of this task"
            raise _refuse(
                "target_is_source",
                f"the object {key!r} would be copied onto {onto} (key {target!r} in bucket"
                f" {to_bucket!r}); copy to another prefix",
                source=file_id,
                key=target,
                conflicting_source=there,
            )
        first[target] = index
        out[index] = target
    return out


async def source_keys(run: TaskRun, files: list[str]) -> dict[str, str]:
    """file id -> key of the task's sources that are objects. From the files read model
    (deleted rows too: a resumed move's sources are gone by then, and an id's key never
    changes, being derived from it); an id it does not have yet (just written) is read
    from the event store."""
    keys, known = await task_queries.file_keys(run.pool, run.state.owner, files)
    missing = [f for f in files if f not in known]
    if missing:
        spec = AGGREGATES["files"]
        streams = await run.store.read_streams([spec.stream_id(f) for f in missing])
        for file_id in missing:
            st: FileState | None = spec.fold(streams.get(spec.stream_id(file_id), []))
            if st is not None and st.owner == run.state.owner and st.key is not None:
                keys[file_id] = st.key
    return keys


async def plan(run: TaskRun, files: list[str], bucket: str) -> dict[int, str]:
    """The target key of each item whose source is an object ({} into `default`)."""
    if bucket == "default":
        return {}
    keys = await source_keys(run, files)
    if not keys:
        return {}
    params = run.state.params
    source = params.get("source")
    source_prefix = str(source.get("prefix") or "") if isinstance(source, dict) else None
    to_prefix = str((params.get("to") or {}).get("prefix") or "")
    return target_keys(files, keys, source_prefix, bucket, to_prefix)


async def taken_keys(run: TaskRun, bucket: str, targets: dict[int, str]) -> list[str]:
    """The target keys of the items still to do that a live object holds, not written by
    this task (an earlier run's puts: their command ids were applied)."""
    left = {i: k for i, k in targets.items() if i >= run.state.items_done}
    if not left:
        return []
    live = await task_queries.live_keys(run.pool, bucket, list(left.values()))
    if not live:
        return []
    hits = {i: k for i, k in left.items() if k in live}
    own = await run.store.applied_commands([command_id(run, i) for i in hits])
    return sorted(k for i, k in hits.items() if command_id(run, i) not in own)
