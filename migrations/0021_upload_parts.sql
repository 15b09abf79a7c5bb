-- A tus concatenation (mode 'final') records the partial uploads it is made of, so that
-- the quota (projections/usage.py storage_used) counts their bytes once: in the final (its
-- file) while it lives, not again in the parts, which stay active (reusable) until they
-- expire. Additive: a new column, filled for the finals recorded before from their
-- UploadInitiated event (`parts`, the part upload ids; absent before concatenation
-- existed: none).
ALTER TABLE readmodel.uploads ADD COLUMN IF NOT EXISTS parts uuid[] NOT NULL DEFAULT '{}';

UPDATE readmodel.uploads u
   SET parts = ARRAY(SELECT jsonb_array_elements_text(coalesce(e.data -> 'parts', '[]')))::uuid[]
  FROM eventstore.events e
 WHERE u.mode = 'final'
   AND e.stream_id = 'upload-' || u.id::text
   AND e.version = 1
   AND e.event_type = 'UploadInitiated';

-- "Which finals hold this part": storage_used looks a counting part's finals up by part.
CREATE INDEX IF NOT EXISTS uploads_final_parts_idx ON readmodel.uploads
    USING gin (parts) WHERE mode = 'final';

COMMENT ON COLUMN readmodel.uploads.parts IS
    'A final upload (tus concatenation): the ids of the partial uploads it concatenates, in order (a part named twice appears twice); empty for every other upload.';
COMMENT ON INDEX readmodel.uploads_final_parts_idx IS
    'The final uploads that concatenate a given partial upload (the quota counts a part''s bytes in its final while that lives).';
