"""The client half of the `cairn` command: subcommands that talk HTTP to a Cairn server.

    cairn login --url URL [--token TOKEN]       save the server and token (config file)
    cairn upload PATH... [--bucket B] [--key K] [--meta N=V]... [--header 'N: V']...
                 [--parallel N] [--tus]
    cairn upload - [--name NAME] [--bucket B] [--key K]   stdin, through tus (pipe.py)
    cairn download ID|BUCKET/KEY [-o PATH]
    cairn ls [BUCKET[/PREFIX]]                  objects and folders; no argument: files
    cairn cp BUCKET/KEY BUCKET[/KEY]                server-side object copy (S3 CopyObject)
    cairn rm FILE_ID|BUCKET/KEY...
    cairn stats                                 upload statistics
    cairn events [--follow] [--type T] [--aggregate A] [--since POSITION]
    cairn buckets ls|create|show|rm             (bus/client/buckets.py)
    cairn tasks create|ls|show|pause|resume|cancel (bus/client/tasks.py)
    cairn fetch URL [--follow]; cairn fetches ls|show|pause|resume|cancel|retry (fetches.py)
    cairn sign FILE_ID|BUCKET/KEY [--expires 1h]  a signed URL (sign.py)

Every one takes --url, --token and --json; see errors.py for the exit codes. Registered
on the operator CLI's parser (bus/run/cli.py), so it is one `cairn` command.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bus.client import (
    buckets,
    config,
    counts,
    download,
    events,
    fetches,
    objects,
    pipe,
    sign,
    tasks,
    upload,
)
from bus.client.errors import (
    BROKEN_PIPE,
    EXIT_CODES,
    INTERRUPTED,
    OK,
    RESUMABLE,
    USAGE,
    ClientError,
    Interrupted,
)
from bus.client.http import (
    NUMBER,
    SHAPE_ERRORS,
    check,
    json_of,
    open_client,
    segment,
    unexpected,
    unreachable,
)
from bus.client.output import Output, human_bytes, to_the_second
from bus.terminal import printable

# Chunks of one file in flight (`cairn upload --streams`): enough to overlap each chunk's
# store and command round trip on the server with the next chunk's bytes.
STREAMS = 4
PARALLEL = 2  # files sent at once (`cairn upload --parallel`)

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size_arg(value: str) -> int:
    """`1048576`, `512k`, `8M`, `1G` (binary units)."""
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]?)(i?[bB])?", value.strip())
    if not m or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size like 512k, 8M or 1G")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


# Upload metadata the client itself sets (tus: the file's name, type, bucket and key).
_RESERVED_META = ("filename", "filetype", "bucket", "key")
# The headers an object stores, and their bound: the server's (domain/files/headers.py),
# part of its public API. Copied, not imported: importing the domain package costs every
# `cairn` command's start-up most of 0.1 s (tests/bus/client/test_upload_headers.py pins
# the copy to the original).
STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
MAX_HEADER_BYTES = 1024


def meta_arg(value: str) -> tuple[str, str]:
    """`--meta NAME=VALUE`: one user metadata entry (the value may hold `=`)."""
    name, eq, text = value.partition("=")
    if not eq or not name:
        raise argparse.ArgumentTypeError(f"{value!r} is not NAME=VALUE")
    if name.lower() in _RESERVED_META:
        raise argparse.ArgumentTypeError(
            f"{name!r} is set by cairn upload itself (--name, --bucket, --key)"
        )
    if name.lower() in STORED_HEADERS:  # tus would take it for the stored header
        raise argparse.ArgumentTypeError(f"{name!r} is a stored header: use --header")
    try:  # an argument's bytes that are not UTF-8 reach Python as lone surrogates
        value.encode()
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{value!r} is not UTF-8 text") from None
    return name, text


def header_arg(value: str) -> tuple[str, str]:
    """`--header 'NAME: VALUE'`: one of the object's stored headers (domain/files/headers.py),
    by lower-case name. Checked here by the server's rule, so a bad one is a usage error
    before any byte is hashed or sent."""
    name, colon, text = value.partition(":")
    name, text = name.strip().lower(), text.strip()
    if not colon or not name:
        raise argparse.ArgumentTypeError(f"{value!r} is not 'NAME: VALUE'")
    if name not in STORED_HEADERS:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not a header an object stores (only {', '.join(STORED_HEADERS)})"
        )
    if not all(" " <= ch <= "~" for ch in text):
        raise argparse.ArgumentTypeError(f"{name} may hold visible ASCII and spaces only")
    if len(text) > MAX_HEADER_BYTES:  # ASCII: characters are bytes
        raise argparse.ArgumentTypeError(f"{name} is over {MAX_HEADER_BYTES} bytes")
    return name, text


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("server")
    g.add_argument(
        "--url",
        default=None,
        help="server (default: CAIRN_URL, `cairn login`, or the local `cairn up`:"
        f" http://127.0.0.1:$CAIRN_PORT, {config.DEFAULT_URL} when unset)",
    )
    g.add_argument(
        "--token", default=None, help="bearer token (default: CAIRN_TOKEN or `cairn login`)"
    )
    g.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    return p


EPILOG = "exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items())


def register(sub: Any) -> None:
    common = [_common()]

    def add(name: str, func: Callable[[argparse.Namespace, Output], int], help: str) -> Any:
        p = sub.add_parser(name, help=help, description=help, parents=common, epilog=EPILOG)
        p.set_defaults(func=lambda args: run(func, args))
        return p

    def add_under(
        parent: Any,
        name: str,
        func: Callable[[argparse.Namespace, Output, config.Target], int],
        help: str,
    ) -> Any:
        """A command of a group (`cairn buckets ls`), handed the resolved server and token."""
        p = parent.add_parser(name, help=help, description=help, parents=common, epilog=EPILOG)
        p.set_defaults(func=lambda args: run(lambda a, o: func(a, o, _target(a)), args))
        return p

    buckets.register(sub, add_under)
    tasks.register(sub, add_under)
    fetches.register(sub, add_under)
    sign.register(sub, add_under)

    p = add("login", cmd_login, "save a server URL and token for the other client commands")
    p.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="verify the token against the server first (default: yes)",
    )

    p = add(
        "upload",
        cmd_upload,
        "upload files or directories (resumable: run it again after Ctrl-C), or stdin (-)",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files, and directories (sent with their tree); - alone: standard input, sent"
        " as it is read (through tus; not resumable, as stdin cannot be read again: Ctrl-C"
        " or a failure removes the partial upload from the server)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="with -: the file's name (default: the last part of --key, else `stdin`)",
    )
    p.add_argument(
        "--bucket", default=None, help="bucket to upload into (default: the server's default)"
    )
    p.add_argument(
        "--key",
        default=None,
        help=(
            "object key; ending in / a prefix for the files' names (a directory's files go"
            " under it); in a bucket a file's key is its name by default"
        ),
    )
    p.add_argument(
        "--meta",
        type=meta_arg,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="user metadata of each file or object (repeatable; an object's are answered"
        " as x-amz-meta-NAME headers when printable ASCII; not `filename`, `filetype`,"
        " `bucket`, `key`, nor a stored header's name: see --header)",
    )
    p.add_argument(
        "--header",
        type=header_arg,
        action="append",
        default=[],
        dest="headers",
        metavar="'NAME: VALUE'",
        help="a stored header of each object, answered by its GET and HEAD: Cache-Control,"
        " Content-Disposition, Content-Encoding, Content-Language or Expires (repeatable;"
        " a name twice: the last wins; needs --bucket, as a plain file keeps none)",
    )
    # (Defaults applied in cmd_upload: None tells that an option was not given, which
    # `-` needs to refuse one that cannot apply.)
    p.add_argument(
        "--parallel",
        type=counts.positive,
        default=None,
        metavar="N",
        help=f"files sent at once (default {PARALLEL}; not with -)",
    )
    p.add_argument(
        "--streams",
        type=counts.positive,
        default=None,
        metavar="N",
        help=f"chunks of one file sent at once (default {STREAMS}; not with --tus or -,"
        " whose bytes go in order)",
    )
    p.add_argument(
        "--chunk-size",
        type=size_arg,
        default=None,
        metavar="SIZE",
        help="chunk size, e.g. 8M (default: the server's; with --tus or -, 8M)",
    )
    p.add_argument(
        "--limit-rate",
        type=size_arg,
        default=None,
        metavar="RATE",
        help="at most RATE bytes per second, e.g. 10M",
    )
    p.add_argument(
        "--tus",
        action="store_true",
        help="use the tus protocol (/v1/tus/) instead of the native chunked API; resumable too",
    )

    p = add("download", cmd_download, "download a file (resumable: run it again after Ctrl-C)")
    p.add_argument(
        "ref",
        metavar="ID|BUCKET/KEY",
        help="a file id (`cairn ls`), or an object's bucket and key (`cairn ls BUCKET`)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="PATH",
        help="file, or directory to put it in (a path ending in / is one, created if"
        " missing); - for stdout (default: the file's name, here)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a file already there under the server's name of the file (without -o"
        " PATH naming the file, an existing one is refused)",
    )
    p.add_argument(
        "--limit-rate",
        type=size_arg,
        default=None,
        metavar="RATE",
        help="at most RATE bytes per second, e.g. 10M",
    )

    p = add(
        "ls",
        cmd_ls,
        "list a bucket's objects and folders (BUCKET[/PREFIX]), or your files (no argument)",
    )
    p.add_argument(
        "where",
        nargs="?",
        default=None,
        metavar="BUCKET[/PREFIX]",
        help="a bucket, and a key prefix in it (a folder ends in /); none: your files",
    )
    p.add_argument(
        "--files",
        action="store_true",
        help="list files (newest first; PREFIX is a name prefix) instead of objects",
    )
    p.add_argument(
        "--recursive", "-r", action="store_true", help="every key under PREFIX, no folders"
    )
    p.add_argument("--full", action="store_true", help="whole keys, not relative to the folder")
    p.add_argument(
        "--limit",
        type=counts.positive,
        default=None,
        metavar="N",
        help="at most N (files: default 100)",
    )
    p.add_argument(
        "--offset", type=counts.not_negative, default=0, metavar="N", help="files: skip the first N"
    )

    p = add("cp", cmd_cp, "copy an object on the server (no bytes go through this machine)")
    p.add_argument("source", metavar="BUCKET/KEY", help="the object to copy")
    p.add_argument(
        "dest",
        metavar="BUCKET[/KEY]",
        help="where to: a key, or a bucket or folder (ending in /) that keeps the source's"
        " last part as the name",
    )

    p = add("rm", cmd_rm, "delete files and objects")
    p.add_argument(
        "ids",
        nargs="+",
        metavar="FILE_ID|BUCKET/KEY",
        help="a file's id (`cairn ls --files`), or an object's bucket and key (`cairn ls BUCKET`)",
    )

    add("stats", cmd_stats, "upload statistics: counts by status, bytes, recent activity")

    p = add(
        "events",
        cmd_events,
        "print the events after --since (none without it) and stop; with -f, live from there",
    )
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep going: print new events as they come, reconnect and resume after a drop",
    )
    p.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="TYPE",
        help="event type, e.g. UploadCompleted (repeatable)",
    )
    p.add_argument(
        "--aggregate",
        action="append",
        default=[],
        metavar="NAME",
        help="uploads, files, ... (repeatable)",
    )
    p.add_argument(
        "--stream",
        action="append",
        default=[],
        metavar="ID",
        help="one aggregate's id (repeatable)",
    )
    p.add_argument(
        "--since",
        type=counts.not_negative,
        default=None,
        metavar="POSITION",
        help="resume after this position (0: everything)",
    )
    p.add_argument(
        "--limit", type=counts.positive, default=None, metavar="N", help="stop after N events"
    )


def run(func: Callable[[argparse.Namespace, Output], int], args: argparse.Namespace) -> int:
    """One line on stderr and an exit code for every failure; never a traceback."""
    out = Output(args.json)
    try:
        try:
            return func(args, out)
        except SHAPE_ERRORS as e:
            # An answer of the wrong shape read past what json_of checked: one line too.
            raise unexpected(e) from None
    except ClientError as e:
        if args.json:
            out.emit(
                {
                    "error": {"code": e.code, "message": e.message, "details": e.details},
                    "status": e.status,
                }
            )
        print(e.line(), file=sys.stderr)
        return e.exit_code
    except (Interrupted, KeyboardInterrupt):
        if _from_stdin(args):  # read once: nothing to resume (pipe.py removed the upload)
            hint = "; an upload from stdin cannot be resumed"
        elif _to_a_stream(args):  # no part was kept: a second run starts over
            hint = "; a download to a stream cannot be resumed"
        elif args.command in RESUMABLE:
            hint = "; run the same command again to resume"
        else:
            hint = ""
        print(f"cairn: interrupted{hint}", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # `cairn events | head -1`: the reader has all it wanted. Quiet, as a shell tool
        # ended by SIGPIPE; stdout now points at /dev/null so that the interpreter's last
        # flush of what is still buffered does not fail (and print) once more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except httpx.TransportError as e:
        err = unreachable(config.resolve(args.url, args.token).url, e)
        print(err.line(), file=sys.stderr)
        return err.exit_code
    except OSError as e:
        # The error names a path, which may be a server-chosen name (a download).
        print(printable(f"cairn: error: io_error: {e}"), file=sys.stderr)
        return 1


def _target(args: argparse.Namespace) -> config.Target:
    target = config.checked(config.resolve(args.url, args.token))
    if not target.token:
        raise ClientError(
            "no token: pass --token, set CAIRN_TOKEN, or run `cairn login`",
            code="no_token",
            exit_code=4,
        )
    return target


# ------------------------------------------------------------------ commands


def cmd_login(args: argparse.Namespace, out: Output) -> int:
    target = config.checked(config.resolve(args.url, args.token))
    token = args.token or (
        getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    )
    if not token:
        raise ClientError("no token given", code="no_token", exit_code=USAGE)
    if args.check:
        with open_client(config.Target(target.url, token)) as client:
            json_of(client.get("/v1/uploads", params={"limit": 1}), items=list)
    path = config.save(target.url, token)
    if args.json:
        out.emit({"url": target.url, "config": str(path)})
    else:
        out.note(f"logged in to {target.url} (saved in {path})")
    return OK


def _from_stdin(args: argparse.Namespace) -> bool:
    return args.command == "upload" and "-" in (getattr(args, "paths", None) or [])


def _to_a_stream(args: argparse.Namespace) -> bool:
    """`download -o -`, or to a FIFO or a device: written in place, without a part."""
    output = getattr(args, "output", None)
    if args.command != "download" or output is None:
        return False
    return output == "-" or (download.is_special(Path(output)) and not Path(output).is_dir())


def _usage(message: str) -> ClientError:
    return ClientError(message, code="usage", exit_code=USAGE)


def _upload_stdin(args: argparse.Namespace, out: Output) -> tuple[list[dict[str, Any]], list[Any]]:
    """`cairn upload -`: checked, then sent (pipe.py); a failure is raised, not listed."""
    if args.paths != ["-"]:
        raise _usage("- (standard input) is uploaded alone: give no other path with it")
    for flag, value in (("--parallel", args.parallel), ("--streams", args.streams)):
        if value is not None and value > 1:
            raise _usage(f"{flag} does not apply to -: stdin is read once, in order")
    name, key = pipe.names(args.name, args.key, args.bucket)
    stdin = pipe.readable_stdin()  # before the token: a usage error first
    result = pipe.upload_stdin(
        _target(args),
        stdin,
        name=name,
        key=key,
        bucket=args.bucket,
        chunk_size=args.chunk_size,
        limit_rate=args.limit_rate,
        console=out.err,
        # tus: the stored headers are Upload-Metadata keys of their lower-case names.
        metadata={**dict(args.meta), **dict(args.headers)},
    )
    return [result], []


def cmd_upload(args: argparse.Namespace, out: Output) -> int:
    if args.headers and not args.bucket:
        # The server refuses them on a plain file (it keeps none): say so before any byte.
        raise _usage("--header sets an object's stored headers: give --bucket too")
    if "-" in args.paths:
        results, failures = _upload_stdin(args, out)
    else:
        if args.name is not None:
            raise _usage("--name names what is read from stdin: use it with -")
        target = _target(args)
        jobs = upload.collect(args.paths, args.key, in_bucket=bool(args.bucket))
        if args.meta:
            meta = tuple(dict(args.meta).items())  # a name given twice: the last wins
            jobs = [dataclasses.replace(job, metadata=meta) for job in jobs]
        if args.headers:
            stored = tuple(dict(args.headers).items())  # a name given twice: the last wins
            jobs = [dataclasses.replace(job, headers=stored) for job in jobs]
        results, failures = upload.upload(
            target,
            jobs,
            bucket=args.bucket,
            parallel=args.parallel or PARALLEL,
            chunk_size=args.chunk_size,
            limit_rate=args.limit_rate,
            console=out.err,
            tus=args.tus,
            streams=args.streams or STREAMS,
        )
    for job, err in failures:
        print(printable(f"cairn: error: {job.path}: {err.code}: {err.message}"), file=sys.stderr)
    if args.json:
        out.emit(
            {
                "files": results,
                "failed": [
                    {"path": str(j.path), "code": e.code, "message": e.message} for j, e in failures
                ],
            }
        )
    elif results:  # (nothing uploaded: the errors above say why, no empty table)
        rows = [
            {
                **r,
                "size": human_bytes(r["size"]),
                "how": "deduplicated"
                if r["deduplicated"]
                else ("resumed" if r["resumed"] else "uploaded"),
            }
            for r in results
        ]
        out.table(
            rows,
            [("path", "PATH"), ("file_id", "FILE"), ("size", "SIZE"), ("how", "HOW")],
            raw=results,
        )
    return failures[0][1].exit_code if failures else OK


def cmd_download(args: argparse.Namespace, out: Output) -> int:
    target = _target(args)
    if args.output == "-" and args.json:
        raise ClientError(
            "-o - writes the file's bytes to stdout, --json its result: choose one",
            code="usage",
            exit_code=USAGE,
        )
    with open_client(target) as client:
        meta = download.resolve_file(client, args.ref)
        if args.output == "-":  # stdout, as `aws s3 cp s3://b/k -` and `curl -o -`
            result = download.download_to(
                client, meta, sys.stdout.buffer, "-", limit_rate=args.limit_rate, console=out.err
            )
        else:
            dest = download.destination(meta, args.output, overwrite=args.overwrite)
            if download.is_special(dest):
                with dest.open("wb") as f:
                    result = download.download_to(
                        client, meta, f, str(dest), limit_rate=args.limit_rate, console=out.err
                    )
            else:
                result = download.download(
                    client, target, meta, dest, limit_rate=args.limit_rate, console=out.err
                )
    if args.json:
        out.emit(result)
    else:
        how = (
            f" (resumed at {human_bytes(result['resumed_from'])})" if result["resumed_from"] else ""
        )
        out.note(f"{result['path']}: {human_bytes(result['size'])}, sha256 verified{how}")
    return OK


def cmd_ls(args: argparse.Namespace, out: Output) -> int:
    if args.where and not args.files:
        bucket, _, prefix = args.where.partition("/")
        with open_client(_target(args)) as client:
            listing = objects.list_objects(
                client, bucket, prefix, recursive=args.recursive, limit=args.limit
            )
        objects.show_listing(args, out, listing)
        return OK
    params: dict[str, Any] = {"limit": args.limit or 100, "offset": args.offset}
    if args.where:
        bucket, _, prefix = args.where.partition("/")
        params["bucket"] = bucket
        if prefix:
            params["prefix"] = prefix
    with open_client(_target(args)) as client:
        page = json_of(client.get("/v1/files", params=params), items=list)
    rows = [{**f, "size": human_bytes(f["size"])} for f in page["items"]]
    out.table(
        rows,
        [
            ("id", "ID"),
            ("name", "NAME"),
            ("size", "SIZE"),
            ("bucket", "BUCKET"),
            ("content_type", "TYPE"),
            ("created_at", "CREATED"),
        ],
        raw=page,
    )
    return OK


def cmd_rm(args: argparse.Namespace, out: Output) -> int:
    deleted, first_error = [], None
    with open_client(_target(args)) as client:
        for ref in args.ids:
            try:
                deleted.append(_delete(client, ref))
            except ClientError as e:
                print(printable(f"cairn: error: {ref}: {e.code}: {e.message}"), file=sys.stderr)
                first_error = first_error or e
    if args.json:
        out.emit({"deleted": deleted})
    else:
        for d in deleted:
            out.note(
                f"deleted {d['bucket']}/{d['key']}" if "key" in d else f"deleted {d.get('id', d)}"
            )
    return first_error.exit_code if first_error else OK


def cmd_cp(args: argparse.Namespace, out: Output) -> int:
    bucket, _, key = args.source.partition("/")
    if not bucket or not key or key.endswith("/"):
        raise _usage(
            f"{args.source!r} is not BUCKET/KEY (one object; a folder: `tasks create copy`)"
        )
    dest_bucket, _, dest_key = args.dest.partition("/")
    if not dest_bucket:
        raise _usage(f"{args.dest!r} is not BUCKET[/KEY]")
    if not dest_key or dest_key.endswith("/"):  # as `aws s3 cp s3://a/k s3://b/` does
        dest_key += key.rsplit("/", 1)[-1]
    source = f"/{segment(bucket)}/{objects.key_path(key)}"
    with open_client(_target(args)) as client:
        made = json_of(
            client.put(
                objects.object_path(dest_bucket, dest_key),
                headers={"x-amz-copy-source": source},
            ),
            key=str,
            size=int,
        )
    if args.json:
        out.emit(made)
    else:
        out.note(
            f"copied {bucket}/{key} -> {dest_bucket}/{made['key']} ({human_bytes(made['size'])})"
        )
    return OK


def _delete(client: httpx.Client, ref: str) -> dict[str, Any]:
    """Delete a file by its id, or an object by BUCKET/KEY (204: what was deleted is the
    reference itself)."""
    named = objects.file_or_object(ref)
    if isinstance(named, str):
        return dict(json_of(client.delete(f"/v1/files/{named}")))
    bucket, key = named
    check(client.delete(objects.object_path(bucket, key)))
    return {"bucket": bucket, "key": key}


def cmd_stats(args: argparse.Namespace, out: Output) -> int:
    with open_client(_target(args)) as client:
        stats = json_of(
            client.get("/v1/uploads/stats"),
            by_status=dict,
            bytes_completed=NUMBER,
            bytes_pending=NUMBER,
            average_progress=(*NUMBER, type(None)),
        )
    if args.json:
        out.emit(stats)
        return OK
    view = {
        **stats,
        "by_status": ", ".join(f"{k} {v}" for k, v in sorted(stats["by_status"].items())) or "-",
        "bytes_completed": human_bytes(stats["bytes_completed"]),
        "bytes_pending": human_bytes(stats["bytes_pending"]),
        "average_progress": None
        if stats["average_progress"] is None
        else f"{stats['average_progress']:.1f} %",
    }
    out.record(
        view,
        [
            ("total", "uploads"),
            ("by_status", "by status"),
            ("active", "active"),
            ("bytes_completed", "completed"),
            ("bytes_pending", "pending"),
            ("average_progress", "average progress"),
            ("last_activity_at", "last activity"),
        ],
    )
    return OK


def cmd_events(args: argparse.Namespace, out: Output) -> int:
    params = {
        k: v
        for k, v in (("type", args.type), ("aggregate", args.aggregate), ("stream", args.stream))
        if v
    }

    def emit(event: dict[str, Any]) -> None:
        if args.json:
            out.line(event)
        else:
            data = ", ".join(f"{k}={v}" for k, v in (event.get("data") or {}).items())
            out.out.print(
                printable(
                    f"{event.get('position')}  {to_the_second(event.get('occurred_at'))}  "
                    f"{event.get('type')}  {event.get('stream_id')}  {data}"
                ),
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            out.out.file.flush()

    with open_client(_target(args)) as client:
        events.stream(
            client,
            params=params,
            since=args.since,
            follow=args.follow,
            limit=args.limit,
            emit=emit,
            caught_up=not args.follow,
        )
    return OK
