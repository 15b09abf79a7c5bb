-- An upload's stored HTTP headers (Cache-Control, Content-Disposition, Content-Encoding,
-- Content-Language, Expires; domain/files/headers.py), the ones the object it becomes gets,
-- in the uploads read model, so GET /v1/uploads lists them as it lists metadata (and
-- GET /v1/uploads/{id} shows them). Additive: a new column, '{}' for an upload without any
-- (every upload that is not into a bucket key).
ALTER TABLE readmodel.uploads ADD COLUMN IF NOT EXISTS headers jsonb NOT NULL DEFAULT '{}';

-- The rows recorded before: what the projection (projections/uploads.py) would have
-- written. Only UploadInitiated sets them, and a row exists only once the projector has
-- applied it, so every row's are its stream's UploadInitiated's. Events from before
-- headers existed have no `headers`: none.
UPDATE readmodel.uploads u
   SET headers = e.data -> 'headers'
  FROM eventstore.events e
 WHERE e.stream_id = 'upload-' || u.id::text
   AND e.version = 1
   AND e.event_type = 'UploadInitiated'
   AND jsonb_typeof(e.data -> 'headers') = 'object'
   AND e.data -> 'headers' <> '{}'::jsonb;

COMMENT ON COLUMN readmodel.uploads.headers IS
    'The stored HTTP headers by lower-case name (cache-control, content-disposition, content-encoding, content-language, expires) the object the upload becomes gets (POST /v1/uploads headers, tus Upload-Metadata); {} when none (and for an upload into no key).';
