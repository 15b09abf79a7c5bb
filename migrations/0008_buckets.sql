-- Buckets: the read model of the bucket aggregate, and usage per bucket.
--
-- Objects are files whose bucket is the bucket's name and whose owner is the bucket's
-- owner, so usage is counted from readmodel.files (the authority for what exists) rather
-- than kept as counters that could drift between two projections.

CREATE TABLE IF NOT EXISTS readmodel.buckets (
    name          text        PRIMARY KEY,
    owner         text        NOT NULL,
    public        boolean     NOT NULL,
    description   text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    last_version  bigint      NOT NULL
);
COMMENT ON TABLE readmodel.buckets IS
    'One row per bucket name, including deleted buckets (deleted_at set); a name created again after a delete reuses its row. Source: the buckets aggregate (BucketCreated, BucketUpdated, BucketDeleted).';
COMMENT ON COLUMN readmodel.buckets.name IS 'Bucket name (S3 rules; the aggregate id, stream "bucket-<name>").';
COMMENT ON COLUMN readmodel.buckets.owner IS 'User id that owns the bucket.';
COMMENT ON COLUMN readmodel.buckets.public IS 'True: its objects are readable (GET, HEAD, list) without authentication.';
COMMENT ON COLUMN readmodel.buckets.description IS 'Free text given by the owner.';
COMMENT ON COLUMN readmodel.buckets.created_at IS 'When the bucket (this incarnation of the name) was created.';
COMMENT ON COLUMN readmodel.buckets.updated_at IS 'When the last event of this bucket happened.';
COMMENT ON COLUMN readmodel.buckets.deleted_at IS 'When the bucket was deleted; null while it exists.';
COMMENT ON COLUMN readmodel.buckets.last_version IS 'Version of the last event of the bucket stream reflected in this row.';

CREATE INDEX IF NOT EXISTS buckets_owner_name_idx
    ON readmodel.buckets (owner, name) WHERE deleted_at IS NULL;

-- Objects of one bucket, whoever asks (usage, emptiness, object listings by key).
CREATE INDEX IF NOT EXISTS files_bucket_owner_name_idx
    ON readmodel.files (bucket, owner, name text_pattern_ops) WHERE deleted_at IS NULL;

CREATE OR REPLACE VIEW readmodel.bucket_usage AS
SELECT b.name AS bucket, b.owner,
       count(f.id) AS objects, coalesce(sum(f.size), 0)::bigint AS bytes
FROM readmodel.buckets b
LEFT JOIN readmodel.files f
       ON f.bucket = b.name AND f.owner = b.owner AND f.deleted_at IS NULL
WHERE b.deleted_at IS NULL
GROUP BY b.name, b.owner;
COMMENT ON VIEW readmodel.bucket_usage IS
    'Per live bucket: its objects (live files in it owned by the bucket owner) and their logical bytes.';

CREATE OR REPLACE VIEW readmodel.bucket_usage_by_owner AS
SELECT owner, count(*) AS buckets, coalesce(sum(objects), 0)::bigint AS objects,
       coalesce(sum(bytes), 0)::bigint AS bytes
FROM readmodel.bucket_usage
GROUP BY owner;
COMMENT ON VIEW readmodel.bucket_usage_by_owner IS
    'Per owner: live buckets, the objects in them and their logical bytes.';
COMMENT ON COLUMN readmodel.bucket_usage.bucket IS 'Bucket name (readmodel.buckets.name).';
COMMENT ON COLUMN readmodel.bucket_usage.owner IS 'User id that owns the bucket.';
COMMENT ON COLUMN readmodel.bucket_usage.objects IS 'Live objects in the bucket.';
COMMENT ON COLUMN readmodel.bucket_usage.bytes IS 'Their logical bytes (before chunk deduplication).';
COMMENT ON COLUMN readmodel.bucket_usage_by_owner.owner IS 'User id.';
COMMENT ON COLUMN readmodel.bucket_usage_by_owner.buckets IS 'Live buckets the user owns.';
COMMENT ON COLUMN readmodel.bucket_usage_by_owner.objects IS 'Live objects in them.';
COMMENT ON COLUMN readmodel.bucket_usage_by_owner.bytes IS 'Their logical bytes (before chunk deduplication).';

-- The buckets projection consumes the bucket streams (for readmodel.projection_lag).
INSERT INTO readmodel.projection_streams (projection, stream_prefix)
VALUES ('buckets', 'bucket-')
ON CONFLICT DO NOTHING;
