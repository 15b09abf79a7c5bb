-- Read models ("projections"): what the API lists and what analysts query.
--
-- Everything here is derived from eventstore.events and can be rebuilt from it at any time
-- (POST /v1/admin/projections/{name}/rebuild). Names of tables, views and columns are a
-- public contract (API.md, "Postgres for analysts"): add columns, never rename or drop.
CREATE SCHEMA IF NOT EXISTS readmodel;
COMMENT ON SCHEMA readmodel IS
    'Cairn read models, derived from eventstore.events by the projector; consistent within a bounded lag (see readmodel.projection_lag). Rebuildable at any time.';

-- ---- uploads ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS readmodel.uploads (
    id               uuid        PRIMARY KEY,
    owner            text        NOT NULL,
    file_name        text        NOT NULL,
    file_size        bigint      NOT NULL,
    chunk_size       bigint      NOT NULL,
    total_chunks     bigint      NOT NULL,
    chunks_received  bigint      NOT NULL DEFAULT 0,
    bytes_received   bigint      NOT NULL DEFAULT 0,
    content_type     text        NOT NULL,
    bucket           text        NOT NULL,
    sha256           text,
    status           text        NOT NULL,
    file_id          uuid,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    failure_reason   text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    completed_at     timestamptz,
    last_version     bigint      NOT NULL
);
COMMENT ON TABLE readmodel.uploads IS
    'One row per upload (native chunked API and tus), current state. Source: the uploads aggregate (UploadInitiated, UploadChunkStored, UploadCompleted, UploadAborted, UploadFailed, UploadExpired).';
COMMENT ON COLUMN readmodel.uploads.id IS 'Upload id (the aggregate id; stream "upload-<id>").';
COMMENT ON COLUMN readmodel.uploads.owner IS 'User id that owns the upload.';
COMMENT ON COLUMN readmodel.uploads.file_name IS 'File name given by the client.';
COMMENT ON COLUMN readmodel.uploads.file_size IS 'Declared total size in bytes.';
COMMENT ON COLUMN readmodel.uploads.chunk_size IS 'Size of every chunk but the last, in bytes.';
COMMENT ON COLUMN readmodel.uploads.total_chunks IS 'Number of chunks the file is split into.';
COMMENT ON COLUMN readmodel.uploads.chunks_received IS 'Distinct chunks stored durably so far.';
COMMENT ON COLUMN readmodel.uploads.bytes_received IS 'Bytes of the chunks stored so far.';
COMMENT ON COLUMN readmodel.uploads.content_type IS 'MIME type given by the client.';
COMMENT ON COLUMN readmodel.uploads.bucket IS 'Target bucket of the resulting file.';
COMMENT ON COLUMN readmodel.uploads.sha256 IS 'sha256 declared by the client at initiation (hex), if any.';
COMMENT ON COLUMN readmodel.uploads.status IS 'INITIATED, IN_PROGRESS, COMPLETED, FAILED, ABORTED or EXPIRED.';
COMMENT ON COLUMN readmodel.uploads.file_id IS 'The file created by completion (readmodel.files.id); null until COMPLETED.';
COMMENT ON COLUMN readmodel.uploads.metadata IS 'User metadata (string keys and values).';
COMMENT ON COLUMN readmodel.uploads.failure_reason IS 'Why the upload FAILED; null otherwise.';
COMMENT ON COLUMN readmodel.uploads.created_at IS 'When the upload was initiated.';
COMMENT ON COLUMN readmodel.uploads.updated_at IS 'When the last event of this upload happened.';
COMMENT ON COLUMN readmodel.uploads.completed_at IS 'When the upload COMPLETED; null otherwise.';
COMMENT ON COLUMN readmodel.uploads.last_version IS 'Version of the last event of the upload stream reflected in this row.';

-- Listing per owner by each sortable column (id breaks ties so paging is stable).
CREATE INDEX IF NOT EXISTS uploads_owner_created_idx ON readmodel.uploads (owner, created_at, id);
CREATE INDEX IF NOT EXISTS uploads_owner_updated_idx ON readmodel.uploads (owner, updated_at, id);
CREATE INDEX IF NOT EXISTS uploads_owner_name_idx ON readmodel.uploads (owner, file_name, id);
CREATE INDEX IF NOT EXISTS uploads_owner_size_idx ON readmodel.uploads (owner, file_size, id);
CREATE INDEX IF NOT EXISTS uploads_owner_status_idx
    ON readmodel.uploads (owner, status, created_at, id);
