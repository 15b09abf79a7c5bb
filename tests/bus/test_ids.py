"""bus.ids: version 4 UUIDs from a buffered urandom, never repeated, not across a fork."""

from __future__ import annotations

import os
import uuid

from bus import ids


def test_ids_are_random_version_4_uuids_and_never_repeat() -> None:
    many = [ids.uuid4() for _ in range(3 * 256 + 7)]  # across several refills
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in many)
    assert len(set(many)) == len(many)
    assert uuid.UUID(ids.uuid4_str()).version == 4
    assert len(ids.uuid4_hex()) == 32 and uuid.UUID(hex=ids.uuid4_hex()).version == 4


def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    ids.uuid4()  # the buffer holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "".join(ids.uuid4_hex() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as r:
        child = r.read()
    os.waitpid(pid, 0)
    parent = "".join(ids.uuid4_hex() for _ in range(8))
    assert len(child) == len(parent) == 8 * 32
    assert {child[i : i + 32] for i in range(0, len(child), 32)}.isdisjoint(
        {parent[i : i + 32] for i in range(0, len(parent), 32)}
    )
