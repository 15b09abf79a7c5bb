-- Download counts per file: written by the API in periodic batches, not from events.

CREATE TABLE IF NOT EXISTS readmodel.file_downloads (
    file_id           uuid        PRIMARY KEY,
    downloads         bigint      NOT NULL DEFAULT 0,
    bytes_sent        bigint      NOT NULL DEFAULT 0,
    last_download_at  timestamptz NOT NULL
);
COMMENT ON TABLE readmodel.file_downloads IS
    'Downloads per file, counted in memory by each API process and added here every CAIRN_DOWNLOAD_FLUSH_INTERVAL seconds (no write per request). Not derived from events, so a projection rebuild keeps it; counts of the last interval are lost if an API process is killed.';
COMMENT ON COLUMN readmodel.file_downloads.file_id IS 'The file (readmodel.files.id).';
COMMENT ON COLUMN readmodel.file_downloads.downloads IS 'GET requests of the content answered with bytes (200 or 206); HEAD, 304 and errors are not counted. A segmented client counts once per segment.';
COMMENT ON COLUMN readmodel.file_downloads.bytes_sent IS 'Content bytes handed to the connection (a client that disconnects early counts what it was sent).';
COMMENT ON COLUMN readmodel.file_downloads.last_download_at IS 'When the most recent counted download started (to the flush interval).';
