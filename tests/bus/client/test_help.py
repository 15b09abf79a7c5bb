"""`--help` of every client command says what each argument and option does: one walk
over the parser, so a new option without a `help=` fails here rather than in a user's
terminal (`cairn tasks ls --help` listed `--status STATUS` and nothing more)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from bus.run.cli import _parser

# The operator's commands (bus/run/cli.py), not the HTTP client's.
OPERATOR = {"up", "run", "token", "migrate", "replay", "blobs", "db"}


def _commands(
    parser: argparse.ArgumentParser, path: str = "cairn"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            if path == "cairn" and name in OPERATOR:
                continue
            yield from _commands(child, f"{path} {name}")


def test_every_client_argument_has_help() -> None:
    commands = dict(_commands(_parser()))
    assert {"cairn upload", "cairn tasks ls", "cairn fetches retry"} <= commands.keys()
    missing = [
        f"{path}: {action.metavar or action.dest}"
        for path, parser in commands.items()
        for action in parser._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []
