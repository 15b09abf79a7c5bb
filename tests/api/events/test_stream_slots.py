"""Live-stream slots: per user, per process, given back once, whoever holds them."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.events.stream_slots import StreamSlots


def test_a_user_past_their_slots_is_429_and_others_still_get_theirs() -> None:
    slots = StreamSlots(per_user=2, total=10)
    a1, a2 = slots.take("alice"), slots.take("alice")
    with pytest.raises(ApiError) as refused:
        slots.take("alice")
    e = refused.value
    assert (e.status, e.code) == (429, "too_many_streams")
    assert e.details == {"limit": 2, "setting": "CAIRN_EVENTS_MAX_STREAMS_PER_USER"}
    assert e.headers == {"Retry-After": "5"}
    slots.take("bob")
    a1.release()
    slots.take("alice")  # the slot given back is free again
    assert slots.held == {"alice": 2, "bob": 1} and slots.count == 3
    del a2


def test_the_process_past_its_slots_is_503_whoever_asks() -> None:
    slots = StreamSlots(per_user=5, total=3)
    held = [slots.take(u) for u in ("a", "b", "c")]
    with pytest.raises(ApiError) as refused:
        slots.take("d")
    assert (refused.value.status, refused.value.code) == (503, "events_busy")
    held[0].release()
    slots.take("d")


def test_a_slot_released_twice_is_given_back_once() -> None:
    slots = StreamSlots(per_user=1, total=5)
    slot = slots.take("alice")
    slot.release()
    slot.release()
    assert slots.held == {} and slots.count == 0
    other = slots.take("alice")
    slot.release()  # must not free the slot `other` holds
    with pytest.raises(ApiError):
        slots.take("alice")
    other.release()
    assert slots.count == 0
