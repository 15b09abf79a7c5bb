-- Idempotency keys (API) and the chunk-reference table the blob garbage collector reads.

-- ---- idempotency keys ------------------------------------------------------------------

CREATE SCHEMA IF NOT EXISTS api;
COMMENT ON SCHEMA api IS
    'State private to the HTTP API (not derived from events): idempotency keys.';

CREATE TABLE IF NOT EXISTS api.idempotency_keys (
    owner                text        NOT NULL,
    key                  text        NOT NULL,
    request_target       text        NOT NULL,
    request_fingerprint  text,
    token                uuid        NOT NULL,
    status_code          integer,
    response             jsonb,
    response_headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    PRIMARY KEY (owner, key)
);
COMMENT ON TABLE api.idempotency_keys IS
    'One row per (caller, Idempotency-Key): pending while the first request runs, then its answer, replayed to later requests with the same key. Rows expire after 24 hours (deleted by the cleanup).';
COMMENT ON COLUMN api.idempotency_keys.owner IS 'The caller (user id): keys are scoped per caller.';
COMMENT ON COLUMN api.idempotency_keys.key IS 'The Idempotency-Key header value.';
COMMENT ON COLUMN api.idempotency_keys.request_target IS 'Method and path of the first request.';
COMMENT ON COLUMN api.idempotency_keys.request_fingerprint IS 'sha256 of what identifies the request (target, body digest, relevant headers); null while a streamed body is still being read.';
COMMENT ON COLUMN api.idempotency_keys.token IS 'Identifies the request holding the row, so only it can complete or release it.';
COMMENT ON COLUMN api.idempotency_keys.status_code IS 'HTTP status of the stored answer; null while pending.';
COMMENT ON COLUMN api.idempotency_keys.response IS 'JSON body of the stored answer; null while pending.';
COMMENT ON COLUMN api.idempotency_keys.response_headers IS 'Headers of the answer worth replaying (Location).';
COMMENT ON COLUMN api.idempotency_keys.created_at IS 'When the first request with this key arrived.';
COMMENT ON COLUMN api.idempotency_keys.completed_at IS 'When the answer was stored; null while pending.';
CREATE INDEX IF NOT EXISTS idempotency_keys_created_idx ON api.idempotency_keys (created_at);

-- ---- chunk references ------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS readmodel.chunk_refs (
    sha256       text        NOT NULL,
    stream_id    text        NOT NULL,
    size         bigint      NOT NULL,
    released_at  timestamptz,
    PRIMARY KEY (sha256, stream_id)
);
COMMENT ON TABLE readmodel.chunk_refs IS
    'Which event streams (uploads, files) reference which content-addressed chunk. Maintained by the cleanup from eventstore.events in position order (not from Kafka), so it is exact up to readmodel.chunk_refs_position when the garbage collector reads it. A chunk with no live reference, released longer than the grace ago and older than the grace on disk is collected.';
COMMENT ON COLUMN readmodel.chunk_refs.sha256 IS 'The chunk (blob) digest.';
COMMENT ON COLUMN readmodel.chunk_refs.stream_id IS 'The referencing stream: upload-<id> (stored chunks, appended pieces, a final manifest) or file-<id> (the file manifest).';
COMMENT ON COLUMN readmodel.chunk_refs.size IS 'Size of the chunk in bytes.';
COMMENT ON COLUMN readmodel.chunk_refs.released_at IS 'When the stream stopped referencing the chunk (upload expired, aborted, failed or turned into a file; file deleted); null while live. Released rows are pruned once older than the grace.';
CREATE INDEX IF NOT EXISTS chunk_refs_stream_idx ON readmodel.chunk_refs (stream_id);

CREATE TABLE IF NOT EXISTS readmodel.chunk_refs_position (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE readmodel.chunk_refs_position IS
    'The eventstore.events position up to which readmodel.chunk_refs is complete (one row).';
INSERT INTO readmodel.chunk_refs_position (id, position) VALUES (true, 0) ON CONFLICT DO NOTHING;

CREATE OR REPLACE VIEW readmodel.chunk_usage AS
SELECT sha256, max(size) AS size, count(*) AS live_refs
FROM readmodel.chunk_refs
WHERE released_at IS NULL
GROUP BY sha256;
COMMENT ON VIEW readmodel.chunk_usage IS
    'Chunks referenced by at least one live upload or file, with their number of references.';
