"""Pure unit tests of an upload's stored headers: an upload into a key carries S3's stored
headers (domain/files/headers.py) from InitiateUpload onto its event, its state and the
PutObject its completion becomes; `decide` refuses bad ones, and any without a key, with
the object PUT's error; an UploadInitiated stored before the field existed still folds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import files, policies, uploads
from domain.errors import Conflict, InvalidInput
from domain.events import RecordedEvent, upcast_recorded
from domain.files.commands import PutObject
from domain.files.events import FileCreated
from domain.files.headers import MAX_HEADER_BYTES
from domain.kernel import Command
from domain.uploads import UploadState, UploadStatus
from domain.uploads.commands import AppendBytes, InitiateUpload
from domain.uploads.events import UploadInitiated

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
UID = "3c1f0d4e-2b1e-4c51-9a36-6f9b7a528a71"
A = "a" * 64
GZ = {"cache-control": "max-age=60", "content-encoding": "gzip"}


def initiate(**kw: Any) -> InitiateUpload:
    args: dict[str, Any] = {
        "aggregate_id": UID,
        "caller": "alice",
        "at": T0,
        "file_name": "site.css.gz",
        "file_size": 4,
        "chunk_size": 4,
        "mode": "stream",
        "bucket": "web",
        "key": "css/site.css",
    }
    return InitiateUpload(**(args | kw))


def run(*cmds: Command) -> UploadState | None:
    state = None
    for cmd in cmds:
        for ev in uploads.decide(state, cmd):
            state = uploads.evolve(state, ev)
    return state


def append() -> AppendBytes:
    return AppendBytes(
        aggregate_id=UID,
        caller="alice",
        at=T0 + timedelta(seconds=1),
        offset=0,
        pieces=[{"sha256": A, "size": 4}],
    )


def test_an_upload_into_a_key_carries_its_headers_onto_the_object() -> None:
    events = uploads.decide(None, initiate(headers=GZ))
    assert isinstance(events[0], UploadInitiated) and events[0].headers == GZ
    assert events[0].data["headers"] == GZ  # on the wire and in the store
    received = run(initiate(headers=GZ), append())
    assert received is not None and received.headers == GZ
    done = run(
        initiate(headers=GZ), append(), policies.complete(received, A, caller="alice", at=T0)
    )
    assert done is not None and done.status == UploadStatus.COMPLETED
    put = policies.file_from_upload(done)
    assert isinstance(put, PutObject) and put.headers == GZ
    created = files.decide(None, put)
    assert isinstance(created[0], FileCreated) and created[0].headers == GZ


def test_an_upload_created_with_its_bytes_carries_them_too() -> None:
    """tus creation-with-upload: initiated, appended and completed in one decision."""
    cmd = policies.initiate_complete(initiate(headers=GZ), [{"sha256": A, "size": 4}], A)
    done = run(cmd)
    assert done is not None and done.status == UploadStatus.COMPLETED
    put = policies.file_from_upload(done)
    assert isinstance(put, PutObject) and put.headers == GZ


def test_an_upload_without_headers_makes_an_object_without_them() -> None:
    received = run(initiate(), append())
    assert received is not None
    done = run(initiate(), append(), policies.complete(received, A, caller="alice", at=T0))
    put = policies.file_from_upload(done)
    assert isinstance(put, PutObject) and put.headers == {}


@pytest.mark.parametrize(
    ("headers", "at_fault"),
    [
        ({"cache-control": "max-age=1\r\nSet-Cookie: x=1"}, "cache-control"),
        ({"content-encoding": "x" * (MAX_HEADER_BYTES + 1)}, "content-encoding"),
        ({"x-frame-options": "DENY"}, "x-frame-options"),
        ({"Cache-Control": "no-cache"}, "Cache-Control"),  # the domain takes lower-case names
    ],
)
def test_bad_headers_are_refused_as_a_put_refuses_them(
    headers: dict[str, str], at_fault: str
) -> None:
    with pytest.raises(InvalidInput) as e:
        uploads.decide(None, initiate(headers=headers))
    assert e.value.code == "invalid_header"
    assert e.value.details == {"header": at_fault, "max_bytes": MAX_HEADER_BYTES}


def test_headers_without_a_key_are_refused() -> None:
    """A plain file has no stored headers (as S3: they are an object version's)."""
    with pytest.raises(InvalidInput) as e:
        uploads.decide(None, initiate(key=None, bucket="default", headers=GZ))
    assert e.value.code == "invalid_header"
    assert e.value.details == {"header": "cache-control", "max_bytes": MAX_HEADER_BYTES}
    assert "key" in e.value.message
    assert uploads.decide(None, initiate(key=None, bucket="default"))  # without them: fine


def test_the_same_create_again_is_a_replay_other_headers_a_conflict() -> None:
    st = run(initiate(headers=GZ))
    assert uploads.decide(st, initiate(headers=GZ)) == []
    with pytest.raises(Conflict) as e:
        uploads.decide(st, initiate(headers={"cache-control": "no-store"}))
    assert e.value.code == "upload_exists"


def test_an_upload_initiated_before_the_field_existed_still_folds() -> None:
    old: dict[str, object] = {
        "upload_id": UID,
        "owner": "alice",
        "file_name": "site.css.gz",
        "file_size": 4,
        "chunk_size": 4,
        "total_chunks": 0,
        "mode": "stream",
        "partial": False,
        "parts": [],
        "manifest": [],
        "content_type": "text/css",
        "sha256": None,
        "bucket": "web",
        "metadata": {"m": "1"},
        "key": "css/site.css",
        "at": T0.isoformat(),
    }
    rec = upcast_recorded(
        RecordedEvent(
            id="e1",
            stream_id=f"upload-{UID}",
            version=1,
            position=1,
            type="UploadInitiated",
            schema_version=2,
            data=old,
            occurred_at=T0,
        )
    )
    ev = rec.payload
    assert isinstance(ev, UploadInitiated) and ev.headers == {} and ev.metadata == {"m": "1"}
    st = uploads.evolve(None, ev)
    assert st is not None and st.headers == {} and st.key == "css/site.css"
    for e in uploads.decide(st, append()):
        st = uploads.evolve(st, e)
    assert st is not None
    for e in uploads.decide(st, policies.complete(st, A, caller="alice", at=T0)):
        st = uploads.evolve(st, e)
    put = policies.file_from_upload(st)
    assert isinstance(put, PutObject) and put.headers == {} and put.metadata == {"m": "1"}
