-- An object version's stored HTTP headers (Cache-Control, Content-Disposition,
-- Content-Encoding, Content-Language, Expires; domain/files/headers.py) in the files read
-- model, so the listings (GET /v1/files, GET /v1/buckets/{name}/objects) show them as
-- they show content_type and metadata. Additive: a new column, '{}' for a file without
-- any (every file that is no object).
ALTER TABLE readmodel.files ADD COLUMN IF NOT EXISTS headers jsonb NOT NULL DEFAULT '{}';

-- The rows recorded before: what the projection (projections/files.py) would have written.
-- Only FileCreated and FileReplaced set a version's headers (a rename, move or metadata
-- change, FileUpdated, and a delete keep them), so a row's headers are those of the latest
-- of the two its row has applied (version <= last_version: an event the projector has not
-- reached yet writes its own headers when it gets there). Events from before headers
-- existed have no `headers`: none.
UPDATE readmodel.files f
   SET headers = h.headers
  FROM (
        SELECT DISTINCT ON (f2.id) f2.id, coalesce(e.data -> 'headers', '{}') AS headers
          FROM readmodel.files f2
          JOIN eventstore.events e ON e.stream_id = 'file-' || f2.id::text
         WHERE e.event_type IN ('FileCreated', 'FileReplaced')
           AND e.version <= f2.last_version
         ORDER BY f2.id, e.version DESC
       ) h
 WHERE f.id = h.id
   AND h.headers <> '{}'::jsonb;

COMMENT ON COLUMN readmodel.files.headers IS
    'The version''s stored HTTP headers by lower-case name (cache-control, content-disposition, content-encoding, content-language, expires), as sent with its PUT; {} when none (and for a file that is no object).';

-- The analysts' view of live files gets them too (as 0018 gave it `key`): the new column
-- goes at the end, as CREATE OR REPLACE VIEW requires.
CREATE OR REPLACE VIEW readmodel.live_files AS
SELECT id, owner, name, size, content_type, sha256, bucket, metadata, upload_id, chunk_count,
       created_at, updated_at, key, headers
FROM readmodel.files
WHERE deleted_at IS NULL;
COMMENT ON COLUMN readmodel.live_files.headers IS
    'The version''s stored HTTP headers by lower-case name (cache-control, content-disposition, content-encoding, content-language, expires); {} when none.';
