"""The in-flight limiter: slots per upload, per user and per process, all given back."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from api.errors import ApiError
from api.limits import InflightLimiter


def refused(limiter: InflightLimiter, upload: str | None, user: str) -> dict[str, object]:
    with pytest.raises(ApiError) as e, limiter.hold(upload, user):
        pass
    assert (e.value.status, e.value.code) == (429, "too_many_requests")
    return e.value.details


def test_one_user_cannot_take_every_slot_of_the_process() -> None:
    # Before, the only limits were per upload and per process: one user's slow bodies on
    # enough uploads held every slot, and everyone else's uploads were 429 meanwhile.
    limiter = InflightLimiter(per_upload=2, total=10, per_user=3)
    with ExitStack() as held:
        for upload in ("u1", "u2", "u3"):
            held.enter_context(limiter.hold(upload, "mallory"))
        assert refused(limiter, "u4", "mallory") == {"scope": "user", "limit": 3}
        held.enter_context(limiter.hold("u5", "alice"))  # another user still gets in
        held.enter_context(limiter.hold("u5", "alice"))
        assert refused(limiter, "u5", "alice") == {"scope": "upload", "limit": 2}
    assert limiter.in_flight == 0 and limiter.by_user == {} and limiter.by_upload == {}
    with limiter.hold("u4", "mallory"):  # every slot came back
        pass


def test_the_process_limit_comes_first() -> None:
    limiter = InflightLimiter(per_upload=5, total=2, per_user=5)
    with limiter.hold("a", "alice"), limiter.hold("b", "bob"):
        assert refused(limiter, "c", "carol") == {"scope": "global", "limit": 2}


def test_a_failing_request_gives_its_slot_back() -> None:
    limiter = InflightLimiter(per_upload=1, total=1, per_user=1)
    with pytest.raises(RuntimeError), limiter.hold("a", "alice"):
        raise RuntimeError("the body broke off")
    with limiter.hold("a", "alice"):
        assert limiter.by_user == {"alice": 1}


def test_a_body_for_no_upload_counts_per_user_and_in_total_only() -> None:
    # Object PUTs and tus creations name no existing upload: hold(None, ...).
    limiter = InflightLimiter(per_upload=1, total=3, per_user=2)
    with limiter.hold(None, "alice"), limiter.hold(None, "alice"):
        assert limiter.by_upload == {} and limiter.in_flight == 2
        assert refused(limiter, None, "alice") == {"scope": "user", "limit": 2}
        with limiter.hold(None, "bob"):
            assert refused(limiter, "u1", "carol") == {"scope": "global", "limit": 3}
    assert limiter.in_flight == 0 and limiter.by_user == {}
