-- Small blobs as rows instead of one file (or S3 object) each (issue 13, bus/blobs/inline.py).
--
-- A 4 KiB file stored as a file costs an inode, a rename and two fsyncs, most of a small
-- upload's work; as a row it rides PostgreSQL's WAL, whose flushes concurrent puts share.
-- `stored_at` is the writer's clock in epoch seconds, as a file's mtime is: the collector
-- deletes a row only if it is still older than its cutoff (a put of the same bytes
-- refreshes it). EXTERNAL storage: out of line once large, never compressed (uploads are
-- mostly compressed already, and a failed compression attempt is wasted CPU on every put).
CREATE SCHEMA IF NOT EXISTS blobs;
CREATE TABLE IF NOT EXISTS blobs.inline (
    sha256    text PRIMARY KEY,
    size      integer NOT NULL,
    stored_at double precision NOT NULL,
    data      bytea NOT NULL
);
ALTER TABLE blobs.inline ALTER COLUMN data SET STORAGE EXTERNAL;

COMMENT ON SCHEMA blobs IS
    'Blob bytes kept in PostgreSQL: the small blobs (CAIRN_BLOB_INLINE_BYTES), bus/blobs/inline.py.';
COMMENT ON TABLE blobs.inline IS
    'Blobs of at most CAIRN_BLOB_INLINE_BYTES, one row each instead of a file or S3 object; '
    'referenced by sha256 from events and readmodel.files manifests like any chunk.';
COMMENT ON COLUMN blobs.inline.sha256 IS 'The blob''s name: the sha256 hex of data.';
COMMENT ON COLUMN blobs.inline.size IS 'Bytes in data.';
COMMENT ON COLUMN blobs.inline.stored_at IS
    'When the blob was last put, epoch seconds by the writer''s clock: the garbage '
    'collector deletes a row only while it is older than its cutoff.';
COMMENT ON COLUMN blobs.inline.data IS 'The bytes (stored out of line once large, never compressed).';
