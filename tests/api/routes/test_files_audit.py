"""An adversarial pass over files and buckets (issue: audit of /v1/files and /v1/buckets):
bad list parameters, hostile names, other users' ids, and races between moves and
deletes. Each test names the hole it pins down."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from api import object_move
from api.routes import buckets as buckets_route
from api.routes import files as files_route
from domain.buckets.commands import UpdateBucket as UpdateBucketCommand
from domain.commands import UpdateFile as UpdateFileCommand
from domain.files.keys import object_file_id
from tests.api.answers import assert_error, make_bucket, opath, user
from tests.api.routes.test_objects import object_events
from tests.system import System, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _nothing_unprojected(*_: object) -> list[str]:
    return []


async def put_plain(
    c: httpx.AsyncClient, name: str = "f.txt", data: bytes = b"hello", ctype: str | None = None
) -> str:
    body: dict[str, object] = {
        "file_name": name,
        "file_size": len(data),
        "chunk_size": max(1, len(data)),
    }
    if ctype is not None:
        body["content_type"] = ctype
    r = await c.post("/v1/uploads", json=body)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert (await c.put(f"/v1/uploads/{uid}/chunks/0", content=data)).status_code == 201
    r = await c.post(f"/v1/uploads/{uid}/complete")
    assert r.status_code == 200, r.text
    return str(r.json()["file_id"])


async def test_created_range_out_of_the_calendar_is_400(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        for name, value in [
            ("created_after", "0001-01-01T00:00:00+14:00"),
            ("created_before", "9999-12-31T23:59:59-14:00"),
            ("created_after", "not a date"),
            ("created_after", "2026-13-01"),
        ]:
            r = await c.get("/v1/files", params={name: value})
            assert_error(r, 400, "invalid_query")


async def test_list_paging_and_sort_are_validated(shared_system: System) -> None:
    async with shared_system.client(user()) as c:
        for params in [
            {"limit": "0"},
            {"limit": "-1"},
            {"limit": "1001"},
            {"limit": "abc"},
            {"offset": "-1"},
            {"offset": "99999999999999999999"},
            {"sort": "id"},
            {"sort": "name; DROP TABLE readmodel.files"},
            {"order": "sideways"},
            {"cursor": "x"},
        ]:
            r = await c.get("/v1/files", params=params)
            assert r.status_code == 400, (params, r.text)
            assert set(r.json()) == {"error", "request_id"}


async def test_two_racing_moves_of_one_object_leave_one_object(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two PATCHes moving one object to two keys: both copied, the second's delete of the
    source found it already gone (moved by the first), and both answered 200, leaving two
    objects where there was one. Run in either order there would be one (the later move
    finds no source: 404); so the loser now takes its copy back and answers 404."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        src = (await c.put(opath(b, "src"), content=b"one object")).json()
        send_as = object_move.send_as
        other: dict[str, object] = {}

        async def move_elsewhere_first(*args: object, **kw: object) -> object:
            # Between this move's copy and its delete, another move of the same source
            # runs to its end (copy to `b-key`, delete the source).
            if not other:
                other["r"] = None
                other["r"] = await c.patch(f"/v1/files/{src['id']}", json={"key": "b-key"})
            return await send_as(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(object_move, "send_as", move_elsewhere_first)
        r = await c.patch(f"/v1/files/{src['id']}", json={"key": "a-key"})
        first = other["r"]
        assert first is not None and first.status_code == 200, first.text  # type: ignore[attr-defined]
        assert_error(r, 404, "file_not_found")
        assert (await c.get(opath(b, "b-key"))).content == b"one object"
        assert_error(await c.get(opath(b, "a-key")), 404, "object_not_found")
        assert_error(await c.get(opath(b, "src")), 404, "object_not_found")
        assert await object_events(shared_system.pool, b, "a-key") == ["FileCreated", "FileDeleted"]


async def test_a_move_racing_a_delete_of_its_source_leaves_nothing_behind(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DELETE of the source between a move's copy and its delete: the move answered 200
    and the bytes lived on under the new key (as if the DELETE came second, and found
    the old id gone). The DELETE is now taken as first, as for two moves: the move
    answers 404 and takes its copy back, so what the DELETE removed stays removed."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        src = (await c.put(opath(b, "doomed"), content=b"delete me")).json()
        send_as = object_move.send_as
        deleted: list[int] = []

        async def delete_first(*args: object, **kw: object) -> object:
            if not deleted:
                deleted.append((await c.delete(f"/v1/files/{src['id']}")).status_code)
            return await send_as(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(object_move, "send_as", delete_first)
        r = await c.patch(f"/v1/files/{src['id']}", json={"key": "escaped"})
        assert deleted == [200]
        assert_error(r, 404, "file_not_found")
        assert_error(await c.get(opath(b, "escaped")), 404, "object_not_found")
        assert_error(await c.get(opath(b, "doomed")), 404, "object_not_found")
        assert object_file_id(b, "escaped") != src["id"]


async def test_a_previous_owners_leftover_object_is_not_the_new_owners(
    shared_system: System,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bucket deleted (not forced) within the projector's lag of a PUT leaves that object
    behind when the projector is far behind (README, Buckets). Whoever takes the name next addresses
    the same aggregate for the same key (its id comes from bucket and key): the new
    owner's `PUT If-None-Match: *` was 412 `object_exists`, telling them another user's
    object is there, and a plain PUT answered 200 "replaced". The leftover is now no
    object of theirs: the PUT creates (201), the old owner's file deleted first."""
    x, y = user(), user()
    async with shared_system.client(x) as cx, shared_system.client(y) as cy:
        name = await make_bucket(cx)
        # A projector more than UNPROJECTED_TAIL file events behind: the delete finds
        # neither the PUT in the read model nor among the newest events it reads.
        monkeypatch.setattr(buckets_route, "_unprojected", _nothing_unprojected)
        await shared_system.stop("projector")  # the read model does not see the PUT yet
        try:
            old = await cx.put(opath(name, "k"), content=b"x's bytes")
            assert old.status_code == 201, old.text
            r = await cx.delete(f"/v1/buckets/{name}")
            assert r.status_code == 200, r.text  # the documented lag: it looked empty
        finally:
            shared_system.start("projector")
        assert (await cy.post("/v1/buckets", json={"name": name})).status_code == 201
        r = await cy.put(opath(name, "k"), content=b"y's bytes", headers={"If-None-Match": "*"})
        assert r.status_code == 201, r.text
        assert (await cy.get(opath(name, "k"))).content == b"y's bytes"
        r = await cy.put(opath(name, "k2"), content=b"fresh")
        assert r.status_code == 201, r.text
        assert await object_events(shared_system.pool, name, "k") == [
            "FileCreated",
            "FileDeleted",
            "FileCreated",
        ]
        # The old owner's file is gone, as their bucket is; the id is the new owner's.
        assert_error(await cx.get(f"/v1/files/{old.json()['id']}"), 404, "file_not_found")

        async def usage_settled() -> bool:
            n = await shared_system.pool.fetchval(
                "SELECT count(*) FROM readmodel.files WHERE owner = $1 AND deleted_at IS NULL",
                x,
            )
            return n == 0

        await wait_until(usage_settled)


