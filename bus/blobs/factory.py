"""Which blob store a `CAIRN_BLOB_STORE` URL names, built with its settings.

The one place that knows the implementations: everything else holds a
domain.ports.BlobStore. `file:///abs/path` or `file://relative` is the local store;
`s3://BUCKET[/prefix]` the S3 store, configured from the `CAIRN_S3_*` settings and the
standard `AWS_*` variables.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from bus.blobs.inline import InlineBlobStore, InlinePresigningBlobStore
from bus.blobs.local import LocalBlobStore
from bus.blobs.s3 import S3BlobStore, S3Options, parse_s3_url
from bus.config.settings import Settings
from domain.ports import BlobStore


def s3_options(url: str, settings: Settings) -> S3Options:
    bucket, prefix = parse_s3_url(url)
    return S3Options(
        bucket=bucket,
        prefix=prefix,
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        pool_size=settings.s3_pool_size,
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        max_attempts=settings.s3_max_attempts,
        range_bytes=settings.s3_range_bytes,
        spool_dir=settings.s3_spool_path,
    )


def open_blob_store(
    url: str, settings: Settings | None = None, *, inline: bool = True
) -> BlobStore:
    """The store `url` names; `settings` (default: from the environment) configure it.

    With `inline` (and a database and `CAIRN_BLOB_INLINE_BYTES` set), the small blobs are
    rows in PostgreSQL in front of it (bus/blobs/inline.py): what every process that
    stores or serves files opens. `cairn blobs migrate` opens the bare stores, as it moves
    what is in them and the rows stay where they are."""
    settings = settings or Settings.from_env()
    store = _backend(url, settings)
    if not inline or settings.blob_inline_bytes <= 0 or not settings.database_url:
        return store
    if isinstance(store, S3BlobStore):  # presigns: the tier must know what it may presign
        return InlinePresigningBlobStore(
            store, settings.database_url, max_bytes=settings.blob_inline_bytes
        )
    return InlineBlobStore(store, settings.database_url, max_bytes=settings.blob_inline_bytes)


def _backend(url: str, settings: Settings) -> BlobStore:
    if url.startswith("file://"):
        rest = unquote(url[len("file://") :])
        if rest.startswith("localhost/"):  # file://localhost/abs/path is file:///abs/path
            rest = rest[len("localhost") :]
        if not rest:
            raise ValueError(f"blob store URL without a path: {url!r}")
        return LocalBlobStore(
            Path(rest),
            drop_behind=settings.blob_drop_behind,
            early_writeback=settings.blob_early_writeback,
            direct_io=settings.blob_direct_io,
        )
    if url.startswith("s3://"):
        return S3BlobStore(s3_options(url, settings))
    raise ValueError(f"unsupported blob store URL: {url!r}")
