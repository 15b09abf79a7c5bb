-- Files can be renamed, moved between buckets and given new user metadata (FileUpdated):
-- the row keeps its id and created_at; name, bucket, metadata and updated_at follow.
COMMENT ON TABLE readmodel.files IS
    'One row per file, including deleted ones (deleted_at set). A file is an ordered manifest of content-addressed chunks. Source: the files aggregate (FileCreated, FileUpdated: name, bucket and metadata, FileDeleted). Use readmodel.live_files for files that exist.';
COMMENT ON COLUMN readmodel.files.name IS 'File name, as last set (FileCreated, then FileUpdated).';
COMMENT ON COLUMN readmodel.files.bucket IS 'Bucket the file lives in (default: in no bucket, private to its owner), as last set.';
COMMENT ON COLUMN readmodel.files.metadata IS 'User metadata (string keys and values, at most 8 KiB), as last set.';
