-- Objects: a file with a key in its bucket (domain/files/keys.py). The object's file id is
-- derived from (bucket, key), so there is at most one row per key; listing a bucket's
-- objects (ListObjectsV2) reads live rows in key order from the index below.
ALTER TABLE readmodel.files ADD COLUMN IF NOT EXISTS key text COLLATE "C";
COMMENT ON COLUMN readmodel.files.key IS
    'The object key of a bucket object (PUT /v1/buckets/{name}/objects/{key}, an upload or fetch naming a key); null for a file that is no object. Byte (code point) order, as S3 lists keys.';
COMMENT ON COLUMN readmodel.files.created_at IS
    'When the file was created; for an object, when its current version was written (FileReplaced).';
COMMENT ON TABLE readmodel.files IS
    'One row per file, including deleted ones (deleted_at set). A file is an ordered manifest of content-addressed chunks; an object is a file with a key. Source: the files aggregate (FileCreated, FileReplaced: an object''s new version, FileUpdated: name, bucket and metadata, FileDeleted). Use readmodel.live_files for files that exist.';

-- ListObjectsV2: live objects of one bucket (of its owner) in key order, prefix ranges.
CREATE INDEX IF NOT EXISTS files_bucket_owner_key_idx
    ON readmodel.files (bucket, owner, key)
    WHERE deleted_at IS NULL AND key IS NOT NULL;
