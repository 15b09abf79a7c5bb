"""The completion rule, pure: which uploads complete by themselves, and the commands that
complete an upload and create its file (the same from the API and from the handler)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from domain import fetches, files, policies, uploads
from domain.fetches import FetchState, FetchStatus
from domain.fetches.commands import AppendFetchBytes, CompleteFetch, RequestFetch, StartFetch
from domain.files.commands import CreateFile
from domain.kernel import Command
from domain.uploads import UploadState, UploadStatus
from domain.uploads.commands import (
    AbortUpload,
    AppendBytes,
    InitiateUpload,
    StoreChunk,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UID = "0d4c1f3e-2b1e-4c51-9a36-6f9b7a528a71"
A = "a" * 64


def run(*cmds: Command) -> UploadState | None:
    state = None
    for cmd in cmds:
        for ev in uploads.decide(state, cmd):
            state = uploads.evolve(state, ev)
    return state


def initiate(**kw: object) -> InitiateUpload:
    args: dict[str, object] = {
        "aggregate_id": UID,
        "caller": "alice",
        "at": T0,
        "file_name": "f.bin",
        "file_size": 4,
        "chunk_size": 4,
        "mode": "stream",
    }
    return InitiateUpload(**(args | kw))  # type: ignore[arg-type]


def append(size: int = 4, offset: int = 0) -> AppendBytes:
    return AppendBytes(
        aggregate_id=UID,
        caller="alice",
        at=T0 + timedelta(seconds=1),
        offset=offset,
        pieces=[{"sha256": A, "size": size}],
    )


def test_a_stream_upload_with_all_its_bytes_completes_by_itself() -> None:
    assert policies.completes_by_itself(run(initiate(), append()))
    assert not policies.completes_by_itself(run(initiate()))  # bytes missing
    assert not policies.completes_by_itself(run(initiate(file_size=None), append()))
    assert not policies.completes_by_itself(run(initiate(partial=True), append()))
    assert not policies.completes_by_itself(
        run(initiate(), AbortUpload(aggregate_id=UID, caller="alice", at=T0))
    )
    assert not policies.completes_by_itself(None)


def test_the_native_chunked_api_keeps_its_explicit_complete() -> None:
    chunked = run(
        initiate(mode="chunks"),
        StoreChunk(aggregate_id=UID, caller="alice", at=T0, index=0, size=4, sha256=A),
    )
    assert chunked is not None and chunked.all_received
    assert not policies.completes_by_itself(chunked)


def test_completion_and_its_file_are_deterministic() -> None:
    state = run(initiate(), append())
    assert state is not None
    cmd = policies.complete(state, A, caller="alice", at=T0, command_id="c1")
    again = policies.complete(state, A, caller="alice", at=T0, command_id="c1")
    assert cmd == again and cmd.file_id == policies.completion_file_id(UID)
    assert cmd.aggregate_id == UID and cmd.sha256 == A and cmd.command_id == "c1"

    assert policies.file_from_upload(state) is None  # not completed yet
    done = run(initiate(), append(), cmd)
    assert done is not None and done.status == UploadStatus.COMPLETED
    create = policies.file_from_upload(done)
    assert create is not None
    assert create.aggregate_id == cmd.file_id
    assert create.command_id == policies.file_command_id(UID)
    assert (create.owner, create.name, create.size, create.sha256) == ("alice", "f.bin", 4, A)
    assert create.manifest == [{"sha256": A, "size": 4}]
    assert create.upload_id == UID and create.at == done.updated_at
    assert policies.file_from_upload(done) == create  # API and handler send the same


def test_the_completed_file_is_accepted_by_the_file_aggregate() -> None:
    received = run(initiate(), append())
    assert received is not None
    done = run(initiate(), append(), policies.complete(received, A, caller="alice", at=T0))
    create = policies.file_from_upload(done)
    assert create is not None
    assert [e.type for e in files.decide(None, create)] == ["FileCreated"]


def test_an_upload_naming_a_key_becomes_that_object() -> None:
    from domain.files.commands import PutObject
    from domain.files.keys import object_file_id

    received = run(initiate(bucket="pics", key="a/../b.bin"), append())
    assert received is not None and received.key == "a/../b.bin"
    cmd = policies.complete(received, A, caller="alice", at=T0)
    assert cmd.file_id == object_file_id("pics", "a/../b.bin")
    done = run(initiate(bucket="pics", key="a/../b.bin"), append(), cmd)
    put = policies.file_from_upload(done)
    assert isinstance(put, PutObject) and put == policies.file_from_upload(done)
    assert put.aggregate_id == cmd.file_id and put.command_id == policies.file_command_id(UID)
    assert (put.bucket, put.key, put.upload_id, put.size) == ("pics", "a/../b.bin", UID, 4)
    created = files.decide(None, put)
    assert [e.type for e in created] == ["FileCreated"]
    # The same upload's object again is already applied (the API and the handler both).
    state = None
    for e in created:
        state = files.evolve(state, e)
    assert files.decide(state, put) == []


def test_an_object_from_an_upload_keeps_user_metadata_not_the_naming_entries() -> None:
    from domain.files.commands import CreateFile, PutObject

    named = {"filename": "b.bin", "filetype": "text/plain", "bucket": "pics", "key": "b.bin"}
    meta = {**named, "author": "ann", "Key-Note": "kept"}
    for key, kept in (("b.bin", {"author": "ann", "Key-Note": "kept"}), (None, meta)):
        bucket = {"bucket": "pics", "key": key} if key else {}
        received = run(initiate(metadata=meta, **bucket), append())
        assert received is not None and received.metadata == meta  # the upload keeps all
        cmd = policies.complete(received, A, caller="alice", at=T0)
        made = policies.file_from_upload(run(initiate(metadata=meta, **bucket), append(), cmd))
        # An object holds its name, type, bucket and key itself; a plain file keeps them
        # as metadata (the relative path of `cairn upload DIR` lives there).
        assert isinstance(made, PutObject if key else CreateFile)
        assert made.metadata == kept


def test_a_key_needs_a_bucket_and_s3_rules() -> None:
    import pytest

    from domain.errors import InvalidInput

    with pytest.raises(InvalidInput) as e:
        run(initiate(key="k"))
    assert e.value.code == "key_needs_bucket"
    with pytest.raises(InvalidInput) as e:
        run(initiate(bucket="pics", key="k" * 1025))
    assert e.value.code == "invalid_key"


def test_a_completion_carrying_the_files_type_is_followed_by_its_file() -> None:
    whole = policies.initiate_complete(initiate(), [{"sha256": A, "size": 4}], A, "image/png")
    state = run(whole)
    assert state is not None and state.status == UploadStatus.COMPLETED
    [create] = policies.follow_ups(whole, state)
    # The very command the API and the files handler build: applied once, whoever is first.
    assert create == policies.file_from_upload(state, "image/png")
    assert create.command_id == policies.file_command_id(UID)
    assert isinstance(create, CreateFile) and create.content_type == "image/png"
    # The same through CompleteUpload.
    appended = run(initiate(), append())
    assert appended is not None
    done = policies.complete(appended, A, caller="alice", at=T0, file_content_type="text/plain")
    completed = run(initiate(), append(), done)
    [again] = policies.follow_ups(done, completed)
    assert again == policies.file_from_upload(completed, "text/plain")


def fetched(*, bucket: str = "default", key: str | None = None) -> tuple[FetchState, Command]:
    """A fetch of 4 bytes run to completion; (its state, the CompleteFetch that ended it)."""
    env = {"aggregate_id": UID, "caller": "alice"}
    request = RequestFetch(**env, at=T0, owner="alice", url="http://x/a", bucket=bucket, key=key)
    state: FetchState | None = None
    before: list[Command] = [
        request,
        StartFetch(**env, at=T0, runner="r"),
        AppendFetchBytes(**env, at=T0, runner="r", offset=0, pieces=[{"sha256": A, "size": 4}]),
    ]
    for cmd in before:
        for ev in fetches.decide(state, cmd):
            state = fetches.evolve(state, ev)
    assert state is not None
    complete = CompleteFetch(
        **env,
        at=T0 + timedelta(seconds=1),
        runner="r",
        sha256=A,
        size=4,
        file_id=policies.fetch_result_file_id(state),
        file_content_type="image/png",
    )
    for ev in fetches.decide(state, complete):
        state = fetches.evolve(state, ev)
    assert state is not None and state.status == FetchStatus.COMPLETED
    return state, complete


def test_a_fetch_completion_carrying_the_type_is_followed_by_its_file() -> None:
    state, complete = fetched()
    [create] = policies.follow_ups(complete, state)
    # The very command the worker and the files handler build: applied once, whoever is first.
    assert create == policies.file_from_fetch(state, "image/png", state.updated_at)
    assert create.command_id == policies.fetch_file_command_id(UID)
    assert isinstance(create, CreateFile) and create.content_type == "image/png"
    assert create.aggregate_id == policies.fetch_file_id(UID) and create.size == 4
    # Without the type the worker sends the file itself; an object's put stays with the
    # key's own actor (the worker's and the handler's PutObject).
    assert policies.follow_ups(replace(complete, file_content_type=None), state) == []
    keyed, keyed_complete = fetched(bucket="pics", key="a.png")
    assert policies.follow_ups(keyed_complete, keyed) == []


def test_no_follow_up_without_the_type_for_an_object_or_before_completion() -> None:
    bare = policies.initiate_complete(initiate(), [{"sha256": A, "size": 4}], A)
    assert policies.follow_ups(bare, run(bare)) == []  # no type: the adapter sends it
    keyed = policies.initiate_complete(
        initiate(bucket="pics", key="k"), [{"sha256": A, "size": 4}], A, "image/png"
    )
    # An object's file is the key's: its PutObject stays with the key's own actor.
    assert policies.follow_ups(keyed, run(keyed)) == []
    started = initiate(file_content_type="image/png")
    assert policies.follow_ups(started, run(started)) == []  # not completed: no file yet
    assert policies.follow_ups(append(), run(initiate(), append())) == []


def test_a_fetch_of_a_long_non_ascii_url_into_a_key_still_makes_its_object() -> None:
    # `source_url` was cut at 4096 characters: up to 16 KiB of UTF-8, past the 8 KiB of
    # metadata the object's PutObject accepts, so such a fetch never became its object.
    keyed, _ = fetched(bucket="pics", key="a.png")
    long_url = "http://x/" + "\u6587" * 4000
    put = policies.file_from_fetch(replace(keyed, url=long_url), "image/png", T0)
    assert put is not None and put.metadata["source_url"] == long_url.encode()[:4096].decode(
        errors="ignore"
    )
    [created] = files.decide(None, put)
    assert created.metadata["fetch_id"] == UID  # type: ignore[attr-defined]
    # An ASCII URL of up to 4096 characters is kept whole, as before.
    ascii_url = "http://x/" + "a" * 4000
    put = policies.file_from_fetch(replace(keyed, url=ascii_url), "image/png", T0)
    assert put is not None and put.metadata["source_url"] == ascii_url
