"""Pure unit tests of an object version's stored HTTP headers (domain/files/headers.py):
PutObject carries them onto its event and the state, a new version brings its own, a
rename keeps them, bad ones are refused by `decide`, and events stored before the field
existed still read (as "no headers") through the same upcast-and-decode path as the
store's, at the same schema version."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import files, policies
from domain.commands import UpdateFile
from domain.errors import InvalidInput
from domain.events import RecordedEvent, upcast_recorded
from domain.files import FileState
from domain.files.events import FileCreated, FileReplaced
from domain.files.headers import MAX_HEADER_BYTES, header_value_problem, headers_problem
from domain.files.keys import object_file_id
from domain.kernel import Event
from domain.registry import EVENTS

T0 = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
H1, H2 = "a" * 64, "b" * 64
GZ = {
    "cache-control": "public, max-age=3600",
    "content-disposition": 'attachment; filename="site.css"',
    "content-encoding": "gzip",
    "content-language": "en, de",
    "expires": "Wed, 21 Oct 2037 07:28:00 GMT",
}


def put(sha: str = H1, **kw: object) -> object:
    return policies.put_object(
        bucket="bkt", key="k/site.css", owner="alice", size=3, sha256=sha,
        manifest=[(sha, 3)], content_type="text/css", caller="alice", at=T0,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def apply(st: FileState | None, events: list[Event]) -> FileState | None:
    for e in events:
        st = files.evolve(st, e)
    return st


def test_put_stores_the_headers_and_a_new_version_brings_its_own() -> None:
    ev = files.decide(None, put(headers=GZ))  # type: ignore[arg-type]
    assert isinstance(ev[0], FileCreated) and ev[0].headers == GZ
    assert ev[0].data["headers"] == GZ  # on the wire and in the store
    st = apply(None, ev)
    assert st is not None and st.headers == GZ
    ev = files.decide(st, put(sha=H2))  # type: ignore[arg-type]
    assert isinstance(ev[0], FileReplaced) and ev[0].headers == {}
    st2 = apply(st, ev)
    assert st2 is not None and st2.headers == {}  # an overwrite without them: gone
    ev = files.decide(st2, put(sha=H1, headers={"cache-control": "no-cache"}))  # type: ignore[arg-type]
    st3 = apply(st2, ev)
    assert st3 is not None and st3.headers == {"cache-control": "no-cache"}


def test_a_rename_or_metadata_change_keeps_them() -> None:
    st = apply(None, files.decide(None, put(headers=GZ)))  # type: ignore[arg-type]
    fid = object_file_id("bkt", "k/site.css")
    cmd = UpdateFile(aggregate_id=fid, caller="alice", at=T0, metadata={"a": "1"})
    st = apply(st, files.decide(st, cmd))
    assert st is not None and st.metadata == {"a": "1"} and st.headers == GZ


def test_a_copy_keeps_the_source_headers_unless_others_are_given() -> None:
    src = apply(None, files.decide(None, put(headers=GZ)))  # type: ignore[arg-type]
    assert src is not None
    kw = {"owner": "alice", "caller": "alice", "at": T0}
    assert policies.object_from_file(src, "bkt", "other", **kw).headers == GZ  # type: ignore[arg-type]
    replaced = policies.object_from_file(src, "bkt", "other", headers={}, **kw)  # type: ignore[arg-type]
    assert replaced.headers == {}


@pytest.mark.parametrize(
    ("headers", "at_fault"),
    [
        ({"cache-control": "max-age=1\r\nSet-Cookie: x=1"}, "cache-control"),
        ({"content-encoding": "gzip\n"}, "content-encoding"),
        ({"expires": "a\x00b"}, "expires"),
        ({"content-language": "en\tde"}, "content-language"),
        ({"content-disposition": "inline; filename=caf\u00e9"}, "content-disposition"),
        ({"cache-control": "x" * (MAX_HEADER_BYTES + 1)}, "cache-control"),
        ({"x-frame-options": "DENY"}, "x-frame-options"),  # not one an object keeps
    ],
)
def test_bad_headers_are_refused_naming_the_header(headers: dict[str, str], at_fault: str) -> None:
    with pytest.raises(InvalidInput) as e:
        files.decide(None, put(headers=headers))  # type: ignore[arg-type]
    assert e.value.code == "invalid_header"
    assert e.value.details == {"header": at_fault, "max_bytes": MAX_HEADER_BYTES}


def test_the_value_rule_at_its_edges() -> None:
    assert header_value_problem("cache-control", "x" * MAX_HEADER_BYTES) is None
    assert header_value_problem("cache-control", " spaced  inside ~") is None
    assert header_value_problem("cache-control", "\x7f") is not None  # DEL is a control
    assert headers_problem({}) is None
    assert headers_problem(GZ) is None
    assert headers_problem(["cache-control"]) == ("headers", "headers must be an object of strings")


@pytest.mark.parametrize("event_type", ["FileCreated", "FileReplaced"])
def test_an_event_stored_before_the_field_existed_still_reads(event_type: str) -> None:
    """The old shape (no `headers`) at the same schema version: an addition with a default
    needs no upcaster (tests/domain/test_wire_shapes.py); it reads as no headers."""
    cls = EVENTS[event_type][1]
    assert cls.schema_version == 1
    old: dict[str, object] = {
        "owner": "alice",
        "name": "site.css",
        "size": 3,
        "content_type": "text/css",
        "sha256": H1,
        "manifest": [{"sha256": H1, "size": 3}],
        "metadata": {"m": "1"},
        "upload_id": None,
        "at": T0.isoformat(),
    }
    if event_type == "FileCreated":
        old |= {"file_id": object_file_id("bkt", "k"), "bucket": "bkt", "key": "k"}
    rec = upcast_recorded(
        RecordedEvent(
            id="e1",
            stream_id=f"file-{object_file_id('bkt', 'k')}",
            version=1,
            position=1,
            type=event_type,
            schema_version=1,
            data=old,
            occurred_at=T0,
        )
    )
    ev = rec.payload
    assert isinstance(ev, cls) and ev.headers == {}  # type: ignore[attr-defined]
    assert ev.metadata == {"m": "1"}  # type: ignore[attr-defined]
    base = apply(None, files.decide(None, put(headers=GZ)))  # type: ignore[arg-type]
    st = files.evolve(None if event_type == "FileCreated" else base, ev)
    assert st is not None and st.headers == {} and st.sha256 == H1
