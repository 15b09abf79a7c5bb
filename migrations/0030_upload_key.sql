-- An upload's object key (domain/uploads: InitiateUpload.key, UploadInitiated.key), the
-- object in its bucket the completed upload becomes, in the uploads read model, so
-- GET /v1/uploads lists it next to `bucket` (and GET /v1/uploads/{id} shows it): a client
-- listing its uploads can tell which object each becomes. Additive: a new nullable column,
-- null for an upload that becomes a plain file. Byte (code point) order, as files.key
-- (0013_objects.sql).
ALTER TABLE readmodel.uploads ADD COLUMN IF NOT EXISTS key text COLLATE "C";

-- The rows recorded before: what the projection (projections/uploads.py) would have
-- written. Only UploadInitiated sets it, and a row exists only once the projector has
-- applied it, so every row's is its stream's UploadInitiated's. An event without a string
-- `key` (a plain upload, or written with "key": null) has none: null.
UPDATE readmodel.uploads u
   SET key = e.data ->> 'key'
  FROM eventstore.events e
 WHERE e.stream_id = 'upload-' || u.id::text
   AND e.version = 1
   AND e.event_type = 'UploadInitiated'
   AND jsonb_typeof(e.data -> 'key') = 'string';

COMMENT ON COLUMN readmodel.uploads.key IS
    'The object key in bucket the completed upload becomes (POST /v1/uploads key, tus Upload-Metadata key); null for an upload that becomes a plain file. Byte (code point) order, as files.key.';
