"""`decide` for buckets: one small function per command, picked from a table."""

from __future__ import annotations

from domain.buckets.commands import MAX_DESCRIPTION, CreateBucket, DeleteBucket, UpdateBucket
from domain.buckets.events import BucketCreated, BucketDeleted, BucketUpdated
from domain.buckets.names import RESERVED, bucket_name_problem, bucket_not_found
from domain.buckets.state import BucketState
from domain.errors import Conflict, InvalidInput, NotFound
from domain.kernel import Command, Event, Step, by_command


def _not_found(cmd: Command) -> NotFound:
    return bucket_not_found(cmd.aggregate_id)


def _owned(state: BucketState | None, cmd: Command) -> BucketState:
    """The bucket if the caller owns it (or is an admin); someone else's bucket is refused
    exactly like a missing one."""
    if state is None or not state.visible_to(cmd.caller, cmd.admin):
        raise _not_found(cmd)
    return state


def _check_description(description: str | None) -> None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            "invalid_description",
            f"a description is at most {MAX_DESCRIPTION} characters",
            {"max_length": MAX_DESCRIPTION},
        )


def _create(state: BucketState | None, cmd: CreateBucket) -> list[Event]:
    name = cmd.aggregate_id
    problem = bucket_name_problem(name)
    if problem is not None:
        raise InvalidInput("invalid_bucket_name", problem, {"name": name[:64]})
    if name in RESERVED:
        raise InvalidInput(
            "reserved_bucket_name", f"the bucket name {name!r} is reserved", {"name": name}
        )
    _check_description(cmd.description)
    if state is not None and not state.deleted:
        if (
            state.owner == cmd.caller
            and state.public == cmd.public
            and state.description == cmd.description
        ):
            return []  # the same create again (a retry): already applied
        # Names are global, as on S3: the name is taken, whoever holds it.
        raise Conflict("bucket_exists", "a bucket with this name exists", {"name": name})
    return [
        BucketCreated(
            name=name,
            owner=cmd.caller,
            public=cmd.public,
            description=cmd.description,
            at=cmd.at,
        )
    ]


def _update(state: BucketState | None, cmd: UpdateBucket) -> list[Event]:
    st = _owned(state, cmd)
    _check_description(cmd.description)
    public = st.public if cmd.public is None else cmd.public
    description = st.description if cmd.description is None else cmd.description
    if (public, description) == (st.public, st.description):
        return []
    return [BucketUpdated(public=public, description=description, at=cmd.at)]


def _delete(state: BucketState | None, cmd: DeleteBucket) -> list[Event]:
    _owned(state, cmd)
    return [BucketDeleted(force=cmd.force, at=cmd.at)]


_DECIDERS: dict[type[Command], Step[BucketState]] = {
    CreateBucket: _create,
    UpdateBucket: _update,
    DeleteBucket: _delete,
}

decide = by_command("buckets", _DECIDERS)
