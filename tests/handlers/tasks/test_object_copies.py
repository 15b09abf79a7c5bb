"""handlers/tasks/object_copies.py's plan, unit level: where each object goes (the
relative key by prefix or by last segment) and the plans refused before anything is
written. The run itself, end to end: tests/api/routes/test_task_objects.py and
tests/handlers/tasks/test_bulk_cost.py (a takeover finding its own objects)."""

from __future__ import annotations

import pytest

from domain.files.keys import object_file_id
from handlers.tasks.object_copies import relative_key, target_keys
from handlers.tasks.run import TaskFailure


def test_the_relative_key_drops_the_source_prefix_or_keeps_the_last_segment() -> None:
    assert relative_key("x/a/1.jpg", "x/") == "a/1.jpg"
    assert relative_key("x/a/1.jpg", "x/a") == "/1.jpg"  # as `aws s3 cp --recursive`
    assert relative_key("x/a/1.jpg", "") == "x/a/1.jpg"
    assert relative_key("x/a/1.jpg", None) == "1.jpg"
    assert relative_key("top.txt", None) == "top.txt"


def test_only_objects_are_planned_and_keys_keep_their_structure() -> None:
    src = "src"
    keys = {object_file_id(src, k): k for k in ("x/a/1.jpg", "x/b/1.jpg")}
    files = [*keys, "plain-file-id"]
    got = target_keys(files, keys, "x/", "dst", "p/")
    assert got == {0: "p/a/1.jpg", 1: "p/b/1.jpg"}  # item 2 (no key) is a plain copy


@pytest.mark.parametrize(
    ("keys", "source_prefix", "to_prefix", "code"),
    [
        (["x/a/1.jpg", "x/b/1.jpg"], None, "p/", "duplicate_target"),
        (["x/only"], "x/only", "", "invalid_key"),
        (["x/dir/"], None, "", "invalid_key"),
        (["x/1.jpg"], "", "", "target_is_source"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_key(
    keys: list[str], source_prefix: str | None, to_prefix: str, code: str
) -> None:
    by_id = {object_file_id("src", k): k for k in keys}
    to_bucket = "src" if code == "target_is_source" else "dst"
    with pytest.raises(TaskFailure) as e:
        target_keys(list(by_id), by_id, source_prefix, to_bucket, to_prefix)
    assert e.value.error["code"] == code
    assert "key" in e.value.error["details"]


@pytest.mark.parametrize(("source_prefix", "to_prefix"), [("a/", "a/a/"), ("", "x/")])
def test_a_target_that_is_another_source_is_refused_naming_that_source(
    source_prefix: str, to_prefix: str
) -> None:
    """Moving `a/` into `a/a/` of one bucket puts `a/1` onto `a/a/1`, itself a source (and
    `""` into `x/` puts `1` onto `x/1`): refused whichever item comes first, so no outcome
    depends on which of them runs first (overwrite or not: the plan does not look)."""
    first, second = f"{source_prefix}1", f"{to_prefix}1"
    by_id = {object_file_id("b", k): k for k in (second, first)}  # the later source first
    with pytest.raises(TaskFailure) as e:
        target_keys(list(by_id), by_id, source_prefix, "b", to_prefix)
    error = e.value.error
    assert error["code"] == "target_is_source"
    assert error["details"] == {
        "source": object_file_id("b", first),
        "key": second,
        "conflicting_source": object_file_id("b", second),
    }
    assert repr(second) in error["message"] and "source" in error["message"]
    # Into another bucket, the same keys are no sources: planned.
    assert target_keys(list(by_id), by_id, source_prefix, "c", to_prefix) == {
        0: to_prefix + second[len(source_prefix) :],
        1: second,
    }
