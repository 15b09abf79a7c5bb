"""projections/usage.py `reserve_many`: a batch of one owner's requests, decided under one
take of the lock, answers exactly what `reserve` answers to the same requests one after
the other (grants, refusals with their details, the usage each saw), and leaves the same
usage behind."""

from __future__ import annotations

import random
import uuid

from bus.store.eventstore import PostgresEventStore
from projections.rebuild import rebuild
from projections.usage import Ask, release, reserve, reserve_many, storage_used
from tests.projections.conftest import Writer
from tests.projections.test_usage import write_file

QUOTA = 100_000
KEYS = 3


async def _owner_with_objects(writer: Writer, owner: str, sizes: list[int | None]) -> list[str]:
    """`owner` and one file id per key, live with the size given (None: no object yet)."""
    ids = [str(uuid.uuid4()) for _ in sizes]
    for file_id, size in zip(ids, sizes, strict=True):
        if size is not None:
            await write_file(writer, owner, size, file_id)
    return ids


async def test_a_batch_answers_as_the_same_requests_one_by_one(
    event_store: PostgresEventStore,
) -> None:
    writer = Writer(event_store)
    rng = random.Random(7)
    cases = []
    for _case in range(12):
        sizes = [rng.choice([None, rng.randrange(0, 30_000)]) for _ in range(KEYS)]
        tag = uuid.uuid4().hex[:8]
        one, many = f"one-{tag}", f"many-{tag}"
        keys = {
            one: await _owner_with_objects(writer, one, sizes),
            many: await _owner_with_objects(writer, many, sizes),
        }
        picks = [
            (rng.randrange(0, 45_000), rng.choice([None, *range(KEYS)]))
            for _ in range(rng.randrange(1, 14))
        ]
        cases.append((one, many, keys, picks))
    await rebuild(event_store.pool, "files")

    outcomes: set[str] = set()
    for one, many, keys, picks in cases:
        alone = []
        for requested, k in picks:
            rid, details, used = await reserve(
                event_store, one, QUOTA, requested, target=None if k is None else keys[one][k]
            )
            alone.append((rid is not None, details, used))
        asks: list[Ask] = [(n, None if k is None else keys[many][k]) for n, k in picks]
        together = [
            (rid is not None, details, used)
            for rid, details, used in await reserve_many(event_store, many, QUOTA, asks)
        ]
        assert together == alone, picks
        assert await storage_used(event_store, many) == await storage_used(event_store, one)
        outcomes |= {"granted" if ok else "refused" for ok, _, _ in alone}
        outcomes |= {"replaced" for _, d, _ in alone if d and "replaced" in d}
    # The cases reached every kind of answer, so the comparison compared something.
    assert outcomes == {"granted", "refused", "replaced"}


async def test_a_batch_s_holds_count_and_are_released_one_by_one(
    event_store: PostgresEventStore,
) -> None:
    got = await reserve_many(event_store, "b1", QUOTA, [(30_000, None)] * 4)
    assert [rid is not None for rid, _, _ in got] == [True, True, True, False]
    assert got[3][1] == {"quota": QUOTA, "used": 90_000, "requested": 30_000}
    assert [used for _, _, used in got] == [0, 30_000, 60_000, 90_000]
    assert await storage_used(event_store, "b1") == 90_000
    rid = got[0][0]
    assert rid is not None
    await release(event_store.pool, rid)
    assert await storage_used(event_store, "b1") == 60_000
    assert await reserve_many(event_store, "b1", QUOTA, []) == []
