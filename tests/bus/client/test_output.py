"""The client's tables (bus/client/output.py): a row is one line, ids and times whole."""

from __future__ import annotations

import errno
import io
import json
import sys

import pytest
from rich.console import Console

from bus.client.errors import ClientError
from bus.client.output import Output

FILE_ID = "e5bf2729-5a92-5477-93d7-4c8febdebc52"
COLUMNS = [("id", "ID"), ("name", "NAME"), ("content_type", "TYPE"), ("created_at", "CREATED")]
ROW = {
    "id": FILE_ID,
    "name": "a rather long file name, with spaces.tar.gz",
    "content_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "created_at": "2026-12-06T08:00:22.443235+01:00",
}


def _printed(width: int, terminal: bool) -> list[str]:
    out = Output(as_json=False)
    buffer = io.StringIO()
    out.out = Console(file=buffer, width=width, force_terminal=terminal, color_system=None)
    out.table([ROW, {**ROW, "id": "x", "created_at": None}], COLUMNS, raw=[ROW])
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize("width", [40, 80, 300])
def test_each_row_is_one_line_with_its_cells_whole(width: int, terminal: bool) -> None:
    header, first, second = _printed(width, terminal)
    assert header.split() == ["ID", "NAME", "TYPE", "CREATED"]
    assert first.startswith(FILE_ID + "  ")
    assert ROW["name"] in first and ROW["content_type"] in first
    # The time to the second, in UTC.
    assert first.rstrip().endswith("2026-12-06T07:00:22Z")
    assert second.split()[0] == "x" and second.rstrip().endswith("-")
    # Columns line up: every cell starts where its heading does.
    assert first.index(ROW["content_type"]) == header.index("TYPE")


def test_json_is_the_raw_document(capsys: pytest.CaptureFixture[str]) -> None:
    Output(as_json=True).table([ROW], COLUMNS, raw={"items": [ROW]})
    printed = capsys.readouterr().out
    assert printed.endswith("\n") and printed.count("\n") == 1
    assert json.loads(printed) == {"items": [ROW]}


def test_a_value_that_is_not_a_time_is_shown_as_it_is() -> None:
    out = Output(as_json=False)
    buffer = io.StringIO()
    out.out = Console(file=buffer, width=80, color_system=None)
    out.table(
        [{"when": "", "size": "PRE", "name": "photos/"}],
        [("when", "MODIFIED"), ("size", "SIZE"), ("name", "KEY")],
        raw=None,
    )
    assert buffer.getvalue().splitlines()[1].split() == ["PRE", "photos/"]


def test_a_record_shows_its_times_to_the_second() -> None:
    out = Output(as_json=False)
    buffer = io.StringIO()
    out.out = Console(file=buffer, width=80, color_system=None)
    out.record(
        {"total": 3, "last_activity_at": "2026-12-06T07:01:08.843530+00:00"},
        [("total", "uploads"), ("last_activity_at", "last activity")],
    )
    assert [line.split() for line in buffer.getvalue().splitlines()] == [
        ["uploads", "3"],
        ["last", "activity", "2026-12-06T07:01:08Z"],
    ]


@pytest.mark.parametrize("terminal", [True, False])
def test_a_record_is_one_line_per_field(terminal: bool) -> None:
    # `cairn stats`, `buckets show`, `tasks show`: values were folded at the width.
    out = Output(as_json=False)
    buffer = io.StringIO()
    out.out = Console(file=buffer, width=40, force_terminal=terminal, color_system=None)
    out.record({"id": FILE_ID, "name": ROW["name"]}, [("id", "id"), ("name", "name")])
    lines = buffer.getvalue().splitlines()
    assert [line.split(None, 1)[1].rstrip() for line in lines] == [FILE_ID, ROW["name"]]


def test_a_note_is_one_line_on_a_pipe() -> None:
    # `cairn download ... 2>log`: a long path was folded at 80 columns, in the middle.
    out = Output(as_json=False)
    buffer = io.StringIO()
    out.err = Console(file=buffer, width=40, color_system=None)
    path = "/tmp/" + "a-rather-long-directory-name/" * 3 + "f.bin"
    out.note(f"{path}: 6 B, sha256 verified")
    assert buffer.getvalue() == f"{path}: 6 B, sha256 verified\n"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        # Rich read these as markup: the brackets were eaten, and a lone closing tag
        # raised MarkupError out of `cairn ls` (a traceback).
        ("report [draft].pdf", "report [draft].pdf"),
        ("x[/y]z", "x[/y]z"),
        ("[link=http://evil.example]click[/link]", "[link=http://evil.example]click[/link]"),
        # An object key another user chose: ESC reached the terminal (a new window title).
        ("a\x1b]0;owned\x07b", "a\\x1b]0;owned\\x07b"),
        ("c\x1b[2J\rd", "c\\x1b[2J\\x0dd"),
        # Newline and backspace: a second line, or a name that overwrites itself.
        ("e\nf\bg", "e\\x0af\\x08g"),
        # Bidi controls are no ESC, but they reorder the rest of the line on a terminal that
        # does bidi: shown, as the web console shows them (js/util.js).
        ("invoice\u202egpj.exe", "invoice\\u202egpj.exe"),
        ("a\u2066b\u2069c\u202ad", "a\\u2066b\\u2069c\\u202ad"),
        # Other non-ASCII text is text: kept.
        ("été 東京.txt", "été 東京.txt"),
    ],
)
def test_a_cell_is_shown_never_obeyed(name: str, shown: str) -> None:
    out = Output(as_json=False)
    buffer = io.StringIO()
    out.out = Console(file=buffer, width=80, force_terminal=True, color_system=None)
    out.table([{"id": "1", "name": name}], [("id", "ID"), ("name", "NAME")], raw=None)
    out.record({"name": name})
    printed = buffer.getvalue()
    assert "\x1b" not in printed and "\r" not in printed
    _, row, record = printed.splitlines()
    assert row.split("  ", 1)[1].strip() == shown
    assert record.endswith(shown)


def test_an_error_line_from_the_server_is_shown_never_obeyed() -> None:
    err = ClientError("gone\x1b[31m\x9b2J", code="x\x07", status=400)
    assert err.line() == "cairn: error: x\\x07: gone\\x1b[31m\\x9b2J (HTTP 400)"


@pytest.mark.parametrize("as_json", [True, False])
def test_a_closed_stdout_is_an_io_error(as_json: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # `cairn ls >&-`: Python sets sys.stdout to None. --json was an AttributeError
    # traceback, and a table vanished with exit 0.
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(OSError) as e:
        Output(as_json).table([ROW], COLUMNS, raw=[ROW])
    assert e.value.errno == errno.EBADF
    with pytest.raises(OSError):
        sys.stdout.buffer.write(b"x")  # `-o -` writes here
