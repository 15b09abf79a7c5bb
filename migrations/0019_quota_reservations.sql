-- Bytes promised to requests still in flight, so that concurrent uploads of one owner cannot
-- all pass the quota check before any of them is recorded (projections/usage.py). A row is
-- written under a per-owner advisory lock together with the check, and deleted when its
-- request is recorded (the upload then counts by its own events); a request that made a
-- file directly (an object PUT) names it in `file_id`, and the row counts until the files
-- read model has that file. `expires_at` bounds what a crashed API process leaves behind.
CREATE TABLE IF NOT EXISTS api.quota_reservations (
    id          uuid        PRIMARY KEY,
    owner       text        NOT NULL,
    bytes       bigint      NOT NULL CHECK (bytes >= 0),
    file_id     uuid,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS quota_reservations_owner_idx ON api.quota_reservations (owner);
COMMENT ON TABLE api.quota_reservations IS
    'Quota held by uploads in flight (the API''s, not a read model); counted by the quota check until the upload or its file is recorded.';
COMMENT ON COLUMN api.quota_reservations.id IS 'The reservation (one per request that adds bytes).';
COMMENT ON COLUMN api.quota_reservations.owner IS 'Whose quota the bytes are held against.';
COMMENT ON COLUMN api.quota_reservations.bytes IS 'Bytes held, counted as used by the quota check.';
COMMENT ON COLUMN api.quota_reservations.file_id IS 'The file the request made, once made: the row counts until readmodel.files has it, then the file counts instead.';
COMMENT ON COLUMN api.quota_reservations.expires_at IS 'After this the row no longer counts (and is deleted by the owner''s next check): what a crashed API process left behind.';