-- Expiry sweeps and admin views look for active uploads regardless of owner.
CREATE INDEX IF NOT EXISTS uploads_status_updated_idx ON readmodel.uploads (status, updated_at);

-- ---- files -----------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS readmodel.files (
    id            uuid        PRIMARY KEY,
    owner         text        NOT NULL,
    name          text        NOT NULL,
    size          bigint      NOT NULL,
    content_type  text        NOT NULL,
    sha256        text        NOT NULL,
    bucket        text        NOT NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    upload_id     uuid,
    chunk_count   integer     NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    last_version  bigint      NOT NULL
);
COMMENT ON TABLE readmodel.files IS
    'One row per file, including deleted ones (deleted_at set). A file is an ordered manifest of content-addressed chunks. Source: the files aggregate (FileCreated, FileDeleted). Use readmodel.live_files for files that exist.';
COMMENT ON COLUMN readmodel.files.id IS 'File id (the aggregate id; stream "file-<id>").';
COMMENT ON COLUMN readmodel.files.owner IS 'User id that owns the file.';
COMMENT ON COLUMN readmodel.files.name IS 'File name (or object key for path-style bucket objects).';
COMMENT ON COLUMN readmodel.files.size IS 'Size in bytes.';
COMMENT ON COLUMN readmodel.files.content_type IS 'MIME type.';
COMMENT ON COLUMN readmodel.files.sha256 IS 'sha256 of the whole content (hex).';
COMMENT ON COLUMN readmodel.files.bucket IS 'Bucket the file lives in.';
COMMENT ON COLUMN readmodel.files.metadata IS 'User metadata (string keys and values).';
COMMENT ON COLUMN readmodel.files.upload_id IS 'The upload that produced the file, if any (readmodel.uploads.id).';
COMMENT ON COLUMN readmodel.files.chunk_count IS 'Number of chunks in the manifest.';
COMMENT ON COLUMN readmodel.files.created_at IS 'When the file was created.';
COMMENT ON COLUMN readmodel.files.updated_at IS 'When the last event of this file happened.';
COMMENT ON COLUMN readmodel.files.deleted_at IS 'When the file was deleted; null while it exists.';
COMMENT ON COLUMN readmodel.files.last_version IS 'Version of the last event of the file stream reflected in this row.';

-- Live files only: every listing filters on deleted_at IS NULL, so the partial indexes match.
CREATE INDEX IF NOT EXISTS files_owner_bucket_name_idx
    ON readmodel.files (owner, bucket, name) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS files_owner_created_idx
    ON readmodel.files (owner, created_at, id) WHERE deleted_at IS NULL;
-- text_pattern_ops: the name-prefix filter (LIKE 'abc%') can use it whatever the collation.
CREATE INDEX IF NOT EXISTS files_owner_name_prefix_idx
    ON readmodel.files (owner, name text_pattern_ops) WHERE deleted_at IS NULL;
-- "Known sha256 of the caller's own file": deduplicated uploads.
CREATE INDEX IF NOT EXISTS files_owner_sha256_idx
    ON readmodel.files (owner, sha256) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS files_upload_idx ON readmodel.files (upload_id);
CREATE INDEX IF NOT EXISTS files_created_idx ON readmodel.files (created_at);

-- ---- usage -----------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS readmodel.usage_daily (
    owner              text   NOT NULL,
    day                date   NOT NULL,
    uploads_started    bigint NOT NULL DEFAULT 0,
    uploads_completed  bigint NOT NULL DEFAULT 0,
    bytes_uploaded     bigint NOT NULL DEFAULT 0,
    files_created      bigint NOT NULL DEFAULT 0,
    files_deleted      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, day)
);
COMMENT ON TABLE readmodel.usage_daily IS
    'Activity per owner per UTC day (the day of the event''s own timestamp). Upload columns come from the uploads projection, file columns from the files projection.';
COMMENT ON COLUMN readmodel.usage_daily.owner IS 'User id.';
COMMENT ON COLUMN readmodel.usage_daily.day IS 'UTC calendar day.';
COMMENT ON COLUMN readmodel.usage_daily.uploads_started IS 'Uploads initiated that day.';
COMMENT ON COLUMN readmodel.usage_daily.uploads_completed IS 'Uploads completed that day.';
COMMENT ON COLUMN readmodel.usage_daily.bytes_uploaded IS 'Bytes of upload chunks stored that day (each chunk counted once).';
COMMENT ON COLUMN readmodel.usage_daily.files_created IS 'Files created that day.';
COMMENT ON COLUMN readmodel.usage_daily.files_deleted IS 'Files deleted that day.';
CREATE INDEX IF NOT EXISTS usage_daily_day_idx ON readmodel.usage_daily (day);

