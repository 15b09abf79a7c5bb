-- An object PUT replaces what its key holds, so it is judged by what it adds to the key,
-- not by its whole size (projections/usage.py reserve): its reservation names the key's
-- object (`target`) from the start, and, once its write is applied, the stream version
-- that write left (`version`). A tus or native upload whose bucket was deleted after it
-- began holds no quota while active; completing it (the bucket made again) asks for its
-- bytes afresh, held (`completing`) until the uploads read model has it completed.
-- Additive: three nullable columns; rows without them count as before.
ALTER TABLE api.quota_reservations ADD COLUMN IF NOT EXISTS target uuid;
ALTER TABLE api.quota_reservations ADD COLUMN IF NOT EXISTS version bigint;
ALTER TABLE api.quota_reservations ADD COLUMN IF NOT EXISTS completing uuid;
CREATE INDEX IF NOT EXISTS quota_reservations_target_idx
    ON api.quota_reservations (target) WHERE target IS NOT NULL;
COMMENT ON COLUMN api.quota_reservations.target IS
    'The object (file id of bucket and key) the request writes, replacing what it holds; null for a request that makes a new file. The key counts the largest of its live size and the bytes of the puts on their way to it.';
COMMENT ON COLUMN api.quota_reservations.version IS
    'With a target: the object stream''s version the write left, once applied; the row counts until readmodel.files has that version (null: the write is not applied yet, or failed and the row is about to go).';
COMMENT ON COLUMN api.quota_reservations.completing IS
    'A completion''s hold: the upload (whose bucket went since it began, so it held nothing) being completed; the row counts until readmodel.uploads has that upload completed (or ended).';
