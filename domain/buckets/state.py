"""The bucket aggregate's state, and `evolve`: how each event changes it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from domain.buckets.events import BucketCreated, BucketDeleted, BucketUpdated
from domain.kernel import Event


@dataclass(frozen=True)
class BucketState:
    name: str
    owner: str
    public: bool
    description: str
    created_at: datetime
    updated_at: datetime
    deleted: bool = False

    def visible_to(self, user: str | None, admin: bool) -> bool:
        """May `user` see that this bucket exists (its settings, its private objects)?"""
        return not self.deleted and (admin or (user is not None and user == self.owner))


def evolve(state: BucketState | None, event: Event) -> BucketState | None:
    """Pure and total: apply one (upcast, decoded) event."""
    if isinstance(event, BucketCreated):
        # Also after a BucketDeleted: a deleted name may be created again, by anyone.
        return BucketState(
            name=event.name,
            owner=event.owner,
            public=event.public,
            description=event.description,
            created_at=event.at,
            updated_at=event.at,
        )
    if state is None:
        return None
    if isinstance(event, BucketUpdated):
        return replace(
            state, public=event.public, description=event.description, updated_at=event.at
        )
    if isinstance(event, BucketDeleted):
        return replace(state, deleted=True, updated_at=event.at)
    return state
