-- Idempotency keys held by a lease: a claim whose holder died is free again within seconds
-- (not after a ten-minute timeout), and answers are kept byte for byte for replays.

ALTER TABLE api.idempotency_keys
    ADD COLUMN IF NOT EXISTS lease_until   timestamptz,
    ADD COLUMN IF NOT EXISTS holder        text,
    ADD COLUMN IF NOT EXISTS response_body bytea;

COMMENT ON COLUMN api.idempotency_keys.lease_until IS
    'While pending: the claim is held until then (6 s ahead), renewed every 2 s by the request running it; past it (holder dead, or released) the next request with the key takes the row over, keeping created_at.';
COMMENT ON COLUMN api.idempotency_keys.holder IS
    'The API process holding a pending claim (host:port); a restarted process releases its predecessor''s claims at once.';
COMMENT ON COLUMN api.idempotency_keys.response_body IS
    'The stored answer''s exact bytes, so a replay is byte-identical; null while pending.';

CREATE INDEX IF NOT EXISTS idempotency_keys_pending_holder_idx
    ON api.idempotency_keys (holder) WHERE completed_at IS NULL;
COMMENT ON INDEX api.idempotency_keys_pending_holder_idx IS
    'Finds the pending claims of one API process when it restarts.';
