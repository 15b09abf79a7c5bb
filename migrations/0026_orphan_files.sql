-- The orphan sweep (bus/orphans.py, run with the cleanup) looks for live files whose
-- bucket is gone: every live file of a deleted bucket name, and of a name taken again by
-- another user, the files written before that bucket was made. Both are one range of this
-- index per bucket row (a name's files, or those of its files older than its current
-- bucket), so a sweep reads the orphans and no file of a live bucket made after it.
CREATE INDEX IF NOT EXISTS files_bucket_created_idx
    ON readmodel.files (bucket, created_at) WHERE deleted_at IS NULL;
