"""api/taskparams.py: a bad task parameter is a 400 that names the field and says, in words,
what the field asks (not the regex msgspec checks it with)."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.taskparams import decode


@pytest.mark.parametrize("prefix", ["a/b", "a\\b", "/"])
def test_a_name_prefix_with_a_path_separator_is_refused_in_words(prefix: str) -> None:
    with pytest.raises(ApiError) as e:
        decode("copy", {"files": ["f"], "to": {"bucket": "default", "prefix": prefix}})
    assert e.value.status == 400 and e.value.code == "invalid_params"
    assert e.value.details == {"field": "params.to.prefix"}
    message = str(e.value)
    assert "regex" not in message and "^[" not in message, message
    assert "with no '/' or '\\'" in message, message


def test_other_errors_keep_msgspecs_words() -> None:
    with pytest.raises(ApiError) as e:
        decode("copy", {"files": ["f"], "to": {"bucket": "default", "prefix": 3}})
    assert e.value.details == {"field": "params.to.prefix"}
    assert "Expected `str`, got `int`" in str(e.value)
