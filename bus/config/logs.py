"""Logging: structlog everywhere, JSON when not on a terminal, with request and correlation ids.

Context variables (request_id, correlation_id, process kind) are bound with structlog's
contextvars so every log line of a request or command carries them without plumbing.

Libraries log through the standard `logging` module (aiokafka, uvicorn, asyncpg). Their
records go through the same structlog processors and renderer (structlog's
ProcessorFormatter on the root handler), so the stream on stderr is one format: JSON lines
that a log shipper can parse, never a plain-text line in between.
"""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


def configure(level: str = "info", json: bool | None = None, process: str | None = None) -> None:
    global _configured
    if json is None:
        json = not sys.stderr.isatty()
    lvl = getattr(logging, level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        # One write per line (message and newline together): `print` writes them apart,
        # and a long line flushed before its newline let another process's line, on the
        # same stderr under `cairn up`, land between them (a blank line in the stream).
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Records of the standard library's loggers: positional %-arguments merged, `extra`
    # fields kept, exceptions formatted, then the same renderer as structlog's own lines.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.stdlib.ExtraAdder(),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries are chatty at INFO (aiokafka logs every rebalance): warnings and up only,
    # unless the operator asked for debug.
    root.setLevel(max(lvl, logging.WARNING) if lvl > logging.DEBUG else lvl)
    # Cairn's own stdlib loggers (the projector's "cairn.projections") follow CAIRN_LOG_LEVEL.
    logging.getLogger("cairn").setLevel(lvl)
    if process:
        structlog.contextvars.bind_contextvars(process=process)
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
