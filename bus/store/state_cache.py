"""Aggregate states folded from the event store, kept per process and brought up to date
with only the events appended since.

Readers outside the actor host (the API answering a GET of a file, a tus HEAD or PATCH)
fold an aggregate's stream on every request. A stream only ever grows (nothing deletes or
rewrites an event) and a state is a pure fold of its events, so a state folded up to
version v stays exactly right for version v: bringing it up to date needs only the events
after v, usually none. The query still runs on every load, so a reader sees every event
committed before it asked, from any process, as it did when it folded everything; there
is nothing to invalidate. What the cache saves is decoding and folding the stream again:
a file's creation event carries its whole manifest.

States are immutable (frozen dataclasses whose `evolve` returns new ones), so one object
is handed to every reader. Bounded by weight, not count: a state weighs one plus the
lengths of its collection fields (a manifest, an upload's pieces, metadata, a fetch's
segments' pieces), so a few big manifests cannot hold unbounded memory, and one that
would take more than half the budget is not kept at all. The budget holds two states of the most a stream may have (40,000
pieces or chunks, api/completion.py): when it kept none heavier than an eighth of a
smaller one, every GET of a big upload read and folded its 40,000 events again.

Concurrent loads of one stream share reads (a popular file under many readers: one query
per read instead of one per request; bus/aio.py GroupFlush). A load may only share a read that starts after it
asked, since one already running may have begun before an event this load must see was
committed. So a load arriving while a read of its stream is running waits for the next
read, which starts when the running one ends and answers every load that arrived
meanwhile: with 200 readers of one file, a few queries per batch of requests instead of
200, each load waiting at most for the rest of one read and one more.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

from bus.aio import GroupFlush
from domain.kernel import AggregateSpec
from domain.ports import EventStore

# A manifest entry or chunk (a digest and a size) takes about 250 bytes: about 25 MB at
# most, two states of 40,000 pieces and the small ones beside them.
DEFAULT_WEIGHT = 100_000


def weight(state: Any) -> int:
    """One, plus the lengths of a dataclass state's collection fields, plus those of the
    dataclasses a tuple field holds when they have collections of their own (a segmented
    fetch's pieces are in its segments)."""
    if not dataclasses.is_dataclass(state) or isinstance(state, type):
        return 1
    total = 1
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        # Any collection (an upload's chunks are a ChunkMap), not text.
        if isinstance(value, Collection) and not isinstance(value, str | bytes):
            total += len(value)
            # Looked at by its first item, so a manifest of Pieces costs nothing more.
            if isinstance(value, tuple) and value and weight(value[0]) > 1:
                total += sum(weight(v) - 1 for v in value)
    return total


class StateCache:
    """`load` folds a stream, starting from the state it folded last time for that stream."""

    def __init__(self, max_weight: int = DEFAULT_WEIGHT) -> None:
        self.max_weight = max_weight
        # stream id -> (aggregate name, version folded up to, state, weight); LRU order.
        self._states: OrderedDict[str, tuple[str, int, Any, int]] = OrderedDict()
        self._weight = 0
        # (store, aggregate, stream id) -> its reads, while one runs or loads wait (see
        # `load`).
        self._reads: dict[tuple[int, str, str], GroupFlush[None, Any]] = {}

    async def load(self, store: EventStore, spec: AggregateSpec[Any], stream_id: str) -> Any:
        """The stream's state, folded from every event committed before this call."""
        key = (id(store), spec.name, stream_id)
        reads = self._reads.get(key)
        if reads is None:
            reads = self._reads[key] = GroupFlush(lambda _loads: self._read(store, spec, stream_id))
        # A read is running, maybe since before an event this load must see: GroupFlush
        # makes the load wait for the next one (see the module docstring).
        answer = reads.submit(None)
        answer.add_done_callback(lambda _: self._forget_if_idle(key, reads))
        # Shielded: a load cancelled (its client gone) leaves the read to the others.
        return await asyncio.shield(answer)

    def _forget_if_idle(self, key: tuple[int, str, str], reads: GroupFlush[None, Any]) -> None:
        # Called after the read that answered this load ended (a future's callbacks run a
        # loop step after its result is set, when its flush task has finished): the
        # stream's reads are dropped unless another load queued meanwhile.
        if reads.idle and self._reads.get(key) is reads:
            del self._reads[key]

    async def _read(self, store: EventStore, spec: AggregateSpec[Any], stream_id: str) -> Any:
        cached = self._states.get(stream_id)
        if cached is not None and cached[0] == spec.name:
            _, version, state, _ = cached
            events = await store.read_stream(stream_id, version + 1)
            if not events:
                # Another load may have evicted or replaced the entry during the query.
                if stream_id in self._states:
                    self._states.move_to_end(stream_id)
                return state
            state = spec.fold(events, state)
        else:
            events = await store.read_stream(stream_id)
            state = spec.fold(events)
        if events:
            self._keep(stream_id, spec.name, events[-1].version, state)
        return state

    def _keep(self, stream_id: str, aggregate: str, version: int, state: Any) -> None:
        # Two loads of one stream may interleave at the awaits above: the later version
        # wins whichever finishes last, so the cache never moves back.
        held = self._states.get(stream_id)
        if held is not None:
            if held[0] == aggregate and held[1] >= version:
                return
            self._drop(stream_id)
        w = weight(state)
        if w > self.max_weight // 2:
            return
        self._states[stream_id] = (aggregate, version, state, w)
        self._weight += w
        while self._weight > self.max_weight:
            self._drop(next(iter(self._states)))

    def _drop(self, stream_id: str) -> None:
        held = self._states.pop(stream_id)
        self._weight -= held[3]

    def __len__(self) -> int:
        return len(self._states)
