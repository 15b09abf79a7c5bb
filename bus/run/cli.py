"""The `cairn` command: the one entry point for running, operating and trying Cairn.

    cairn up [--only KINDS]        everything on one machine (embedded Postgres and Kafka
                                   where CAIRN_DATABASE_URL / CAIRN_KAFKA_BOOTSTRAP are unset)
    cairn run KIND                 one process kind in the foreground (what production runs)
    cairn token SUBJECT [--admin]  an HS256 JWT for the configured secret
    cairn migrate                  apply the SQL migrations
    cairn replay --from POSITION   republish the event log to Kafka from a position
    cairn blobs migrate --to URL   copy the blob store into another one (e.g. s3://...)
    cairn db dump|restore FILE     the database half of a backup (pg_dump / pg_restore)

and the client commands that talk HTTP to any Cairn server (bus/client/): login, upload,
download, ls, cp, rm, sign, stats, events, buckets, tasks, fetch, fetches.

`cairn token` only mints HS256 tokens (CAIRN_JWT_SECRET, or the secret generated into the
data dir). With CAIRN_JWT_PUBLIC_KEY (RS256) the tokens come from your identity provider.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO, TypeVar

from bus.config.env import SettingsError
from bus.config.settings import Settings
from bus.run import heap, malloc
from bus.run.processes import RUNNERS, load
from bus.terminal import printable

DEFAULT_TOKEN_TTL = 30 * 24 * 3600
T = TypeVar("T")
EXIT_FORCED = 130  # the shell convention for "ended by SIGINT"


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run under uvloop when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def say(text: str, file: TextIO | None = None) -> None:
    """One line for people. What it names came from elsewhere (a path or URL from the
    environment, a migration's file name, a blob's name in a store, a database's or a
    store's error message): its control and bidi characters are shown as escapes, never
    obeyed by the terminal, as the client commands show the server's text (bus/terminal.py).
    Flushed, so that progress lines appear as they happen."""
    print(printable(text), file=file or sys.stdout, flush=True)


# -------------------------------------------------------------------- cairn run


async def _watch_supervisor(pid: int, stop: asyncio.Event) -> None:
    """Set `stop` when the supervisor that spawned us is gone.

    Children run in their own session (so a terminal Ctrl-C goes to the supervisor only);
    the price is that a SIGKILLed supervisor would leave them running forever. A pidfd
    becomes readable when the process exits, so this waits without polling.
    """
    from bus.config.logs import get_logger
    from bus.run.pidwait import wait_for_exit

    # Without pidfds (an old kernel, not Linux), the supervisor is gone once this process
    # is re-parented: a supervisor nobody reaps stays a zombie, which kill(0) passes.
    await wait_for_exit(pid, alive=lambda: os.getppid() == pid)
    if not stop.is_set():
        get_logger("bus.run.cli").warning("supervisor is gone; stopping", supervisor_pid=pid)
        stop.set()


async def _run_kind(settings: Settings, kind: str) -> int:
    from bus.config.logs import get_logger

    log = get_logger("bus.run.cli")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    assert main_task is not None

    def on_signal(signum: int) -> None:
        # First signal: ask the runner to finish what it is doing and return. Only a second
        # Ctrl-C (SIGINT) forces: an operator at a terminal who will not wait. A repeated
        # SIGTERM does not, because it is not a human asking twice: uvicorn re-raises the
        # SIGTERM it saw once it has shut down, and supervisors (ours, Kubernetes) escalate
        # with SIGKILL on their own.
        if not stop.is_set():
            log.info("stopping", signal=signal.Signals(signum).name)
            stop.set()
        elif signum == signal.SIGINT and not main_task.done():
            log.warning("forced stop")
            main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    metrics_server = None
    if (kind != "api" or settings.api_processes > 1) and settings.metrics_port:
        # The api serves /metrics on its own port; every other kind gets this small one, and
        # so does each of several API processes on one port (bus/run/listen.py), where a
        # scrape of the shared port reaches whichever process the kernel picks.
        from bus.config.metrics import serve

        url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
        try:
            metrics_server = serve(settings.metrics_host, settings.metrics_port)
            log.info("metrics", url=url)
        except OSError as e:
            # A busy metrics port must not take the process down with it (a crash loop
            # would stop the service for the sake of its gauges): run without metrics.
            log.error("metrics port unavailable; running without /metrics", url=url, error=str(e))
    watcher: asyncio.Task[None] | None = None
    supervisor_pid = os.environ.get("CAIRN_SUPERVISOR_PID", "")
    if supervisor_pid.isdigit():
        watcher = asyncio.create_task(_watch_supervisor(int(supervisor_pid), stop))
    # This process is the kind's: once its code is imported, keep those objects out of
    # every later collection (bus/run/heap.py). Not in RUNNERS itself: tests run
    # components inside pytest's process, whose heap is not theirs to freeze.
    load(kind)
    heap.settle()
    # Its malloc keeps freed heap for the next upload's bytes (bus/run/malloc.py).
    malloc.tune(kind)
    try:
        await RUNNERS[kind](settings, stop)
    except asyncio.CancelledError:
        return EXIT_FORCED
    except Exception:
        log.exception("process failed", kind=kind)
        return 1
    finally:
        if watcher is not None:
            watcher.cancel()
        if metrics_server is not None:
            metrics_server.shutdown()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if not stop.is_set():
        log.error("process returned without being asked to stop", kind=kind)
        return 1
    log.info("stopped", kind=kind)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bus.config import tracing
    from bus.config.logs import configure

    settings = Settings.from_env()
    configure(settings.log_level, settings.log_json, process=args.kind)
    if settings.database_url and not os.environ.get("CAIRN_SUPERVISOR_PID"):
        # A wrong or unreachable CAIRN_DATABASE_URL is the usual first-deploy mistake: one
        # line naming it, exit 1 (the orchestrator restarts), not a traceback per process.
        # Not under `cairn up`, whose supervisor checked (or started) the database before
        # any child: there it would be one more connection and event loop per start.
        from bus.store import db

        _run_async(db.check_reachable(settings.database_url))
    tracing.setup(args.kind)
    return _run_async(_run_kind(settings, args.kind))


# -------------------------------------------------------------------- cairn up


def _kinds(value: str) -> list[str]:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in RUNNERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(RUNNERS)}"
        )
    return kinds


def cmd_up(args: argparse.Namespace) -> int:
    from bus.run.supervisor import Supervisor

    return Supervisor(Settings.from_env(), kinds=args.only).run()


# -------------------------------------------------------------------- cairn token


def make_token(
    settings: Settings, subject: str, admin: bool = False, ttl: int = DEFAULT_TOKEN_TTL
) -> str:
    from bus.config.tokens import mint

    return mint(
        settings.resolved_jwt_secret(),
        subject,
        admin=admin,
        ttl=ttl,
        audience=settings.jwt_audience,
    )


def cmd_token(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if settings.jwt_public_key:
        say(
            "cairn: warning: CAIRN_JWT_PUBLIC_KEY is set, so the API expects RS256 tokens from "
            "your identity provider; this is an HS256 token for the shared secret",
            sys.stderr,
        )
    elif not settings.jwt_secret and not (settings.data_dir / "jwt-secret").exists():
        # The first use of this data dir: the secret is generated now, so only a server on
        # this same data dir will accept the token. Say so, it is the usual mix-up.
        say(
            f"cairn: note: no JWT secret in data dir {settings.data_dir.resolve()} yet; "
            "generating one. Only a server started on this data dir accepts this token.",
            sys.stderr,
        )
    say(make_token(settings, args.subject, admin=args.admin, ttl=args.ttl))
    return 0


# -------------------------------------------------------------------- cairn migrate / replay


def _operator_settings(command: str) -> Settings:
    """The settings of a one-shot operator command, with its logs set up as every process's
    are (JSON on stderr unless a terminal, CAIRN_LOG_LEVEL): unconfigured, structlog wrote
    them to stdout, in its console format, among the output a script reads."""
    from bus.config.logs import configure

    settings = Settings.from_env()
    configure(settings.log_level, settings.log_json, process=command)
    return settings


async def _migrate(settings: Settings) -> int:
    from bus.run.supervisor import database_for_command
    from bus.store import db

    async with database_for_command(settings) as url:
        applied = await db.migrate(url)
    say("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    return _run_async(_migrate(_operator_settings("migrate")))


async def _replay(settings: Settings, from_position: int) -> int:
    from bus.run.supervisor import RuntimeInfo, SupervisorError, database_for_command
    from bus.store import db

    if not settings.kafka_bootstrap:
        running = RuntimeInfo.of_running(settings.data_dir.resolve())
        if running is None:
            # The embedded broker lives only as long as `cairn up`: a broker started just
            # for the replay would forget everything the moment the command ends.
            raise SupervisorError(
                "CAIRN_KAFKA_BOOTSTRAP is not set and no `cairn up` is running on data dir "
                f"{settings.data_dir.resolve()}; start it or point CAIRN_KAFKA_BOOTSTRAP at Kafka"
            )
        settings = dataclasses.replace(
            settings,
            kafka_bootstrap=running.kafka_bootstrap,
            kafka_idempotence=settings.kafka_idempotence and not running.embedded_kafka,
        )
    from bus.store.relay import replay  # written alongside; imported only when needed

    async with database_for_command(settings) as url:
        pool = await db.create_pool(url, min_size=1, max_size=5)
        try:
            result = await replay(
                dataclasses.replace(settings, database_url=url), pool, from_position
            )
        finally:
            await pool.close()
    say(f"republished {result} events from position {from_position}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    return _run_async(_replay(_operator_settings("replay"), args.from_position))


async def _migrate_blobs(settings: Settings, to: str, source_url: str | None) -> int:
    from bus.blobs.errors import BlobStoreUnavailable
    from bus.blobs.factory import open_blob_store
    from bus.blobs.migrate import migrate

    source = open_blob_store(source_url or settings.blobs_url, settings, inline=False)
    target = open_blob_store(to, settings, inline=False)
    try:
        try:
            await target.ping()
        except BlobStoreUnavailable as e:
            # The store names its server setting (CAIRN_BLOB_STORE for a missing bucket);
            # here the target is what --to names.
            message = str(e).replace(" (CAIRN_BLOB_STORE)", "")
            raise BlobStoreUnavailable(f"--to {to}: {message}", reason=e.reason) from e
        say(f"copying {source_url or settings.blobs_url} -> {to}")
        report = await migrate(source, target, progress=lambda r: say(r.line()))
    finally:
        await source.close()
        await target.close()
    for sha in report.failed:
        say(f"cairn: blob {sha} does not match its name in the source: not copied", sys.stderr)
    return 1 if report.failed else 0


def cmd_blobs_migrate(args: argparse.Namespace) -> int:
    from bus.blobs.errors import BlobStoreUnavailable

    try:
        return _run_async(_migrate_blobs(_operator_settings("blobs"), args.to, args.source))
    except BlobStoreUnavailable as e:
        say(f"cairn: error: {e}", sys.stderr)
        return 1


def cmd_db(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bus.run import dbdump

    path = Path(args.file)
    settings = _operator_settings("db")
    if args.db_command == "dump":
        _run_async(dbdump.dump(settings, path))
        say(f"dumped the database to {path}")
    else:
        _run_async(dbdump.restore(settings, path))
        say(f"restored the database from {path}")
    return 0


# -------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cairn",
        description="Cairn: a self-hosted file service. Configured by CAIRN_* variables.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start everything in the foreground (Ctrl-C stops)")
    up.add_argument(
        "--only",
        type=_kinds,
        default=None,
        metavar="KINDS",
        help=f"comma-separated process kinds to start (default: all of {', '.join(RUNNERS)})",
    )
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="run one process kind in the foreground")
    run.add_argument("kind", choices=list(RUNNERS), metavar="KIND", help=", ".join(RUNNERS))
    run.set_defaults(func=cmd_run)

    tok = sub.add_parser("token", help="print an HS256 JWT for the configured secret")
    tok.add_argument("subject", metavar="SUBJECT", help="the user id (the `sub` claim)")
    tok.add_argument("--admin", action="store_true", help="include the admin role")
    tok.add_argument(
        "--ttl",
        type=int,
        default=DEFAULT_TOKEN_TTL,
        metavar="SECONDS",
        help="lifetime in seconds (default: 30 days)",
    )
    tok.set_defaults(func=cmd_token)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.set_defaults(func=cmd_migrate)

    rep = sub.add_parser("replay", help="republish the event log to Kafka from a position")
    rep.add_argument(
        "--from",
        dest="from_position",
        type=int,
        required=True,
        metavar="POSITION",
        help="global position to start from (0: the whole history)",
    )
    rep.set_defaults(func=cmd_replay)

    blobs = sub.add_parser("blobs", help="blob store operations")
    blobs_sub = blobs.add_subparsers(dest="blobs_command", required=True, metavar="ACTION")
    bmig = blobs_sub.add_parser(
        "migrate", help="copy every blob into another store (resumable, verified)"
    )
    bmig.add_argument("--to", required=True, metavar="URL", help="target, e.g. s3://bucket/prefix")
    bmig.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="URL",
        help="source (default: CAIRN_BLOB_STORE, else the data dir's local store)",
    )
    bmig.set_defaults(func=cmd_blobs_migrate)

    dbp = sub.add_parser("db", help="dump or restore the database (see README, Backup and restore)")
    db_sub = dbp.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for action, what in (
        ("dump", "write a pg_dump (custom format) of Cairn's database to FILE"),
        ("restore", "restore FILE (from `cairn db dump`) into an empty database"),
    ):
        one = db_sub.add_parser(action, help=what)
        one.add_argument("file", metavar="FILE")
        one.set_defaults(func=cmd_db)

    # The client commands (upload, download, ls, events, ...): HTTP to any Cairn server.
    from bus.client.commands import register

    register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # Building the parser imports the client commands (httpx, Rich): a Ctrl-C there
        # is still start-up, one line and no traceback (as in bus/run/entry.py).
        args = _parser().parse_args(argv)
    except KeyboardInterrupt:
        print("cairn: interrupted", file=sys.stderr)
        return EXIT_FORCED
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        # Only reachable before a command installed its own handlers (e.g. during imports).
        return EXIT_FORCED
    except SettingsError as e:
        say(f"cairn: error: {e}", sys.stderr)
        return 2
    except Exception as e:
        # Imported only here: the supervisor pulls in Postgres and Kafka clients, which the
        # client commands (cairn upload, ...) do not need at start-up.
        from bus.run.supervisor import SupervisorError
        from bus.store.db import DatabaseUnreachable

        if isinstance(e, SupervisorError | DatabaseUnreachable):
            say(f"cairn: error: {e}", sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