-- ---- projector bookkeeping -------------------------------------------------------------

CREATE TABLE IF NOT EXISTS readmodel.applied (
    projection  text   NOT NULL,
    stream_id   text   NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (projection, stream_id)
);
COMMENT ON TABLE readmodel.applied IS
    'Idempotency checkpoint: the last event version of each stream applied by each projection, written in the same transaction as the effect. A redelivered event (version <= checkpoint) is skipped; a gap (version > checkpoint + 1) is filled from the event store.';
COMMENT ON COLUMN readmodel.applied.projection IS 'Projection name (uploads, files, ...).';
COMMENT ON COLUMN readmodel.applied.stream_id IS 'Event stream, e.g. upload-<uuid>.';
COMMENT ON COLUMN readmodel.applied.version IS 'Highest version of the stream applied.';

CREATE TABLE IF NOT EXISTS readmodel.status (
    projection     text        PRIMARY KEY,
    last_position  bigint      NOT NULL,
    last_event_at  timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE readmodel.status IS
    'Progress of each projection: the highest event-store position applied and when that event happened. See readmodel.projection_lag.';
COMMENT ON COLUMN readmodel.status.projection IS 'Projection name.';
COMMENT ON COLUMN readmodel.status.last_position IS 'Highest eventstore.events.position applied.';
COMMENT ON COLUMN readmodel.status.last_event_at IS 'occurred_at of the event at last_position.';
COMMENT ON COLUMN readmodel.status.updated_at IS 'When the projection last applied an event.';

-- ---- views for analysts ----------------------------------------------------------------

CREATE OR REPLACE VIEW readmodel.upload_stats AS
SELECT
    owner,
    count(*)                                            AS uploads_total,
    count(*) FILTER (WHERE status = 'INITIATED')        AS initiated,
    count(*) FILTER (WHERE status = 'IN_PROGRESS')      AS in_progress,
    count(*) FILTER (WHERE status = 'COMPLETED')        AS completed,
    count(*) FILTER (WHERE status = 'FAILED')           AS failed,
    count(*) FILTER (WHERE status = 'ABORTED')          AS aborted,
    count(*) FILTER (WHERE status = 'EXPIRED')          AS expired,
    coalesce(sum(bytes_received), 0)::bigint            AS bytes_received,
    coalesce(sum(file_size) FILTER (WHERE status = 'COMPLETED'), 0)::bigint
                                                        AS bytes_completed,
    max(updated_at)                                     AS last_activity_at
FROM readmodel.uploads
GROUP BY owner;
COMMENT ON VIEW readmodel.upload_stats IS
    'Per owner: uploads by status, bytes received (all uploads), bytes of completed uploads, last activity.';

CREATE OR REPLACE VIEW readmodel.live_files AS
SELECT id, owner, name, size, content_type, sha256, bucket, metadata, upload_id, chunk_count,
       created_at, updated_at
FROM readmodel.files
WHERE deleted_at IS NULL;
COMMENT ON VIEW readmodel.live_files IS 'Files that exist (not deleted).';

CREATE OR REPLACE VIEW readmodel.storage_by_owner AS
SELECT owner, bucket, count(*) AS files, coalesce(sum(size), 0)::bigint AS bytes
FROM readmodel.files
WHERE deleted_at IS NULL
GROUP BY owner, bucket;
COMMENT ON VIEW readmodel.storage_by_owner IS
    'Live files and their logical bytes per owner and bucket (before chunk deduplication).';

CREATE OR REPLACE VIEW readmodel.projection_lag AS
SELECT
    s.projection,
    s.last_position,
    s.last_event_at,
    s.updated_at,
    greatest(coalesce((SELECT max(position) FROM eventstore.events), 0) - s.last_position, 0)
        AS positions_behind,
    now() - s.last_event_at AS age_of_last_event
FROM readmodel.status s;
COMMENT ON VIEW readmodel.projection_lag IS
    'How far each projection is behind: event-store positions not yet reached (an upper bound: positions of other aggregates count too) and the age of the last applied event.';
