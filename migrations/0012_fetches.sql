-- URL fetches: the read model the API lists and shows progress from, and the leases by
-- which fetch workers share the unfinished fetches (one live worker per fetch).

CREATE TABLE IF NOT EXISTS readmodel.fetches (
    id              uuid        PRIMARY KEY,
    owner           text        NOT NULL,
    url             text        NOT NULL,
    generation      integer     NOT NULL DEFAULT 0,
    bucket          text        NOT NULL DEFAULT 'default',
    key             text,
    sha256          text,
    status          text        NOT NULL,
    bytes           bigint      NOT NULL DEFAULT 0,
    total           bigint,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    etag            text,
    last_modified   text,
    content_type    text,
    file_name       text,
    file_id         uuid,
    run_started_at  timestamptz,
    run_start_bytes bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    completed_at    timestamptz,
    last_version    integer     NOT NULL
);
COMMENT ON TABLE readmodel.fetches IS
    'One row per URL fetch (projection of the fetches stream): state and progress for GET /v1/fetches; the fetch workers also find runnable fetches here.';
COMMENT ON COLUMN readmodel.fetches.id IS 'The fetch id: uuid5 of owner, generation and the normalised URL.';
COMMENT ON COLUMN readmodel.fetches.owner IS 'The user who asked for the fetch.';
COMMENT ON COLUMN readmodel.fetches.url IS 'The normalised URL (no userinfo, lower-case scheme and host).';
COMMENT ON COLUMN readmodel.fetches.generation IS 'Counts the fetches of this URL by this owner: a refresh, or a new request after a failed, cancelled or expired one, is the next generation.';
COMMENT ON COLUMN readmodel.fetches.bucket IS 'The bucket the file goes into.';
COMMENT ON COLUMN readmodel.fetches.key IS 'The object key asked for, if any.';
COMMENT ON COLUMN readmodel.fetches.sha256 IS 'The declared sha256 the bytes must match, if any.';
COMMENT ON COLUMN readmodel.fetches.status IS 'PENDING, IN_PROGRESS, PAUSED, COMPLETED, FAILED or CANCELLED.';
COMMENT ON COLUMN readmodel.fetches.bytes IS 'Bytes durably stored and recorded (the offset a resume continues from).';
COMMENT ON COLUMN readmodel.fetches.total IS 'The size of the resource when the origin said (Content-Range total or a 200''s Content-Length); null when unknown.';
COMMENT ON COLUMN readmodel.fetches.attempts IS 'Runs started since the fetch was requested or retried.';
COMMENT ON COLUMN readmodel.fetches.last_error IS 'The last attempt''s error or the failure, null if none.';
COMMENT ON COLUMN readmodel.fetches.etag IS 'The origin''s ETag of the bytes being fetched.';
COMMENT ON COLUMN readmodel.fetches.last_modified IS 'The origin''s Last-Modified of the bytes being fetched.';
COMMENT ON COLUMN readmodel.fetches.content_type IS 'The origin''s Content-Type.';
COMMENT ON COLUMN readmodel.fetches.file_name IS 'From Content-Disposition, else the last segment of the URL path.';
COMMENT ON COLUMN readmodel.fetches.file_id IS 'The file the fetch became (readmodel.files.id), once completed.';
COMMENT ON COLUMN readmodel.fetches.run_started_at IS 'When the current run started (for speed).';
COMMENT ON COLUMN readmodel.fetches.run_start_bytes IS 'Bytes held when the current run started (for speed).';
COMMENT ON COLUMN readmodel.fetches.created_at IS 'When the fetch was requested.';
COMMENT ON COLUMN readmodel.fetches.updated_at IS 'The time of the last event.';
COMMENT ON COLUMN readmodel.fetches.completed_at IS 'When the fetch completed.';
COMMENT ON COLUMN readmodel.fetches.last_version IS 'The stream version last applied to this row.';

CREATE INDEX IF NOT EXISTS fetches_owner_url_idx
    ON readmodel.fetches (owner, url, generation DESC);
COMMENT ON INDEX readmodel.fetches_owner_url_idx IS
    'POST /v1/fetches finds the newest generation of a URL for an owner.';
CREATE INDEX IF NOT EXISTS fetches_runnable_idx
    ON readmodel.fetches (created_at) WHERE status IN ('PENDING', 'IN_PROGRESS');
COMMENT ON INDEX readmodel.fetches_runnable_idx IS
    'The fetch workers look for fetches to run or take over.';

CREATE SCHEMA IF NOT EXISTS work;

CREATE TABLE IF NOT EXISTS work.fetch_leases (
    fetch_id     uuid        PRIMARY KEY,
    owner        text        NOT NULL,
    holder       text        NOT NULL,
    lease_until  timestamptz NOT NULL
);
COMMENT ON TABLE work.fetch_leases IS
    'Which fetch worker runs which fetch. A worker renews its lease every CAIRN_FETCH_LEASE/3 seconds; a lease past lease_until (worker dead) is taken over by the next worker, which resumes from the last recorded byte.';
COMMENT ON COLUMN work.fetch_leases.fetch_id IS 'The fetch (readmodel.fetches.id).';
COMMENT ON COLUMN work.fetch_leases.owner IS 'The fetch''s owner, for the per-owner concurrency limit.';
COMMENT ON COLUMN work.fetch_leases.holder IS 'The worker run holding it (also the runner recorded in FetchStarted).';
COMMENT ON COLUMN work.fetch_leases.lease_until IS 'The lease is held until then.';

-- (the tasks projection's row too: 0011_tasks.sql did not add it)
INSERT INTO readmodel.projection_streams (projection, stream_prefix)
VALUES ('fetches', 'fetch-'), ('tasks', 'task-')
ON CONFLICT DO NOTHING;
