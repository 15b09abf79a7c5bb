"""The bucket aggregate: a named, owned namespace of objects, public or private.

Its id is its name (S3's rules, see names.py), so its stream is `bucket-<name>`. The
bucket records who owns it and whether anyone may read it; the objects themselves are
files whose `bucket` is this name. commands.py, events.py, state.py (with `evolve`) and
decide.py hold its parts; `AGGREGATE` ties them together for domain.registry.
"""

from __future__ import annotations

from domain.buckets.commands import COMMANDS, BucketCommand
from domain.buckets.decide import decide
from domain.buckets.events import EVENTS
from domain.buckets.state import BucketState, evolve
from domain.kernel import AggregateSpec

AGGREGATE: AggregateSpec[BucketState] = AggregateSpec(
    name=BucketCommand.aggregate,
    stream_prefix=BucketCommand.stream_prefix,
    commands=COMMANDS,
    events=EVENTS,
    state=BucketState,
    decide_typed=decide,
    evolve=evolve,
)

__all__ = ["AGGREGATE", "BucketState", "decide", "evolve"]
