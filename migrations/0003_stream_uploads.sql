-- Stream-mode uploads (tus): bytes appended at an offset, possibly with a deferred length,
-- and final uploads concatenating partial ones. Additive only (API.md: add columns, never
-- rename or drop).
ALTER TABLE readmodel.uploads ALTER COLUMN file_size DROP NOT NULL;
ALTER TABLE readmodel.uploads ADD COLUMN IF NOT EXISTS mode text NOT NULL DEFAULT 'chunks';
ALTER TABLE readmodel.uploads ADD COLUMN IF NOT EXISTS partial boolean NOT NULL DEFAULT false;

COMMENT ON TABLE readmodel.uploads IS
    'One row per upload (native chunked API and tus), current state. Source: the uploads aggregate (UploadInitiated, UploadChunkStored, UploadBytesAppended, UploadLengthDeclared, UploadCompleted, UploadAborted, UploadFailed, UploadExpired).';
COMMENT ON COLUMN readmodel.uploads.file_size IS
    'Declared total size in bytes; null while a tus upload defers its length (Upload-Defer-Length).';
COMMENT ON COLUMN readmodel.uploads.chunk_size IS
    'Size of every chunk but the last, in bytes (chunks mode; informational for stream and final).';
COMMENT ON COLUMN readmodel.uploads.total_chunks IS
    'Number of chunks the file is split into (chunks mode; 0 for stream and final).';
COMMENT ON COLUMN readmodel.uploads.bytes_received IS
    'Bytes stored durably so far: chunks mode, the stored chunks; stream mode, the upload offset (tus Upload-Offset); final mode, the concatenated parts.';
COMMENT ON COLUMN readmodel.uploads.mode IS
    'chunks (native API: numbered chunks), stream (tus: bytes appended at an offset) or final (tus concatenation of partial uploads).';
COMMENT ON COLUMN readmodel.uploads.partial IS
    'A tus partial upload (Upload-Concat: partial): never completed itself, only concatenated into a final upload.';
