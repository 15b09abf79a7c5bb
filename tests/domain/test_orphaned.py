"""The orphan rule, pure (domain.policies `orphaned`, `delete_orphan`): which files are
live in a bucket that is gone, and the deletion the sweep sends for one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain import files, policies
from domain.buckets import BucketState
from domain.errors import NotFound, PreconditionFailed
from domain.files import FileState
from domain.files.events import FileDeleted

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(minutes=1)

FILE = FileState(
    id="0d4c1f3e-2b1e-4c51-9a36-6f9b7a528a71",
    owner="ann",
    name="f.bin",
    size=3,
    content_type="text/plain",
    sha256="a" * 64,
    manifest=(("a" * 64, 3),),
    bucket="pics",
    created_at=T0,
    updated_at=T0,
)
ANNS = BucketState("pics", "ann", False, "", T0 - timedelta(days=1), T0 - timedelta(days=1))


def test_a_file_is_orphaned_only_when_its_bucket_is_gone_for_its_owner() -> None:
    assert not policies.orphaned(FILE, ANNS)
    assert policies.orphaned(FILE, None)  # never existed (or not readable as one)
    assert policies.orphaned(FILE, replace(ANNS, deleted=True))
    # Made again by the owner (before or after the file): the file is in it.
    assert not policies.orphaned(FILE, replace(ANNS, created_at=LATER))
    # Taken by someone else since the file was written: it does not shelter the file.
    assert policies.orphaned(FILE, replace(ANNS, owner="bob", created_at=LATER))
    # Someone else's bucket that was there first: a file labelled with it (an admin's
    # fetch into a user's bucket) is left alone.
    assert not policies.orphaned(FILE, replace(ANNS, owner="bob"))
    # In no bucket, or no file at all: nothing to sweep.
    assert not policies.orphaned(replace(FILE, bucket="default"), None)
    assert not policies.orphaned(replace(FILE, deleted=True), None)
    assert not policies.orphaned(None, None)


def test_the_deletion_is_the_owners_of_the_content_judged_and_named_by_the_version() -> None:
    cmd = policies.delete_orphan(FILE, 3, LATER)
    assert (cmd.caller, cmd.admin, cmd.if_match) == ("ann", False, FILE.sha256)
    assert cmd.command_id == policies.delete_orphan(FILE, 3, LATER + timedelta(hours=1)).command_id
    assert cmd.command_id != policies.delete_orphan(FILE, 4, LATER).command_id
    assert [type(e) for e in files.decide(FILE, cmd)] == [FileDeleted]
    # A new version written since it was judged is not deleted for the old one's sake...
    with pytest.raises(PreconditionFailed):
        files.decide(replace(FILE, sha256="b" * 64), cmd)
    # ...nor another owner's object that took the key since.
    with pytest.raises(NotFound):
        files.decide(replace(FILE, owner="bob"), cmd)