async def test_a_patch_that_was_applied_answers_200_though_a_delete_follows(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DELETE landing between a PATCH's command and its read-back made the PATCH answer
    404 `file_not_found`, though its rename was applied (the event is there, before the
    delete): a client would retry a change that happened. It now answers what it did."""
    async with shared_system.client(user()) as c:
        fid = await put_plain(c)
        send_as = files_route.send_as

        async def then_delete(*args: object, **kw: object) -> object:
            result = await send_as(*args, **kw)  # type: ignore[arg-type]
            if args[2] is UpdateFileCommand:  # (the DELETE's own command goes through)
                assert (await c.delete(f"/v1/files/{fid}")).status_code == 200
            return result

        monkeypatch.setattr(files_route, "send_as", then_delete)
        r = await c.patch(f"/v1/files/{fid}", json={"name": "renamed.txt"})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "renamed.txt" and r.json()["id"] == fid
        rows = await shared_system.pool.fetch(
            "SELECT event_type FROM eventstore.events WHERE stream_id = $1 ORDER BY version",
            f"file-{fid}",
        )
        assert [r["event_type"] for r in rows] == ["FileCreated", "FileUpdated", "FileDeleted"]
        # A PATCH after the delete is refused by the command: the same 404 as ever.
        monkeypatch.setattr(files_route, "send_as", send_as)
        assert_error(await c.patch(f"/v1/files/{fid}", json={"name": "x"}), 404, "file_not_found")


async def test_made_private_ends_public_reads_at_once_and_signed_urls_outlive_it(
    shared_system: System,
) -> None:
    """What the README promises when a public bucket turns private: its files and objects
    stop being public at the next request (anonymous 401, another user 404, as for
    anything private), and a signed URL issued meanwhile works until it expires."""
    async with (
        shared_system.client(user()) as c,
        shared_system.client(None) as anon,
        shared_system.client(user()) as other,
    ):
        b = await make_bucket(c, public=True)
        obj = (await c.put(opath(b, "k"), content=b"was public")).json()
        fid = await put_plain(c)
        assert (await c.patch(f"/v1/files/{fid}", json={"bucket": b})).status_code == 200
        for cl in (anon, other):
            assert (await cl.get(f"/v1/files/{obj['id']}")).status_code == 200
            assert (await cl.get(f"/v1/files/{fid}/content")).content == b"hello"
            assert (await cl.get(opath(b, "k"))).content == b"was public"
        signed = await c.post(f"/v1/files/{obj['id']}/signed-url", json={"expires_in": 60})
        assert signed.status_code == 200, signed.text
        # Anyone may read a public file, yet only its owner signs.
        r = await other.post(f"/v1/files/{obj['id']}/signed-url", json={"expires_in": 60})
        assert_error(r, 404, "file_not_found")

        assert (await c.patch(f"/v1/buckets/{b}", json={"public": False})).status_code == 200
        for cl, status in ((anon, 401), (other, 404)):
            assert (await cl.get(f"/v1/files/{obj['id']}")).status_code == status
            assert (await cl.get(f"/v1/files/{fid}/content")).status_code == status
            assert (await cl.get(opath(b, "k"))).status_code == status
        async with httpx.AsyncClient() as raw:
            assert (await raw.get(signed.json()["url"])).content == b"was public"


async def test_a_bucket_patch_that_was_applied_answers_200_though_a_delete_follows(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucket PATCH read the bucket back after its command: a DELETE in between made
    it 404 though the change was recorded. It answers the state its command left."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        # Answered from the actor's reply: exactly what a read gives.
        patched = await c.patch(f"/v1/buckets/{b}", json={"description": "first"})
        read = (await c.get(f"/v1/buckets/{b}")).json()
        assert patched.json() == {k: v for k, v in read.items() if "usage" not in k}
        send_as = buckets_route.send_as

        async def then_delete(*args: object, **kw: object) -> object:
            result = await send_as(*args, **kw)  # type: ignore[arg-type]
            if args[2] is UpdateBucketCommand:
                assert (await c.delete(f"/v1/buckets/{b}")).status_code == 200
            return result

        monkeypatch.setattr(buckets_route, "send_as", then_delete)
        r = await c.patch(f"/v1/buckets/{b}", json={"public": True, "description": "d"})
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["public"], r.json()["description"]) == (b, True, "d")
        rows = await shared_system.pool.fetch(
            "SELECT event_type FROM eventstore.events WHERE stream_id = $1 ORDER BY version",
            f"bucket-{b}",
        )
        assert [r["event_type"] for r in rows] == [
            "BucketCreated",
            "BucketUpdated",
            "BucketUpdated",
            "BucketDeleted",
        ]
        monkeypatch.setattr(buckets_route, "send_as", send_as)
        assert_error(
            await c.patch(f"/v1/buckets/{b}", json={"public": False}), 404, "bucket_not_found"
        )


async def test_concurrent_moves_of_one_object_one_wins(shared_system: System) -> None:
    """Without any hook: moves of one object sent at once, to different keys and to the
    same key. Whatever the interleaving, exactly one answers 200 and exactly one object
    holds the bytes; the others are a clean 404 (source gone) or 409 (key taken)."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        for round_, targets in enumerate((["x1", "x2", "x3"], ["same", "same", "same"])):
            src = (await c.put(opath(b, f"src{round_}"), content=b"once")).json()
            rs = await asyncio.gather(
                *(c.patch(f"/v1/files/{src['id']}", json={"key": t}) for t in targets)
            )
            codes = sorted(r.status_code for r in rs)
            assert codes.count(200) == 1 and set(codes) <= {200, 404, 409}, [r.text for r in rs]
            live = [
                k
                for k in {*targets, f"src{round_}"}
                if (await c.get(opath(b, k))).status_code == 200
            ]
            winner = next(r for r in rs if r.status_code == 200).json()["key"]
            assert live == [winner], live


async def test_a_patch_echoing_the_files_own_bucket_is_no_move(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that reads a file and sends it back changed (`{name, bucket, metadata}`)
    names the bucket the file is in. When that bucket is gone (deleted within the read
    model's lag, the file left behind), the unchanged `bucket` was checked as a move and
    refused 404 `bucket_not_found`: the rename could not be made at all. Only a bucket
    that changes is a move, and only a move is checked."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        monkeypatch.setattr(buckets_route, "_unprojected", _nothing_unprojected)  # (as above)
        await shared_system.stop("projector")  # the delete does not see the file yet
        try:
            fid = await put_plain(c)
            assert (await c.patch(f"/v1/files/{fid}", json={"bucket": b})).status_code == 200
            assert (await c.delete(f"/v1/buckets/{b}")).status_code == 200
        finally:
            shared_system.start("projector")
        f = (await c.get(f"/v1/files/{fid}")).json()
        assert f["bucket"] == b
        r = await c.patch(
            f"/v1/files/{fid}",
            json={"name": "renamed.txt", "bucket": f["bucket"], "metadata": {"k": "v"}},
        )
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["bucket"], r.json()["metadata"]) == (
            "renamed.txt",
            b,
            {"k": "v"},
        )
        # A move into the gone bucket from elsewhere is still refused.
        other = await put_plain(c)
        assert_error(
            await c.patch(f"/v1/files/{other}", json={"bucket": b}), 404, "bucket_not_found"
        )


async def test_a_move_that_was_made_answers_200_though_a_delete_follows(
    shared_system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for a rename: the new object deleted right after the move made the PATCH answer
    404 though the move was made. It answers the object the move made."""
    async with shared_system.client(user()) as c:
        b = await make_bucket(c)
        src = (await c.put(opath(b, "m-src"), content=b"moved")).json()
        move = files_route.move_object

        async def then_delete(*args: object, **kw: object) -> str:
            new_id = await move(*args, **kw)  # type: ignore[arg-type]
            assert (await c.delete(f"/v1/files/{new_id}")).status_code == 200
            return new_id

        monkeypatch.setattr(files_route, "move_object", then_delete)
        r = await c.patch(f"/v1/files/{src['id']}", json={"key": "m-dst"})
        assert r.status_code == 200, r.text
        assert (r.json()["key"], r.json()["id"]) == ("m-dst", object_file_id(b, "m-dst"))
        assert await object_events(shared_system.pool, b, "m-dst") == ["FileCreated", "FileDeleted"]
