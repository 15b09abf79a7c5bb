"""Counting options out of range are a usage error (exit 2, naming the option) before
anything is sent: `ls --limit 0` listed 100 files, `events --limit 0` printed one event,
`upload --parallel -1` ran one file at a time without a word."""

from __future__ import annotations

import pytest

from bus.run.cli import _parser


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "--limit", "0"],
        ["ls", "--offset", "-1"],
        ["events", "--limit", "0"],
        ["events", "--since", "-3"],
        ["upload", "f", "--parallel", "-1"],
        ["upload", "f", "--streams", "0"],
        ["buckets", "ls", "--limit", "0"],
        ["tasks", "ls", "--limit", "x"],
        ["fetches", "ls", "--offset", "-5"],
    ],
)
def test_out_of_range_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        _parser().parse_args(argv)
    assert stopped.value.code == 2
    option = next(a for a in argv if a.startswith("--"))
    assert f"argument {option}" in capsys.readouterr().err


def test_in_range_is_taken() -> None:
    args = _parser().parse_args(["events", "--since", "0", "--limit", "1"])
    assert (args.since, args.limit) == (0, 1)
