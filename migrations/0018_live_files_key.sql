-- readmodel.live_files gets the object key (0013_objects.sql added `key` to readmodel.files
-- but not to the view), so analysts can tell objects (key set, what ListObjectsV2 lists)
-- from plain files in a bucket without going back to the table. Additive: the new column
-- goes at the end, as CREATE OR REPLACE VIEW requires.
CREATE OR REPLACE VIEW readmodel.live_files AS
SELECT id, owner, name, size, content_type, sha256, bucket, metadata, upload_id, chunk_count,
       created_at, updated_at, key
FROM readmodel.files
WHERE deleted_at IS NULL;
COMMENT ON VIEW readmodel.live_files IS
    'Files that exist (not deleted); objects are the rows with a key.';
COMMENT ON COLUMN readmodel.live_files.key IS
    'The object key of a bucket object; null for a file that is no object (listed by GET /v1/files, not by the bucket''s object listing).';
COMMENT ON COLUMN readmodel.live_files.created_at IS
    'When the file was created; for an object, when its current version was written.';
