"""The one settings object: every knob, typed, from the environment, each with a safe default.

See README.md ("Configuration") for the table; API.md fixes the names of the public ones.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bus.config.env import Env, SettingsError, parse_size
from bus.config.private import private_dir

# The largest CAIRN_BLOB_INLINE_BYTES honoured: a put gathers that much in memory before it
# knows which tier takes it, and a row is read whole.
INLINE_MAX_BYTES = 1 << 20

# Which CAIRN_BLOB_STORE URLs name a store (bus/blobs/factory.py opens them).
BLOB_STORE_SCHEMES = ("file://", "s3://")
# S3 takes at most 5 GiB in one PutObject, and the S3 store sends a chunk in one PUT: a
# larger chunk is refused (EntityTooLarge) on every try, so the settings that make chunks
# are bounded by it when the store is S3.
S3_MAX_PUT_BYTES = 5 * 1024**3
# SigV4 presigned URLs are valid for at most 7 days (S3 refuses a longer X-Amz-Expires).
SIGV4_MAX_EXPIRES = 7 * 24 * 3600


@dataclass(frozen=True)
class ApiKey:
    key: str
    user: str
    admin: bool = False


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    # API processes sharing `port` (SO_REUSEPORT, Linux): `cairn up` runs this many, and
    # each binds the port so that the others may too. 1: one process, a plain bind.
    api_processes: int = 1
    # Which of them this process is, 1..api_processes (set by `cairn up` for each child).
    api_instance: int = 1
    data_dir: Path = Path(".cairn")
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    embedded_kafka_port: int = 9092
    embedded_pg_port: int = 5433
    blob_store: str = ""
    # The local store drops a big blob's pages from the page cache once it is durable.
    blob_drop_behind: bool = True
    # The local store starts writing each batch of a big blob out while the rest arrives.
    blob_early_writeback: bool = True
    # The local store writes a big blob past the page cache (O_DIRECT) where it can.
    blob_direct_io: bool = True
    # Blobs of at most this many bytes are rows in PostgreSQL, not files (or S3 objects):
    # bus/blobs/inline.py. 0 stores every blob in the blob store.
    blob_inline_bytes: int = 64 * 1024
    topic_prefix: str = "cairn"
    kafka_partitions: int = 8
    # Partitions of each command topic; 0 = kafka_partitions. More spread the commands of an
    # aggregate over more partitions: on the embedded broker a partition's fetches cost more
    # with every batch it holds (README, "Performance"), and each partition fetched costs a
    # little on every command.
    kafka_command_partitions: int = 0
    # Partitions of the reply topic: each CommandBus reads one (see bus/actors/commandbus.py).
    kafka_reply_partitions: int = 16
    # Recycle a command topic (delete it and create it empty) once a partition of it has
    # carried this many commands; 0 = never. For the embedded broker, which keeps every
    # record and slows down with them (bus/actors/recycle.py); `cairn up` sets it.
    kafka_command_recycle_after: int = 0
    # After a relay pass that published at least `relay_linger_from` events, wait this long
    # before the next (Kafka's linger.ms, decided per pass; bus/store/relay.py). `cairn up`
    # lingers after every pass, longer: each pass is a batch the embedded broker keeps.
    relay_linger_ms: int = 20
    relay_linger_from: int = 16
    kafka_idempotence: bool = True
    kafka_replication_factor: int = 1
    kafka_fetch_max_wait_ms: int = 500
    # How long a consumer may go silent before its group moves its partitions elsewhere.
    # Tansu also holds every JoinGroup for half of it (waiting for more members), so it is
    # most of the time a consumer takes to start or to take over on the embedded broker.
    kafka_session_timeout_ms: int = 10000
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_allow_no_exp: bool = False
    jwt_audience: str | None = None  # the `aud` tokens must name (an IdP's id for Cairn)
    # Signed URLs (api/http/signing.py): the HMAC key (unset: generated into the data dir),
    # older keys still accepted while their URLs run out, the longest expiry a URL may get,
    # and the largest body a signed object PUT may carry.
    signing_key: str | None = None
    signing_old_keys: tuple[str, ...] = ()
    signed_url_max_expiry: int = 7 * 24 * 3600
    signed_put_max_bytes: int = 5 << 30
    api_keys: tuple[ApiKey, ...] = ()
    fetch_allow_private: bool = False
    # Networks reachable although not public (CAIRN_FETCH_ALLOW_NETWORKS, comma-separated CIDR).
    fetch_allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Parallel byte ranges of one large fetch (1 = a single stream), each at least
    # fetch_segment_min bytes.
    fetch_segments: int = 4
    fetch_segment_min: int = 16 * 1024 * 1024
    fetch_max_bytes: int = 1 << 40
    fetch_retries: int = 5
    fetch_backoff: float = 1.0
    fetch_concurrency: int = 16
    fetch_per_owner: int = 4
    fetch_rate: int = 0
    fetch_ttl: float = 24 * 3600
    fetch_lease: float = 15.0
    fetch_timeout: float = 30.0
    # The low-speed limit (bus/fetch/lowspeed.py): an attempt whose origin sends less than
    # fetch_low_speed_bytes per second over fetch_low_speed_time seconds fails as retryable
    # (0 bytes: off). 1 KiB/s is far below any working link (a GPRS phone does 5, a 56k
    # modem 7) yet a GiB at that rate takes 12 days: only an origin trickling to hold the
    # slot, or a broken one, stays under it. 60 s, twice the read timeout, lets TCP's
    # retransmission backoff and an origin pausing to seek or to fill its cache pass.
    fetch_low_speed_bytes: int = 1024
    fetch_low_speed_time: float = 60.0
    fetch_chunk_bytes: int = 8 * 1024 * 1024
    command_timeout: float = 15.0
    default_chunk_size: int = 8 * 1024 * 1024
    max_chunk_size: int = 256 * 1024 * 1024
    max_upload_bytes: int = 1 << 40
    tus_piece_bytes: int = 8 * 1024 * 1024
    upload_ttl: float = 24 * 3600
    trust_proxy: bool = False
    cors_origins: tuple[str, ...] = ("*",)
    quota_bytes: int = 0
    quotas: tuple[tuple[str, int], ...] = ()
    max_inflight_per_upload: int = 16
    max_inflight: int = 256
    max_inflight_per_user: int = 64
    cleanup_interval: float = 300.0
    gc_grace: float = 3600.0
    max_ranges: int = 100
    download_flush_interval: float = 10.0
    # Background tasks (handlers/tasks/): the most items one task may name, how long
    # finished tasks are kept, a worker's lease, how often an idle worker looks for work,
    # and how many tasks of one owner run at once across all workers.
    task_max_items: int = 10_000
    task_retention: float = 7 * 24 * 3600.0
    task_lease_seconds: float = 15.0
    task_poll_interval: float = 0.5
    task_concurrency_per_owner: int = 2
    task_concurrency: int = 2
    task_extract_max_bytes: int = 10 * 1024**3
    task_extract_max_ratio: float = 200.0
    max_request_line_bytes: int = 8 * 1024
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    # Longer than the clients' own idle expiry (httpx 5 s, undici 4 s, aiohttp 15 s) and a
    # load balancer's idle timeout (AWS ALB 60 s), as nginx's 75 s is: a server that closes
    # first races the client's next request on that connection, which then fails unanswered.
    keepalive_timeout: float = 75.0
    drain_timeout: float = 5.0
    sse_heartbeat: float = 15.0
    events_queue_size: int = 1000
    ws_max_message_bytes: int = 64 * 1024
    ws_max_subscriptions: int = 100
    # Live event streams (SSE responses and WebSocket connections) one API process holds,
    # per user and in all (api/events/stream_slots.py).
    events_max_streams_per_user: int = 100
    events_max_streams: int = 5000
    # Seconds a live stream's write may wait for a client that takes nothing before the
    # connection is cut (api/http/sendwatch.py).
    events_send_timeout: float = 30.0
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_pool_size: int = 32
    s3_connect_timeout: float = 5.0
    s3_read_timeout: float = 30.0
    s3_max_attempts: int = 4
    s3_range_bytes: int = 8 * 1024 * 1024
    s3_spool_dir: Path | None = None
    s3_redirect: bool = False
    s3_redirect_min_bytes: int = 8 * 1024 * 1024
    s3_redirect_expires: int = 300
    log_level: str = "info"
    log_json: bool | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    instance_id: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def blobs_url(self) -> str:
        return self.blob_store or f"file://{(self.data_dir / 'blobs').resolve()}"

    @property
    def s3_spool_path(self) -> Path:
        """Where the S3 store spools bodies while hashing them (local disk, not memory)."""
        return self.s3_spool_dir or self.data_dir / "s3-spool"

    @property
    def any_quota(self) -> bool:
        """Whether some user may have a quota (else no request needs its owner looked up)."""
        return self.quota_bytes > 0 or any(limit > 0 for _, limit in self.quotas)

    def quota_for(self, user: str) -> int:
        """Bytes `user` may store (0 = unlimited): a per-user override, else the default."""
        for who, limit in self.quotas:
            if who == user:
                return limit
        return self.quota_bytes

    def topic(self, aggregate: str) -> str:
        return f"{self.topic_prefix}.{aggregate}"

    def command_topic(self, aggregate: str) -> str:
        return f"{self.topic_prefix}.commands.{aggregate}"

    @property
    def reply_topic(self) -> str:
        return f"{self.topic_prefix}.replies"

    def resolved_jwt_secret(self) -> str:
        """CAIRN_JWT_SECRET, else a secret generated once into the data dir."""
        return self.jwt_secret or self._generated_secret("jwt-secret")

    def resolved_signing_key(self) -> str:
        """CAIRN_SIGNING_KEY, else a key generated once into the data dir (never a built-in
        fallback: a key in the source would let anyone sign URLs)."""
        return self.signing_key or self._generated_secret("signing-key")

    def _generated_secret(self, name: str) -> str:
        """The secret in the data dir's file `name`, generated there (0600) on first use."""
        path = self.data_dir / name
        if not path.exists():
            private_dir(self.data_dir)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            # Created 0600 from the start: never readable by others, not even for a moment.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            try:
                # link() fails if another process won the race: everybody reads the winner's.
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_text().strip()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment names; SettingsError (naming the variable) for a
        value that cannot be used, rather than a traceback later or a silent default."""
        env = Env(os.environ if environ is None else environ)
        num, size, flag = env.integer, env.size, env.flag
        sec = env.number
        json_env = env.raw("CAIRN_LOG_JSON")
        origins = tuple(
            o.strip() for o in (env.raw("CAIRN_CORS_ORIGINS") or "*").split(",") if o.strip()
        )
        blob_store = _blob_store(env)

        def chunk_bytes(name: str, n: int) -> int:
            if blob_store.startswith("s3://") and n > S3_MAX_PUT_BYTES:
                raise env.fail(
                    name,
                    f"must be at most {S3_MAX_PUT_BYTES} (5 GiB) with an S3 blob store:"
                    " a chunk is one S3 PUT, which S3 refuses above that",
                )
            return n

        return cls(
            host=env.raw("CAIRN_HOST") or "127.0.0.1",
            port=num("CAIRN_PORT", 8000, maximum=65535),
            api_processes=num("CAIRN_API_PROCESSES", 1),
            api_instance=num("CAIRN_API_INSTANCE", 1, minimum=1),
            data_dir=Path(env.raw("CAIRN_DATA_DIR") or ".cairn"),
            database_url=_database_url(env),
            kafka_bootstrap=env.raw("CAIRN_KAFKA_BOOTSTRAP"),
            embedded_kafka_port=num("CAIRN_EMBEDDED_KAFKA_PORT", 9092, maximum=65535),
            embedded_pg_port=num("CAIRN_EMBEDDED_PG_PORT", 5433, maximum=65535),
            blob_store=blob_store,
            blob_drop_behind=flag("CAIRN_BLOB_DROP_BEHIND", True),
            blob_early_writeback=flag("CAIRN_BLOB_EARLY_WRITEBACK", True),
            blob_direct_io=flag("CAIRN_BLOB_DIRECT_IO", True),
            blob_inline_bytes=min(size("CAIRN_BLOB_INLINE_BYTES", "64K"), INLINE_MAX_BYTES),
            topic_prefix=env.raw("CAIRN_TOPIC_PREFIX") or "cairn",
            kafka_partitions=num("CAIRN_KAFKA_PARTITIONS", 8, minimum=1),
            kafka_command_partitions=num("CAIRN_KAFKA_COMMAND_PARTITIONS", 0),
            kafka_reply_partitions=num("CAIRN_KAFKA_REPLY_PARTITIONS", 16, minimum=1),
            kafka_command_recycle_after=num("CAIRN_KAFKA_COMMAND_RECYCLE_AFTER", 0),
            relay_linger_ms=num("CAIRN_RELAY_LINGER_MS", 20),
            relay_linger_from=num("CAIRN_RELAY_LINGER_FROM", 16),
            kafka_idempotence=flag("CAIRN_KAFKA_IDEMPOTENCE", True),
            kafka_replication_factor=num("CAIRN_KAFKA_REPLICATION_FACTOR", 1, minimum=1),
            kafka_fetch_max_wait_ms=num("CAIRN_KAFKA_FETCH_MAX_WAIT_MS", 500),
            kafka_session_timeout_ms=num("CAIRN_KAFKA_SESSION_TIMEOUT_MS", 10000, minimum=1),
            jwt_secret=_jwt_secret(env),
            jwt_public_key=env.raw("CAIRN_JWT_PUBLIC_KEY"),
            jwt_allow_no_exp=flag("CAIRN_JWT_ALLOW_NO_EXP"),
            jwt_audience=env.raw("CAIRN_JWT_AUDIENCE"),
            signing_key=env.raw("CAIRN_SIGNING_KEY"),
            signing_old_keys=tuple(
                k.strip() for k in (env.raw("CAIRN_SIGNING_OLD_KEYS") or "").split(",") if k.strip()
            ),
            signed_url_max_expiry=num("CAIRN_SIGNED_URL_MAX_EXPIRY", 7 * 24 * 3600, minimum=1),
            signed_put_max_bytes=size("CAIRN_SIGNED_PUT_MAX_BYTES", "5G", minimum=1),
            api_keys=_api_keys(env),
            fetch_allow_private=flag("CAIRN_FETCH_ALLOW_PRIVATE"),
            fetch_allow_networks=_networks(env),
            fetch_segments=num("CAIRN_FETCH_SEGMENTS", 4, minimum=1),
            fetch_segment_min=size("CAIRN_FETCH_SEGMENT_MIN_BYTES", "16M", minimum=1),
            fetch_max_bytes=size("CAIRN_FETCH_MAX_BYTES", "1T", minimum=1),
            fetch_retries=num("CAIRN_FETCH_RETRIES", 5),
            fetch_backoff=sec("CAIRN_FETCH_BACKOFF", 1.0),
            fetch_concurrency=num("CAIRN_FETCH_CONCURRENCY", 16, minimum=1),
            fetch_per_owner=num("CAIRN_FETCH_PER_OWNER", 4, minimum=1),
            fetch_rate=size("CAIRN_FETCH_RATE", "0"),
            fetch_ttl=sec("CAIRN_FETCH_TTL", 24 * 3600),
            fetch_lease=sec("CAIRN_FETCH_LEASE", 15.0, positive=True),
            fetch_timeout=sec("CAIRN_FETCH_TIMEOUT", 30.0, positive=True),
            fetch_low_speed_bytes=size("CAIRN_FETCH_LOW_SPEED_BYTES", "1K"),
            fetch_low_speed_time=sec("CAIRN_FETCH_LOW_SPEED_TIME", 60.0, positive=True),
            fetch_chunk_bytes=chunk_bytes(
                "CAIRN_FETCH_CHUNK_BYTES", size("CAIRN_FETCH_CHUNK_BYTES", "8M", minimum=1)
            ),
            command_timeout=sec("CAIRN_COMMAND_TIMEOUT", 15.0, positive=True),
            default_chunk_size=num("CAIRN_DEFAULT_CHUNK_BYTES", 8 * 1024 * 1024, minimum=1),
            max_chunk_size=chunk_bytes(
                "CAIRN_MAX_CHUNK_BYTES", num("CAIRN_MAX_CHUNK_BYTES", 256 * 1024 * 1024, minimum=1)
            ),
            max_upload_bytes=num("CAIRN_MAX_UPLOAD_BYTES", 1 << 40, minimum=1),
            # Bounded: 1 MiB up to the largest piece (api/tus/pieces.py, MAX_PIECE).
            tus_piece_bytes=min(max(size("CAIRN_TUS_PIECE_BYTES", "8M"), 1 << 20), 64 << 20),
            upload_ttl=sec("CAIRN_UPLOAD_TTL", 24 * 3600, positive=True),
            trust_proxy=flag("CAIRN_TRUST_PROXY"),
            cors_origins=origins or ("*",),
            quota_bytes=size("CAIRN_QUOTA_BYTES", "0"),
            quotas=_quotas(env),
            max_inflight_per_upload=num("CAIRN_MAX_INFLIGHT_PER_UPLOAD", 16, minimum=1),
            max_inflight=num("CAIRN_MAX_INFLIGHT", 256, minimum=1),
            max_inflight_per_user=num("CAIRN_MAX_INFLIGHT_PER_USER", 64, minimum=1),
            cleanup_interval=sec("CAIRN_CLEANUP_INTERVAL", 300.0, positive=True),
            gc_grace=sec("CAIRN_GC_GRACE", 3600.0),
            max_ranges=num("CAIRN_MAX_RANGES", 100, minimum=1),
            download_flush_interval=sec("CAIRN_DOWNLOAD_FLUSH_INTERVAL", 10.0, positive=True),
            task_max_items=num(
                "CAIRN_TASK_MAX_ITEMS", 10_000, minimum=1, maximum=TASK_MAX_ITEMS_LIMIT
            ),
            task_retention=sec("CAIRN_TASK_RETENTION", 7 * 24 * 3600.0),
            task_lease_seconds=sec("CAIRN_TASK_LEASE_SECONDS", 15.0, positive=True),
            task_poll_interval=sec("CAIRN_TASK_POLL_INTERVAL", 0.5, positive=True),
            task_concurrency_per_owner=num("CAIRN_TASK_CONCURRENCY_PER_OWNER", 2, minimum=1),
            task_concurrency=num("CAIRN_TASK_CONCURRENCY", 2, minimum=1),
            task_extract_max_bytes=size("CAIRN_TASK_EXTRACT_MAX_BYTES", "10G", minimum=1),
            task_extract_max_ratio=sec("CAIRN_TASK_EXTRACT_MAX_RATIO", 200.0, positive=True),
            max_request_line_bytes=num("CAIRN_MAX_REQUEST_LINE_BYTES", 8 * 1024, minimum=1),
            max_header_bytes=num("CAIRN_MAX_HEADER_BYTES", 32 * 1024, minimum=1),
            max_headers=num("CAIRN_MAX_HEADERS", 100, minimum=1),
            header_timeout=sec("CAIRN_HEADER_TIMEOUT", 10.0, positive=True),
            body_timeout=sec("CAIRN_BODY_TIMEOUT", 60.0),
            keepalive_timeout=sec("CAIRN_KEEPALIVE_TIMEOUT", 75.0, positive=True),
            drain_timeout=sec("CAIRN_DRAIN_TIMEOUT", 5.0),
            sse_heartbeat=sec("CAIRN_SSE_HEARTBEAT", 15.0, positive=True),
            events_queue_size=num("CAIRN_EVENTS_QUEUE", 1000, minimum=1),
            ws_max_message_bytes=num("CAIRN_WS_MAX_MESSAGE_BYTES", 64 * 1024, minimum=1),
            ws_max_subscriptions=num("CAIRN_WS_MAX_SUBSCRIPTIONS", 100, minimum=1),
            events_max_streams_per_user=num("CAIRN_EVENTS_MAX_STREAMS_PER_USER", 100, minimum=1),
            events_max_streams=num("CAIRN_EVENTS_MAX_STREAMS", 5000, minimum=1),
            events_send_timeout=sec("CAIRN_EVENTS_SEND_TIMEOUT", 30.0, positive=True),
            s3_endpoint=env.raw("CAIRN_S3_ENDPOINT"),
            s3_region=env.raw("AWS_REGION") or env.raw("AWS_DEFAULT_REGION"),
            s3_pool_size=num("CAIRN_S3_POOL_SIZE", 32, minimum=1),
            s3_connect_timeout=sec("CAIRN_S3_CONNECT_TIMEOUT", 5.0, positive=True),
            s3_read_timeout=sec("CAIRN_S3_READ_TIMEOUT", 30.0, positive=True),
            s3_max_attempts=num("CAIRN_S3_MAX_ATTEMPTS", 4, minimum=1),
            s3_range_bytes=size("CAIRN_S3_RANGE_BYTES", "8M", minimum=1),
            s3_spool_dir=Path(v) if (v := env.raw("CAIRN_S3_SPOOL_DIR")) else None,
            s3_redirect=flag("CAIRN_S3_REDIRECT"),
            s3_redirect_min_bytes=size("CAIRN_S3_REDIRECT_MIN_BYTES", "8M"),
            s3_redirect_expires=num(
                "CAIRN_S3_REDIRECT_EXPIRES", 300, minimum=1, maximum=SIGV4_MAX_EXPIRES
            ),
            log_level=_log_level(env),
            log_json=None if json_env is None else flag("CAIRN_LOG_JSON"),
            metrics_host=env.raw("CAIRN_METRICS_HOST") or "127.0.0.1",
            metrics_port=num("CAIRN_METRICS_PORT", 0, maximum=65535),
        )


def _database_url(env: Env) -> str | None:
    url = env.raw("CAIRN_DATABASE_URL")
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        # Only the scheme: the rest may hold a password, which an error line must not show.
        raise SettingsError(
            "CAIRN_DATABASE_URL: not a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/DB)"
        )
    return url


# The most CAIRN_TASK_MAX_ITEMS may be: a task's file ids travel in one command and one
# TaskCreated event, which must stay under the bus's 4 MiB message limit (a UUID is 39
# bytes of JSON; 80,000 of them about 3.1 MB, the rest of the task beside them).
# Past it, the creation of a big task would fail at the producer, as a 503, every time.
TASK_MAX_ITEMS_LIMIT = 80_000


# The shortest CAIRN_JWT_SECRET accepted, in bytes: HS256 wants a key as long as its hash
# (RFC 7518 3.2). Anyone holding one token can test guesses at the secret offline, and a
# secret found mints any user's and any admin's tokens; PyJWT only warns.
MIN_JWT_SECRET_BYTES = 32


def _jwt_secret(env: Env) -> str | None:
    secret = env.raw("CAIRN_JWT_SECRET")
    if secret is not None and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        # The value is a secret: say what is wrong with it, never what it is.
        raise SettingsError(
            f"CAIRN_JWT_SECRET: at least {MIN_JWT_SECRET_BYTES} bytes are needed (HS256), e.g."
            " python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return secret


def _blob_store(env: Env) -> str:
    url = env.raw("CAIRN_BLOB_STORE") or ""
    if url and not url.startswith(BLOB_STORE_SCHEMES):
        raise env.fail("CAIRN_BLOB_STORE", "not file://PATH or s3://BUCKET[/prefix]")
    if url in BLOB_STORE_SCHEMES:
        raise env.fail("CAIRN_BLOB_STORE", "names no path or bucket")
    return url


def _api_keys(env: Env) -> tuple[ApiKey, ...]:
    keys: list[ApiKey] = []
    for item in (env.raw("CAIRN_API_KEYS") or "").split(","):
        if not item.strip():
            continue
        parts = item.strip().split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            # The key itself is a secret: say which entry, not what it holds.
            raise SettingsError(
                f"CAIRN_API_KEYS: entry {len(keys) + 1} is not key:user or key:user:admin"
            )
        if len(parts) == 3 and parts[2] != "admin":
            raise SettingsError(
                f"CAIRN_API_KEYS: entry {len(keys) + 1} ends in {parts[2]!r}, not 'admin'"
            )
        keys.append(ApiKey(parts[0], parts[1], len(parts) == 3))
    return tuple(keys)


def _quotas(env: Env) -> tuple[tuple[str, int], ...]:
    quotas: list[tuple[str, int]] = []
    for item in (env.raw("CAIRN_QUOTAS") or "").split(","):
        entry = item.strip()
        if not entry:
            continue
        who, _, limit = entry.partition(":")
        try:
            n = parse_size(limit) if who and limit else -1
        except ValueError:
            n = -1
        if n < 0:
            raise env.fail("CAIRN_QUOTAS", f"entry {entry!r} is not user:size (alice:10G)")
        quotas.append((who, n))
    return tuple(quotas)


def _networks(env: Env) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for n in (env.raw("CAIRN_FETCH_ALLOW_NETWORKS") or "").split(","):
        if n.strip():
            try:
                nets.append(ipaddress.ip_network(n.strip(), strict=False))
            except ValueError:
                raise env.fail(
                    "CAIRN_FETCH_ALLOW_NETWORKS", f"{n.strip()!r} is not a CIDR network"
                ) from None
    return tuple(nets)


def _log_level(env: Env) -> str:
    level = (env.raw("CAIRN_LOG_LEVEL") or "info").lower()
    if level not in ("debug", "info", "warn", "warning", "error", "critical"):
        raise env.fail("CAIRN_LOG_LEVEL", "not one of debug, info, warning, error, critical")
    return level
