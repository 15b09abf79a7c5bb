"""`cairn sign`, `cairn ls BUCKET[/PREFIX]`, `cairn download BUCKET/KEY`, `cairn cp` and `cairn rm` as
subprocesses against a running Cairn with objects and signed URLs."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.system import System, wait_until


async def _put(system: System, user: str, bucket: str, key: str, data: bytes) -> dict[str, Any]:
    async with system.client(user) as c:
        r = await c.put(f"/v1/buckets/{bucket}/objects/{key}", content=data)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())


async def test_sign_a_file(system: System, cli_for: Any, tmp_path: Path) -> None:
    user = "sign-user"
    cli = cli_for(user)
    data = os.urandom(50_000)
    (tmp_path / "s.bin").write_bytes(data)
    up = await cli("upload", str(tmp_path / "s.bin"), "--json")
    assert up.code == 0, up.err
    file_id = json.loads(up.out)["files"][0]["file_id"]

    signed = await cli("sign", file_id, "--expires", "15m")
    assert signed.code == 0, signed.err
    url = signed.out.strip()  # the URL alone on stdout
    assert url.startswith("http") and "\n" not in url
    async with httpx.AsyncClient() as anon:  # no token: the signature is the permission
        r = await anon.get(url)
        assert r.status_code == 200 and r.content == data
        assert (await anon.get(url.replace("sig", "xsig", 1))).status_code in (400, 401, 403)
    as_json = json.loads((await cli("sign", file_id, "--expires", "1h", "--json")).out)
    assert set(as_json) >= {"url", "method", "expires_at"} and as_json["method"] == "GET"

    # Errors: one line, the server's code, an exit code.
    bad = await cli("sign", file_id, "--expires", "soon")
    assert bad.code == 2
    too_long = await cli("sign", file_id, "--expires", "100000d")
    assert too_long.code == 1 and "invalid_expires_in" in too_long.err
    theirs = await cli_for("sign-other")("sign", file_id)
    assert theirs.code == 3, theirs.err
    assert (await cli("sign", "not-a-ref")).code == 2


async def test_ls_objects_with_folders_and_download_by_key(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    user = "obj-user"
    cli = cli_for(user)
    assert (await cli("buckets", "create", "tree")).code == 0
    keys = {
        "top.txt": b"top\n",
        "docs/a.txt": b"a\n" * 100,
        "docs/sub/b.txt": b"b\n",
        "docs/sub/c.txt": b"c\n",
    }
    for key, data in keys.items():
        await _put(system, user, "tree", key, data)

    async def listed(*args: str) -> Any:
        done = await cli("ls", *args, "--json")
        assert done.code == 0, done.err
        return json.loads(done.out)

    async def all_there() -> Any:  # the listing is a read model: a bounded lag
        page = await listed("tree", "--recursive")
        return page if len(page["items"]) == len(keys) else None

    page = await wait_until(all_there)
    assert [o["key"] for o in page["items"]] == sorted(keys)  # key order
    top = await listed("tree")
    assert top["common_prefixes"] == ["docs/"]
    assert [o["key"] for o in top["items"]] == ["top.txt"]
    docs = await listed("tree/docs/")
    assert docs["common_prefixes"] == ["docs/sub/"]
    assert [o["key"] for o in docs["items"]] == ["docs/a.txt"]
    table = await cli("ls", "tree/docs/")
    assert table.code == 0
    lines = table.out.splitlines()
    assert any("PRE" in line and "sub/" in line for line in lines)
    assert any(line.rstrip().endswith(" a.txt") for line in lines)
    limited = await listed("tree", "--recursive", "--limit", "2")
    assert [o["key"] for o in limited["items"]] == sorted(keys)[:2]

    out = tmp_path / "b.txt"
    got = await cli("download", "tree/docs/sub/b.txt", "-o", str(out), "--json")
    assert got.code == 0, got.err
    assert out.read_bytes() == b"b\n"
    missing = await cli("download", "tree/docs/nope.txt")
    assert missing.code == 3, missing.err
    nobucket = await cli("ls", "no-such-bucket")
    assert nobucket.code == 3 and "bucket_not_found" in nobucket.err


async def test_rm_deletes_objects_by_bucket_and_key(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    user = "rm-obj-user"
    cli = cli_for(user)
    assert (await cli("buckets", "create", "rm-tree")).code == 0
    for key in ("keep.txt", "dir/a b.txt", "dir/../odd"):
        await _put(system, user, "rm-tree", key.replace(" ", "%20").replace(".", "%2E"), b"x")
    # A `..` in a key is the key's, not a step up: the client keeps it (encoded).
    fetched = await cli("download", "rm-tree/dir/../odd", "-o", "-")
    assert fetched.code == 0 and fetched.out == "x", fetched.err
    signed = await cli("sign", "rm-tree/dir/../odd", "--json")
    assert signed.code == 0 and "/dir/%2E%2E/odd?" in json.loads(signed.out)["url"], signed.err
    done = await cli("rm", "rm-tree/dir/a b.txt", "rm-tree/dir/../odd", "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["deleted"] == [
        {"bucket": "rm-tree", "key": "dir/a b.txt"},
        {"bucket": "rm-tree", "key": "dir/../odd"},
    ]
    async with system.client(user) as c:
        for key, status in (("keep.txt", 200), ("dir/a%20b.txt", 404), ("dir/%2E%2E/odd", 404)):
            assert (await c.head(f"/v1/buckets/rm-tree/objects/{key}")).status_code == status
    human = await cli("rm", "rm-tree/keep.txt")
    assert human.code == 0 and "deleted rm-tree/keep.txt" in human.err
    # Not a file id, not BUCKET/KEY: a usage error; a key or bucket not there, not found;
    # someone else's bucket, not found either (never "forbidden").
    assert (await cli("rm", "just-a-name")).code == 2
    again = await cli("rm", "rm-tree/keep.txt")  # deleting is idempotent on the server
    assert again.code == 0, again.err
    never = await cli("rm", "rm-tree/never.txt")
    assert never.code == 3 and "object_not_found" in never.err
    assert (await cli("rm", "no-such-bucket-x/k")).code == 3
    theirs = await cli_for("rm-obj-other")("rm", "rm-tree/dir/x")
    assert theirs.code == 3, theirs.err


async def test_cp_copies_an_object_on_the_server(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    user = "cp-user"
    cli = cli_for(user)
    for b in ("cp-a", "cp-b"):
        assert (await cli("buckets", "create", b)).code == 0
    await _put(system, user, "cp-a", "dir/%2E%2E/x%20y.txt", b"copied bytes")  # dir/../x y.txt
    to_key = await cli("cp", "cp-a/dir/../x y.txt", "cp-b/new/name.txt", "--json")
    assert to_key.code == 0, to_key.err
    assert json.loads(to_key.out)["key"] == "new/name.txt"
    into_folder = await cli("cp", "cp-a/dir/../x y.txt", "cp-b/folder/")
    assert into_folder.code == 0 and "-> cp-b/folder/x y.txt" in into_folder.err
    into_bucket = await cli("cp", "cp-a/dir/../x y.txt", "cp-b")
    assert into_bucket.code == 0, into_bucket.err
    async with system.client(user) as c:
        for key in ("new/name.txt", "folder/x%20y.txt", "x%20y.txt"):
            got = await c.get(f"/v1/buckets/cp-b/objects/{key}")
            assert got.status_code == 200 and got.content == b"copied bytes", key
    missing = await cli("cp", "cp-a/nope", "cp-b/x")
    assert missing.code == 3 and "object_not_found" in missing.err
    assert (await cli("cp", "cp-a/dir/", "cp-b/x")).code == 2  # a folder: a task's work
    theirs = await cli_for("cp-other")("cp", "cp-a/dir/../x y.txt", "cp-b/z")
    assert theirs.code == 3, theirs.err


async def test_upload_with_a_key_makes_an_object(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    user = "obj-up"
    cli = cli_for(user)
    assert (await cli("buckets", "create", "keyed")).code == 0
    native, tus = os.urandom(300_000), os.urandom(200_000)
    (tmp_path / "n.bin").write_bytes(native)
    (tmp_path / "t.bin").write_bytes(tus)
    for name, key, extra in (("n.bin", "in/native.bin", ()), ("t.bin", "in/tus.bin", ("--tus",))):
        done = await cli(
            "upload", str(tmp_path / name), "--bucket", "keyed", "--key", key, *extra, "--json"
        )
        assert done.code == 0, done.err

    async def both() -> Any:
        page = json.loads((await cli("ls", "keyed/in/", "--json")).out)
        return page if len(page["items"]) == 2 else None

    page = await wait_until(both)
    assert [o["key"] for o in page["items"]] == ["in/native.bin", "in/tus.bin"]
    for key, data in (("in/native.bin", native), ("in/tus.bin", tus)):
        async with system.client(user) as c:
            r = await c.get(f"/v1/buckets/keyed/objects/{key}")
        assert r.status_code == 200 and r.content == data
        out = tmp_path / key.replace("/", "_")
        got = await cli("download", f"keyed/{key}", "-o", str(out))
        assert got.code == 0, got.err
        assert out.read_bytes() == data


async def test_upload_into_a_bucket_keys_a_file_by_its_name(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    # As `aws s3 cp f s3://b/` does: without --key a file is keyed by its name, and a --key
    # ending in / is a prefix for several files' names.
    user = "obj-named"
    cli = cli_for(user)
    assert (await cli("buckets", "create", "named")).code == 0
    datas = {name: os.urandom(1_000 + i) for i, name in enumerate(("a.txt", "b.txt", "c.txt"))}
    for name, data in datas.items():
        (tmp_path / name).write_bytes(data)
    runs = (
        ([str(tmp_path / "a.txt")], ()),
        ([str(tmp_path / "b.txt")], ("--tus",)),
        ([str(tmp_path / "a.txt"), str(tmp_path / "c.txt")], ("--key", "sub/")),
    )
    for paths, extra in runs:
        done = await cli("upload", *paths, "--bucket", "named", *extra, "--json")
        assert done.code == 0, done.err

    async def all_four() -> Any:
        page = json.loads((await cli("ls", "named", "--recursive", "--json")).out)
        return page if len(page["items"]) == 4 else None

    page = await wait_until(all_four)
    keys = {o["key"]: o for o in page["items"]}
    assert sorted(keys) == ["a.txt", "b.txt", "sub/a.txt", "sub/c.txt"]
    for key in keys:
        async with system.client(user) as c:
            r = await c.get(f"/v1/buckets/named/objects/{key}")
        assert r.status_code == 200 and r.content == datas[key.rsplit("/", 1)[-1]]
    # Outside a bucket a file keeps no key unless given one; --key without / still names
    # one object only.
    plain = json.loads((await cli("upload", str(tmp_path / "c.txt"), "--json")).out)
    assert plain["files"][0]["key"] is None
    two = await cli("upload", str(tmp_path / "a.txt"), str(tmp_path / "c.txt"), "--key", "k")
    assert two.code == 2 and "prefix ending in /" in two.err


async def test_upload_meta_sets_the_objects_metadata(
    system: System, cli_for: Any, tmp_path: Path
) -> None:
    """`--meta NAME=VALUE` (repeatable) on every way `cairn upload` sends: native, tus, and
    stdin; the object answers it as x-amz-meta-* headers."""
    user = "obj-meta"
    cli = cli_for(user)
    assert (await cli("buckets", "create", "meta")).code == 0
    (tmp_path / "m.bin").write_bytes(b"with metadata")
    meta = ("--meta", "color=blue", "--meta", "formula=a=b")
    for key, extra in (("native", ()), ("tus", ("--tus",))):
        done = await cli(
            "upload", str(tmp_path / "m.bin"), "--bucket", "meta", "--key", key, *meta, *extra
        )
        assert done.code == 0, done.err
    proc = await cli.start(
        "upload", "-", "--bucket", "meta", "--key", "stdin", *meta, stdin=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(b"from stdin"), 120)
    assert proc.returncode == 0, err.decode()
    want = {"x-amz-meta-color": "blue", "x-amz-meta-formula": "a=b"}
    async with system.client(user) as c:
        for key in ("native", "tus", "stdin"):

            async def made(key: str = key) -> Any:
                r = await c.head(f"/v1/buckets/meta/objects/{key}")
                return r if r.status_code == 200 else None

            # (a native or tus upload becomes its object when the handler has run)
            r = await wait_until(made)
            got = {k: v for k, v in r.headers.items() if k.startswith("x-amz-meta-")}
            # (besides what the client itself records: tus's filename, bucket, key)
            assert want.items() <= got.items(), (key, dict(r.headers))
    # A name cairn sets itself, or no `=`: a usage error, nothing sent.
    for bad in ("key=x", "Filename=x", "novalue", "=v"):
        done = await cli("upload", str(tmp_path / "m.bin"), "--bucket", "meta", "--meta", bad)
        assert done.code == 2 and "--meta" in done.err, (bad, done.err)


async def test_a_key_holding_terminal_controls_is_shown_escaped_and_exact_in_json(
    system: System, cli_for: Any
) -> None:
    """A key another user could choose (keys may hold any character but NUL, as S3's do):
    ESC sequences, CR and a bidi override reach the terminal as visible escapes from `ls`
    and `events`, and exactly as they are in `--json` (output.printable)."""
    user = "ctl-user"
    cli = cli_for(user)
    assert (await cli("buckets", "create", "ctl-keys")).code == 0
    key = "x\x1b[2J\x1b]0;owned\x07\ry\u202egpj.exe"
    shown = "x\\x1b[2J\\x1b]0;owned\\x07\\x0dy\\u202egpj.exe"
    put = await _put(system, user, "ctl-keys", quote(key, safe=""), b"hostile\n")

    async def listed() -> Any:
        done = await cli("ls", "ctl-keys", "--json")
        assert done.code == 0, done.err
        return json.loads(done.out) if json.loads(done.out)["items"] else None

    page = await wait_until(listed)
    assert [o["key"] for o in page["items"]] == [key]  # --json: the exact key

    table = await cli("ls", "ctl-keys")
    assert table.code == 0, table.err
    for c in ("\x1b", "\r", "\x07", "\u202e"):
        assert c not in table.out, repr(c)
    assert table.out.splitlines()[1].endswith(shown)

    stream = f"file-{put['id']}"
    human = await cli("events", "--since", "0", "--stream", stream, "--limit", "1")
    assert human.code == 0, human.err
    for c in ("\x1b", "\r", "\x07", "\u202e"):
        assert c not in human.out, repr(c)
    assert shown in human.out and len(human.out.splitlines()) == 1
    exact = await cli("events", "--since", "0", "--stream", stream, "--limit", "1", "--json")
    assert exact.code == 0, exact.err
    assert json.loads(exact.out)["data"]["key"] == key
